//! Java `java.util.regex` patterns on top of the `regex` crate.
//!
//! Jayway compiles `/pattern/flags` with `Pattern.compile` and tests values with
//! `matcher(value).matches()`, i.e. the whole value must match. The pattern is translated so that
//! the common constructs mean what they mean in Java:
//!
//! * the match is anchored at both ends (`matches()`, not `find()`);
//! * `\d \w \s \b` and their negations are ASCII-only unless the `U` flag is given, as in Java;
//! * `.` excludes Java's line terminators (`\n \r \u0085 \u2028 \u2029`; only `\n` with `d`);
//! * `\Q…\E` quoting and `\Z` are supported;
//! * flags `i m s x d u U` map to their Java meaning.
//!
//! Differences that remain: the `regex` crate has no backreferences, lookaround, possessive
//! quantifiers or atomic groups (such patterns fail to compile, which Jayway would accept), and
//! case-insensitive matching always folds Unicode case (Java folds only ASCII without `u`).

use regex::Regex;

/// A compiled Java-style pattern.
#[derive(Debug, Clone)]
pub(crate) struct JavaRegex {
    /// The pattern between the slashes, as written.
    pub source: String,
    /// The flag letters after the closing slash.
    pub flags: String,
    re: Regex,
}

impl JavaRegex {
    pub(crate) fn compile(source: &str, flags: &str) -> Result<JavaRegex, String> {
        let unicode_classes = flags.contains('U');
        let dotall = flags.contains('s');
        let unix_lines = flags.contains('d');
        let mut prefix = String::new();
        for f in flags.chars() {
            match f {
                'i' => prefix.push('i'),
                'm' => prefix.push('m'),
                'x' => prefix.push('x'),
                _ => {}
            }
        }
        let body = translate(source, unicode_classes, dotall, unix_lines);
        let full = if prefix.is_empty() {
            format!(r"\A(?:{body})\z")
        } else {
            format!(r"(?{prefix})\A(?:{body})\z")
        };
        let re = regex::RegexBuilder::new(&full)
            .size_limit(1 << 22)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(JavaRegex {
            source: source.to_string(),
            flags: flags.to_string(),
            re,
        })
    }

    /// `Pattern.matcher(input).matches()`.
    pub(crate) fn matches(&self, input: &str) -> bool {
        self.re.is_match(input)
    }
}

const ASCII_D: &str = "[0-9]";
const ASCII_ND: &str = "[^0-9]";
const ASCII_W: &str = "[0-9A-Za-z_]";
const ASCII_NW: &str = "[^0-9A-Za-z_]";
const ASCII_S: &str = r"[\t\n\x0B\f\r ]";
const ASCII_NS: &str = r"[^\t\n\x0B\f\r ]";

fn translate(src: &str, unicode_classes: bool, dotall: bool, unix_lines: bool) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    let mut class_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    out.push('\\');
                    i += 1;
                    continue;
                };
                i += 2;
                match n {
                    'Q' => {
                        // Quote everything up to \E literally.
                        while i < chars.len() {
                            if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                                i += 2;
                                break;
                            }
                            out.push_str(&regex::escape(&chars[i].to_string()));
                            i += 1;
                        }
                    }
                    'Z' if class_depth == 0 => out.push_str(r"(?:\n?\z)"),
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' if !unicode_classes => {
                        out.push_str(match n {
                            'd' => ASCII_D,
                            'D' => ASCII_ND,
                            'w' => ASCII_W,
                            'W' => ASCII_NW,
                            's' => ASCII_S,
                            _ => ASCII_NS,
                        });
                    }
                    'b' if !unicode_classes && class_depth == 0 => out.push_str(r"(?-u:\b)"),
                    'B' if !unicode_classes && class_depth == 0 => out.push_str(r"(?-u:\B)"),
                    _ => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                i += 1;
                // A leading `]` (or `^]`) is literal in both dialects; copy it through.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
                i += 1;
            }
            '.' if class_depth == 0 => {
                if dotall {
                    out.push_str("(?s:.)");
                } else if unix_lines {
                    out.push_str(r"[^\n]");
                } else {
                    out.push_str(r"[^\n\r\x{85}\x{2028}\x{2029}]");
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_matches_requires_the_whole_input() {
        let r = JavaRegex::compile("US.*Support", "i").unwrap();
        assert!(r.matches("us tech support"));
        assert!(!r.matches("x us tech support"));
        let r = JavaRegex::compile("a|ab", "").unwrap();
        assert!(r.matches("ab"));
    }

    #[test]
    fn shorthand_classes_are_ascii_like_java() {
        let r = JavaRegex::compile(r"\w+", "").unwrap();
        assert!(r.matches("abc_1"));
        assert!(!r.matches("é"));
        let r = JavaRegex::compile(r"\w+", "U").unwrap();
        assert!(r.matches("é"));
        let r = JavaRegex::compile(r"[\w-]+", "").unwrap();
        assert!(r.matches("a-b"));
        let r = JavaRegex::compile(r"\Qa.b\E", "").unwrap();
        assert!(r.matches("a.b"));
        assert!(!r.matches("axb"));
    }
}
