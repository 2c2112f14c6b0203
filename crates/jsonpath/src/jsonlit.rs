//! A permissive JSON reader for literals inside expressions (`[1,'a',b]`, function arguments),
//! following json-smart's `MODE_PERMISSIVE` that Jayway uses for them: single-quoted strings,
//! unquoted words as strings, leading zeros, and tolerant commas.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted in a literal; deeper literals are rejected rather than recursing.
const MAX_DEPTH: usize = 64;

pub(crate) fn parse_permissive(text: &str) -> Result<Value, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Reader { s: &chars, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(format!(
            "Unexpected character ({}) at position {}.",
            p.s[p.i], p.i
        ));
    }
    Ok(v)
}

struct Reader<'s> {
    s: &'s [char],
    i: usize,
}

fn is_stop(c: char) -> bool {
    matches!(c, ',' | ':' | ']' | '}' | '[' | '{')
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("JSON literal nested too deeply".into());
        }
        self.ws();
        match self.peek() {
            None => Err("Unexpected End Of File position".into()),
            Some('{') => self.object(depth),
            Some('[') => self.array(depth),
            Some(q @ ('"' | '\'')) => self.string(q).map(Value::String),
            Some(_) => self.bare(),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1;
        let mut m = Map::new();
        loop {
            self.ws();
            match self.peek() {
                None => return Err("Unexpected End Of File position".into()),
                Some('}') => {
                    self.i += 1;
                    return Ok(Value::Object(m));
                }
                Some(',') => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            let key = match self.peek() {
                Some(q @ ('"' | '\'')) => self.string(q)?,
                _ => {
                    let start = self.i;
                    while self
                        .peek()
                        .is_some_and(|c| c != ':' && !matches!(c, ',' | '}'))
                    {
                        self.i += 1;
                    }
                    self.s[start..self.i]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string()
                }
            };
            self.ws();
            if self.peek() != Some(':') {
                return Err(format!("Unexpected character at position {}.", self.i));
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            m.insert(key, v);
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some('}') => {}
                _ => return Err(format!("Unexpected character at position {}.", self.i)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1;
        let mut v = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                None => return Err("Unexpected End Of File position".into()),
                Some(']') => {
                    self.i += 1;
                    return Ok(Value::Array(v));
                }
                Some(',') => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            v.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(']') => {}
                _ => return Err(format!("Unexpected character at position {}.", self.i)),
            }
        }
    }

    fn string(&mut self, q: char) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("Unexpected End Of File position".into());
            };
            self.i += 1;
            if c == q {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err("Unexpected End Of File position".into());
            };
            self.i += 1;
            // json-smart's escapes (`JSONParserBase.readString`): `\x` takes two hex digits,
            // and an escape it does not know is dropped whole (`\.` is nothing).
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                '"' | '\'' | '\\' | '/' => out.push(e),
                'x' => {
                    let code = self.hex(2)?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                'u' => {
                    let code = self.hex(4)?;
                    // Java strings are UTF-16: a pair of escaped halves is one character.
                    let pair = (0xD800..0xDC00).contains(&code)
                        && self.s.get(self.i) == Some(&'\\')
                        && self.s.get(self.i + 1) == Some(&'u');
                    let low = if pair {
                        let saved = self.i;
                        self.i += 2;
                        match self.hex(4) {
                            Ok(low) if (0xDC00..0xE000).contains(&low) => Some(low),
                            _ => {
                                self.i = saved;
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let code = match low {
                        Some(low) => 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00),
                        None => code,
                    };
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                _ => {}
            }
        }
    }

    /// The value of the next `count` hex digits (json-smart's `readUnicode`).
    fn hex(&mut self, count: usize) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + count).unwrap_or(&[]);
        if digits.len() < count || !digits.iter().all(char::is_ascii_hexdigit) {
            return Err("Invalid unicode escape".into());
        }
        self.i += count;
        Ok(digits.iter().fold(0, |value, digit| {
            value * 16 + digit.to_digit(16).unwrap_or(0)
        }))
    }

    /// Numbers, `true`/`false`/`null`, or (permissively) an unquoted word as a string.
    fn bare(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !is_stop(c) && c != '\n' && c != '\r')
        {
            self.i += 1;
        }
        let word: String = self.s[start..self.i]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string();
        if word.is_empty() {
            return Err(format!("Unexpected character at position {start}."));
        }
        Ok(match word.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            w => number(w).unwrap_or_else(|| Value::String(w.to_string())),
        })
    }
}

/// A JSON number as json-smart reads it: integers stay integers, anything with a point or an
/// exponent is a double.
pub(crate) fn number(w: &str) -> Option<Value> {
    let b = w.as_bytes();
    let body = b.strip_prefix(b"-").unwrap_or(b);
    if body.is_empty() || !body[0].is_ascii_digit() {
        return None;
    }
    if !body
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let is_int = body.iter().all(u8::is_ascii_digit);
    if is_int {
        if let Ok(i) = w.parse::<i64>() {
            return Some(Value::Number(i.into()));
        }
        if let Ok(u) = w.parse::<u64>() {
            return Some(Value::Number(u.into()));
        }
        // Past 64 bits, a `BigInteger`: kept whole as a document's number is (see
        // `number::is_big_integer`), or a double without serde_json's `arbitrary_precision`.
        return w.parse::<Number>().ok().map(Value::Number);
    }
    let f: f64 = w.parse().ok()?;
    match Number::from_f64(f) {
        Some(n) => Some(Value::Number(n)),
        // Past the double range: an infinite `Double` to json-smart, which a comparison cannot
        // take (see `Dec::from_document_number`); kept as written where serde_json can hold the
        // text (`arbitrary_precision`), else read as the bare word it also is.
        None => w.parse::<Number>().ok().map(Value::Number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissive_literals_accept_single_quotes_and_bare_words() {
        assert_eq!(
            parse_permissive("['a', \"b\", c, 1, 2.5, true, null]").unwrap(),
            serde_json::json!(["a", "b", "c", 1, 2.5, true, null])
        );
        assert_eq!(
            parse_permissive("{'a': 1, b: [2]}").unwrap(),
            serde_json::json!({"a": 1, "b": [2]})
        );
        assert!(parse_permissive("[1, 2").is_err());
    }
}
