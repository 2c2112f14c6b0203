//! The compiler: Jayway's `PathCompiler` and `FilterCompiler`, reproduced scanning step by
//! scanning step (Jayway's dialect is defined by these scanners, including what they silently
//! ignore), but producing an immutable tree and never recursing without a depth bound.

use crate::ast::{
    CompiledPath, Expr, Function, FunctionKind, JsonLiteral, Operand, Param, PathOperand, RelOp,
    Relation, Slice, Token,
};
use crate::chars::{CErr, CharIndex, SPACE};
use crate::error::ParseError;
use crate::jsonlit::parse_permissive;
use crate::number::Dec;
use crate::regex::JavaRegex;

/// Deepest nesting of filters, parentheses, negations and function arguments accepted.
pub(crate) const MAX_NESTING: usize = 32;

/// Largest evaluation depth accepted (tokens along the deepest chain of nested paths plus filter
/// nesting). Evaluation recurses once per token, so this bounds its stack use.
pub(crate) const MAX_WEIGHT: usize = 256;

/// Most regular expressions one expression may hold. Compiling a pattern costs up to a few
/// milliseconds (a large bounded repetition, `a{20000}`, is expanded), and a filter is compiled
/// for every request that sends one: without a bound, a filter of ten thousand characters made
/// of such patterns took seconds of CPU. Jayway has no such bound; filters written by people
/// hold a handful.
pub(crate) const MAX_REGEXES: usize = 32;

thread_local! {
    /// Regular expressions compiled so far by the expression being compiled on this thread.
    static REGEXES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Compiles a path as `JsonPath.compile` does (`PathCompiler.compile`).
pub(crate) fn compile(text: &str) -> Result<CompiledPath, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    REGEXES.with(|count| count.set(0));
    let path = compile_static(&chars, 0, 0).map_err(|e| e.err)?;
    let w = weight(&path);
    if w > MAX_WEIGHT {
        return Err(ParseError::new(
            chars.len(),
            "a shorter or less nested expression",
            format!(
                "Expression too complex: evaluation depth {w} exceeds the limit of {MAX_WEIGHT}"
            ),
        ));
    }
    Ok(path)
}

fn is_path_context(c: char) -> bool {
    c == '$' || c == '@'
}

fn is_whitespace(c: char) -> bool {
    c == SPACE || c == '\t' || c == '\n' || c == '\r'
}

/// `PathCompiler.compile(String)`: trims, prefixes `$.` when the text does not start with `$` or
/// `@`, and rejects a trailing `.`.
fn compile_static(chars: &[char], base: isize, depth: usize) -> Result<CompiledPath, CErr> {
    if depth > MAX_NESTING {
        return Err(too_deep(base));
    }
    let mut ci = CharIndex::new(chars, base);
    ci.trim();
    let prefixed: Vec<char>;
    let first = ci.char_at(0)?;
    if !is_path_context(first) {
        prefixed = "$.".chars().chain(chars.iter().copied()).collect();
        ci = CharIndex::new(&prefixed, base - 2);
        ci.trim();
        let mut pc = PathCompiler { ci, depth };
        return pc.compile_checked();
    }
    let mut pc = PathCompiler { ci, depth };
    pc.compile_checked()
}

fn too_deep(base: isize) -> CErr {
    CErr::invalid(ParseError::new(
        base.max(0) as usize,
        "less nesting",
        format!("Expression nested too deeply (more than {MAX_NESTING} levels)"),
    ))
}

struct PathCompiler<'s> {
    ci: CharIndex<'s>,
    depth: usize,
}

enum Read {
    NotMine,
    Done,
}

impl<'s> PathCompiler<'s> {
    fn compile_checked(&mut self) -> Result<CompiledPath, CErr> {
        if self.ci.last_char_is('.')? {
            return Err(self.ci.err(
                self.ci.length() - 1,
                "a property, '[' or a function after '.'",
                "Path must not end with a '.' or '..'",
            ));
        }
        self.compile()
    }

    /// `new PathCompiler(text).compile()`: no trimming or prefixing (used for function
    /// arguments).
    fn compile(&mut self) -> Result<CompiledPath, CErr> {
        let (root, tokens) = self.read_context_token()?;
        Ok(finish(root, tokens))
    }

    fn read_whitespace(&mut self) {
        while self.ci.in_bounds() {
            match self.ci.current_char() {
                Ok(c) if is_whitespace(c) => self.ci.increment(1),
                _ => break,
            }
        }
    }

    fn read_context_token(&mut self) -> Result<(char, Vec<Token>), CErr> {
        self.read_whitespace();
        let c = self.ci.current_char()?;
        if !is_path_context(c) {
            return Err(self.ci.err(
                self.ci.position(),
                "'$' or '@'",
                "Path must start with '$' or '@'",
            ));
        }
        let mut tokens = Vec::new();
        if self.ci.current_is_tail() {
            return Ok((c, tokens));
        }
        self.ci.increment(1);
        let n = self.ci.current_char()?;
        if n != '.' && n != '[' {
            return Err(self.ci.err(
                self.ci.position(),
                "'.' or '['",
                format!(
                    "Illegal character at position {} expected '.' or '['",
                    self.ci.position()
                ),
            ));
        }
        self.read_tokens(&mut tokens)?;
        Ok((c, tokens))
    }

    /// Jayway's mutually recursive `readNextToken`, as a loop: every reader but the dot reader
    /// stops when the cursor reaches the logical end ("tail") of the text.
    fn read_tokens(&mut self, tokens: &mut Vec<Token>) -> Result<(), CErr> {
        loop {
            let pos = self.ci.position();
            let c = self.ci.current_char()?;
            match c {
                '[' => {
                    let done = matches!(self.read_bracket_property(tokens)?, Read::Done)
                        || matches!(self.read_array(tokens)?, Read::Done)
                        || matches!(self.read_wildcard(tokens)?, Read::Done)
                        || matches!(self.read_filter(tokens)?, Read::Done)
                        || matches!(self.read_placeholder()?, Read::Done);
                    if !done {
                        return Err(self.ci.err(
                            pos,
                            "?, ', 0-9 or *",
                            format!("Could not parse token starting at position {pos}. Expected ?, ', 0-9, * "),
                        ));
                    }
                }
                '.' => {
                    self.read_dot(tokens)?;
                    continue;
                }
                '*' => {
                    if let Read::NotMine = self.read_wildcard(tokens)? {
                        return Err(self.could_not_parse(pos));
                    }
                }
                _ => {
                    if let Read::NotMine = self.read_property_or_function(tokens)? {
                        return Err(self.could_not_parse(pos));
                    }
                }
            }
            if self.ci.current_is_tail() {
                return Ok(());
            }
        }
    }

    fn could_not_parse(&self, pos: isize) -> CErr {
        self.ci.err(
            pos,
            "a property name, '[', '*' or '..'",
            format!("Could not parse token starting at position {pos}"),
        )
    }

    fn read_dot(&mut self, tokens: &mut Vec<Token>) -> Result<(), CErr> {
        if self.ci.current_char_is('.')? && self.ci.next_char_is('.') {
            tokens.push(Token::Scan);
            self.ci.increment(2);
        } else if !self.ci.has_more_characters() {
            return Err(self.ci.err(
                self.ci.position(),
                "a property after '.'",
                "Path must not end with a '.",
            ));
        } else {
            self.ci.increment(1);
        }
        if self.ci.current_char_is('.')? {
            return Err(self.ci.err(
                self.ci.position(),
                "a property name",
                format!(
                    "Character '.' on position {} is not valid.",
                    self.ci.position()
                ),
            ));
        }
        Ok(())
    }

    fn read_property_or_function(&mut self, tokens: &mut Vec<Token>) -> Result<Read, CErr> {
        let c = self.ci.current_char()?;
        if c == '[' || c == '*' || c == '.' || c == SPACE {
            return Ok(Read::NotMine);
        }
        let start = self.ci.position();
        let mut read = start;
        let mut end: isize = 0;
        let mut is_function = false;
        while self.ci.in_bounds_at(read) {
            let c = self.ci.char_at(read)?;
            if c == SPACE {
                return Err(self.ci.err(
                    read,
                    "['my prop'] bracket notation for names with blanks",
                    format!(
                        "Use bracket notion ['my prop'] if your property contains blank characters. position: {}",
                        self.ci.position()
                    ),
                ));
            } else if c == '.' || c == '[' {
                end = read;
                break;
            } else if c == '(' {
                is_function = true;
                end = read;
                break;
            }
            read += 1;
        }
        if end == 0 {
            end = self.ci.length();
        }
        let mut params: Vec<Param> = Vec::new();
        if is_function {
            let mut count = 1;
            let mut i = read + 1;
            while i < self.ci.length() {
                let c = self.ci.char_at(i)?;
                if c == ')' {
                    count -= 1;
                } else if c == '(' {
                    count += 1;
                }
                if count == 0 {
                    break;
                }
                i += 1;
            }
            let name = self.ci.sub_string(start, end)?;
            if count != 0 {
                return Err(self.ci.err(
                    read,
                    "')' closing the function arguments",
                    format!("Arguments to function: '{name}' are not closed properly."),
                ));
            }
            if self.ci.in_bounds_at(read + 1) {
                if self.ci.char_at(read + 1)? != ')' {
                    self.ci.set_position(end + 1);
                    params = self.parse_function_parameters(&name)?;
                } else {
                    self.ci.set_position(read + 1);
                }
            } else {
                self.ci.set_position(read);
            }
        } else {
            self.ci.set_position(end);
        }
        let name = self.ci.sub_string(start, end)?;
        if is_function {
            let kind = FunctionKind::from_name(&name);
            tokens.push(Token::Function(Box::new(Function {
                name,
                kind,
                params,
                length_param: None,
            })));
        } else {
            tokens.push(Token::Property(vec![name], '\''));
        }
        Ok(Read::Done)
    }

    /// Jayway's argument tokenizer: splits on top-level commas, counting parentheses, brackets,
    /// braces and double quotes; arguments starting with `$`/`@` are paths, those starting with
    /// `{`, a digit, `"` or `-` are JSON, anything else is dropped.
    fn parse_function_parameters(&mut self, name: &str) -> Result<Vec<Param>, CErr> {
        #[derive(PartialEq, Clone, Copy)]
        enum Ty {
            Json,
            Path,
        }
        let mut ty: Option<Ty> = None;
        let (mut paren, mut bracket, mut brace, mut quote) = (1i32, 0i32, 0i32, 0i32);
        let mut end_of_stream = false;
        let mut prior: char = '\0';
        let mut params = Vec::new();
        let mut param = String::new();
        let mut param_start = self.ci.position();
        while self.ci.in_bounds() && !end_of_stream {
            let c = self.ci.current_char()?;
            self.ci.increment(1);
            if ty.is_none() {
                if is_whitespace(c) {
                    continue;
                }
                if c == '{' || c.is_ascii_digit() || c == '"' || c == '-' {
                    ty = Some(Ty::Json);
                    param_start = self.ci.position() - 1;
                } else if is_path_context(c) {
                    ty = Some(Ty::Path);
                    param_start = self.ci.position() - 1;
                }
            }
            let mut is_close_or_comma = false;
            match c {
                '"' => {
                    if prior != '\\' && quote > 0 {
                        quote -= 1;
                    } else {
                        quote += 1;
                    }
                }
                '(' => paren += 1,
                '{' => brace += 1,
                '[' => bracket += 1,
                '}' => {
                    if brace == 0 {
                        return Err(self.ci.err(
                            self.ci.position() - 1,
                            "a matching '{'",
                            format!(
                                "Unexpected close brace '}}' at character position: {}",
                                self.ci.position()
                            ),
                        ));
                    }
                    brace -= 1;
                }
                ']' => {
                    if bracket == 0 {
                        return Err(self.ci.err(
                            self.ci.position() - 1,
                            "a matching '['",
                            format!(
                                "Unexpected close bracket ']' at character position: {}",
                                self.ci.position()
                            ),
                        ));
                    }
                    bracket -= 1;
                }
                ')' => {
                    paren -= 1;
                    if paren < 0 || prior == '(' {
                        param.push(c);
                    }
                    is_close_or_comma = true;
                }
                ',' => is_close_or_comma = true,
                _ => {}
            }
            if is_close_or_comma
                && quote == 0
                && brace == 0
                && bracket == 0
                && ((paren == 0 && c == ')') || paren == 1)
            {
                end_of_stream = paren == 0;
                if let Some(t) = ty {
                    let text = std::mem::take(&mut param);
                    match t {
                        Ty::Json => {
                            let parsed = parse_permissive(&text);
                            params.push(Param::Json(text, parsed));
                        }
                        Ty::Path => {
                            if self.depth + 1 > MAX_NESTING {
                                return Err(too_deep(self.ci.abs(param_start) as isize));
                            }
                            let chars: Vec<char> = text.chars().collect();
                            let mut pc = PathCompiler {
                                ci: CharIndex::new(&chars, self.ci.base() + param_start),
                                depth: self.depth + 1,
                            };
                            params.push(Param::Path(Box::new(pc.compile()?)));
                        }
                    }
                    ty = None;
                }
            }
            if ty.is_some() && !(c == ',' && brace == 0 && bracket == 0 && paren == 1) {
                param.push(c);
            }
            prior = c;
        }
        if brace != 0 || paren != 0 || bracket != 0 {
            return Err(self.ci.err(
                self.ci.position(),
                "')' closing the function arguments",
                format!("Arguments to function: '{name}' are not closed properly."),
            ));
        }
        Ok(params)
    }

    /// `[?]` placeholders take predicates passed next to the path; none can be passed here.
    fn read_placeholder(&mut self) -> Result<Read, CErr> {
        if !self.ci.current_char_is('[')? {
            return Ok(Read::NotMine);
        }
        let Some(q) = self.ci.index_of_next_significant(self.ci.position(), '?')? else {
            return Ok(Read::NotMine);
        };
        let nsc = self.ci.next_significant_char_at(q);
        if nsc != ']' && nsc != ',' {
            return Ok(Read::NotMine);
        }
        let begin = self.ci.position() + 1;
        let Some(end) = self.ci.next_index_of(begin, ']') else {
            return Ok(Read::NotMine);
        };
        let expr = self.ci.sub_string(begin, end)?;
        Err(self.ci.err(
            self.ci.position(),
            "a filter '[?(…)]' (placeholder predicates cannot be supplied)",
            format!(
                "Not enough predicates supplied for filter [{expr}] at position {}",
                self.ci.position()
            ),
        ))
    }

    fn read_filter(&mut self, tokens: &mut Vec<Token>) -> Result<Read, CErr> {
        if !self.ci.current_char_is('[')? && !self.ci.next_significant_char_is('?') {
            return Ok(Read::NotMine);
        }
        let open_statement = self.ci.position();
        let Some(q) = self.ci.index_of_next_significant(open_statement, '?')? else {
            return Ok(Read::NotMine);
        };
        let Some(open_paren) = self.ci.index_of_next_significant(q, '(')? else {
            return Ok(Read::NotMine);
        };
        let Some(close_paren) = self
            .ci
            .index_of_matching_close(open_paren, '(', ')', true, true)?
        else {
            return Ok(Read::NotMine);
        };
        if !self.ci.next_significant_char_is_at(close_paren, ']') {
            return Ok(Read::NotMine);
        }
        let Some(close_statement) = self.ci.index_of_next_significant(close_paren, ']')? else {
            return Ok(Read::NotMine);
        };
        let criteria: Vec<char> = self
            .ci
            .chars()
            .get(open_statement as usize..=close_statement as usize)
            .map(<[char]>::to_vec)
            .unwrap_or_default();
        if self.depth + 1 > MAX_NESTING {
            return Err(too_deep(self.ci.abs(open_statement) as isize));
        }
        let expr = compile_filter(&criteria, self.ci.base() + open_statement, self.depth + 1)?;
        tokens.push(Token::Filter(Box::new(expr)));
        self.ci.set_position(close_statement + 1);
        Ok(Read::Done)
    }

    fn read_wildcard(&mut self, tokens: &mut Vec<Token>) -> Result<Read, CErr> {
        let in_bracket = self.ci.current_char_is('[')?;
        if in_bracket && !self.ci.next_significant_char_is('*') {
            return Ok(Read::NotMine);
        }
        if !self.ci.current_char_is('*')? && self.ci.out_of_bounds(self.ci.position() + 1) {
            return Ok(Read::NotMine);
        }
        if in_bracket {
            let star = self
                .ci
                .index_of_next_significant(self.ci.position(), '*')?
                .unwrap_or(-1);
            if !self.ci.next_significant_char_is_at(star, ']') {
                return Err(self.ci.err(
                    star + 1,
                    "']'",
                    format!(
                        "Expected wildcard token to end with ']' on position {}",
                        star + 1
                    ),
                ));
            }
            let close = self.ci.index_of_next_significant(star, ']')?.unwrap_or(-1);
            self.ci.set_position(close + 1);
        } else {
            self.ci.increment(1);
        }
        tokens.push(Token::Wildcard);
        Ok(Read::Done)
    }

    fn read_array(&mut self, tokens: &mut Vec<Token>) -> Result<Read, CErr> {
        if !self.ci.current_char_is('[')? {
            return Ok(Read::NotMine);
        }
        let nsc = self.ci.next_significant_char();
        if !nsc.is_ascii_digit() && nsc != '-' && nsc != ':' {
            return Ok(Read::NotMine);
        }
        let begin = self.ci.position() + 1;
        let Some(end) = self.ci.next_index_of(begin, ']') else {
            return Ok(Read::NotMine);
        };
        let raw = self.ci.sub_string(begin, end)?;
        let expr = java_trim(&raw);
        if expr == "*" {
            return Ok(Read::NotMine);
        }
        if !expr
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | ':' | ' '))
        {
            return Ok(Read::NotMine);
        }
        let token = if expr.contains(':') {
            Token::Slice(parse_slice(expr).map_err(|m| self.ci.err(begin, "a slice 'from:to'", m))?)
        } else {
            Token::Index(parse_indexes(expr).map_err(|m| self.ci.err(begin, "an index", m))?)
        };
        tokens.push(token);
        self.ci.set_position(end + 1);
        Ok(Read::Done)
    }

    fn read_bracket_property(&mut self, tokens: &mut Vec<Token>) -> Result<Read, CErr> {
        if !self.ci.current_char_is('[')? {
            return Ok(Read::NotMine);
        }
        let delim = self.ci.next_significant_char();
        if delim != '\'' && delim != '"' {
            return Ok(Read::NotMine);
        }
        let mut props = Vec::new();
        let mut start = self.ci.position() + 1;
        let mut read = start;
        let mut end: isize = 0;
        let mut in_prop = false;
        let mut in_escape = false;
        let mut last_was_comma = false;
        while self.ci.in_bounds_at(read) {
            let c = self.ci.char_at(read)?;
            if in_escape {
                in_escape = false;
            } else if c == '\\' {
                in_escape = true;
            } else if c == ']' && !in_prop {
                if last_was_comma {
                    return Err(self.ci.err(
                        read,
                        "a property name",
                        format!("Found empty property at index {read}"),
                    ));
                }
                break;
            } else if c == delim {
                if in_prop {
                    let nsc = self.ci.next_significant_char_at(read);
                    if nsc != ']' && nsc != ',' {
                        return Err(self.ci.err(
                            read + 1,
                            "',' or ']'",
                            format!(
                                "Property must be separated by comma or Property must be terminated close square bracket at index {read}"
                            ),
                        ));
                    }
                    end = read;
                    let prop = self.ci.sub_string(start, end)?;
                    props.push(
                        unescape(&prop).map_err(|m| self.ci.other(start, "a valid escape", m))?,
                    );
                    in_prop = false;
                } else {
                    start = read + 1;
                    in_prop = true;
                    last_was_comma = false;
                }
            } else if c == ',' && !in_prop {
                if last_was_comma {
                    return Err(self.ci.err(
                        read,
                        "a property name",
                        format!("Found empty property at index {read}"),
                    ));
                }
                last_was_comma = true;
            }
            read += 1;
        }
        if in_prop {
            return Err(self.ci.err(
                read,
                &format!("a closing {delim}"),
                format!("Property has not been closed - missing closing {delim}"),
            ));
        }
        let Some(close) = self.ci.index_of_next_significant(end, ']')? else {
            return Err(self.ci.err(
                end + 1,
                "']'",
                "Property has not been closed - missing closing ]",
            ));
        };
        self.ci.set_position(close + 1);
        if props.is_empty() {
            return Err(self.ci.err(close, "a property name", "Empty properties"));
        }
        tokens.push(Token::Property(props, delim));
        Ok(Read::Done)
    }
}

/// Builds the compiled path; like Jayway's `CompiledPath` constructor, a path that starts with a
/// deep scan and ends in a function is turned inside out: `$..a.sum()` is `$.sum($..a)`.
fn finish(root: char, mut tokens: Vec<Token>) -> CompiledPath {
    let is_root_path = root == '$';
    let inverted = matches!(tokens.first(), Some(Token::Scan))
        && matches!(tokens.last(), Some(Token::Function(_)));
    if inverted {
        if let Some(fpos) = tokens.iter().position(|t| matches!(t, Token::Function(_))) {
            // The tokens from the function on keep their links to the tokens before it, so
            // whether they are "upstream definite" is still decided by the whole original chain.
            let original = CompiledPath::new(root, tokens.clone(), is_root_path);
            let mut rest = tokens.split_off(fpos);
            let param = CompiledPath::new(root, tokens, true);
            if let Some(Token::Function(f)) = rest.first_mut() {
                f.params = vec![Param::Path(Box::new(param))];
            }
            let mut p = CompiledPath::new('$', rest, is_root_path);
            p.upstream_definite = original
                .upstream_definite
                .get(fpos..)
                .map(<[bool]>::to_vec)
                .unwrap_or_default();
            prepare_length(&mut p);
            return p;
        }
    }
    let mut p = CompiledPath::new(root, tokens, is_root_path);
    prepare_length(&mut p);
    p
}

/// `length(path)` evaluates its argument with a `[*]` appended (Jayway edits the argument in
/// place), while the argument keeps the definiteness it had before the edit.
fn prepare_length(p: &mut CompiledPath) {
    for t in &mut p.tokens {
        if let Token::Function(f) = t {
            if f.kind != FunctionKind::Length {
                continue;
            }
            if let Some(Param::Path(arg)) = f.params.first() {
                if arg.is_function_path() {
                    continue;
                }
                let mut tokens = arg.tokens.clone();
                tokens.push(Token::Wildcard);
                let mut variant = CompiledPath::new(arg.root, tokens, arg.is_root_path);
                variant.definite = arg.definite;
                f.length_param = Some(Box::new(variant));
            }
        }
    }
}

/// Java's `String.trim()`: strips characters up to U+0020 at both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

fn parse_java_int(s: &str) -> Result<i32, String> {
    let ok = {
        let b = s
            .strip_prefix('-')
            .or_else(|| s.strip_prefix('+'))
            .unwrap_or(s);
        !b.is_empty() && b.chars().all(|c| c.is_ascii_digit())
    };
    if !ok {
        return Err(format!("For input string: \"{s}\""));
    }
    s.parse::<i32>()
        .map_err(|_| format!("For input string: \"{s}\""))
}

fn parse_slice(op: &str) -> Result<Slice, String> {
    if !op
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == ':')
    {
        return Err(format!("Failed to parse SliceOperation: {op}"));
    }
    // Java's split drops trailing empty strings.
    let mut parts: Vec<&str> = op.split(':').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    let read = |i: usize| -> Result<Option<i32>, String> {
        match parts.get(i) {
            None | Some(&"") => Ok(None),
            Some(t) => parse_java_int(t).map(Some),
        }
    };
    let from = read(0)?;
    let to = read(1)?;
    match (from, to) {
        (Some(f), None) => Ok(Slice::From(f)),
        (Some(f), Some(t)) => Ok(Slice::Between(f, t)),
        (None, Some(t)) => Ok(Slice::To(t)),
        (None, None) => Err(format!("Failed to parse SliceOperation: {op}")),
    }
}

fn parse_indexes(op: &str) -> Result<Vec<i32>, String> {
    if !op
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ',' | ' ' | '-'))
    {
        return Err(format!("Failed to parse ArrayIndexOperation: {op}"));
    }
    op.split(',')
        .map(|t| {
            let t = t.trim_matches(|c: char| c.is_whitespace());
            parse_java_int(t)
                .map_err(|_| format!("Failed to parse token in ArrayIndexOperation: {t}"))
        })
        .collect()
}

/// Jayway's `Utils.unescape`: backslash escapes and `\uXXXX`; an unknown escape keeps the
/// character, a trailing backslash is kept.
pub(crate) fn unescape(s: &str) -> Result<String, String> {
    // Java strings are UTF-16: `\uD83D\uDE00` is one character, so collect code units.
    let mut out: Vec<u16> = Vec::with_capacity(s.len());
    let push = |out: &mut Vec<u16>, c: char| {
        let mut buf = [0u16; 2];
        out.extend_from_slice(c.encode_utf16(&mut buf));
    };
    let mut unicode = String::new();
    let mut had_slash = false;
    let mut in_unicode = false;
    for ch in s.chars() {
        if in_unicode {
            unicode.push(ch);
            if unicode.chars().count() == 4 {
                let v = i32::from_str_radix(&unicode, 16)
                    .map_err(|_| format!("Unable to parse unicode value: {unicode}"))?;
                out.push((v as u32 & 0xFFFF) as u16);
                unicode.clear();
                in_unicode = false;
                had_slash = false;
            }
            continue;
        }
        if had_slash {
            had_slash = false;
            match ch {
                'r' => push(&mut out, '\r'),
                'f' => push(&mut out, '\u{c}'),
                't' => push(&mut out, '\t'),
                'n' => push(&mut out, '\n'),
                'b' => push(&mut out, '\u{8}'),
                'u' => in_unicode = true,
                other => push(&mut out, other),
            }
            continue;
        } else if ch == '\\' {
            had_slash = true;
            continue;
        }
        push(&mut out, ch);
    }
    if had_slash {
        push(&mut out, '\\');
    }
    Ok(String::from_utf16_lossy(&out))
}

/// `FilterCompiler.compile("[?(…)]")`.
fn compile_filter(chars: &[char], base: isize, depth: usize) -> Result<Expr, CErr> {
    let text: String = chars.iter().collect();
    let mut f = CharIndex::new(chars, base);
    f.trim();
    if !f.current_char_is('[')? || !f.last_char_is(']')? {
        return Err(f.err(
            0,
            "'[?('",
            format!("Filter must start with '[' and end with ']'. {text}"),
        ));
    }
    f.increment(1);
    f.decrement_end(1);
    f.trim();
    if !f.current_char_is('?')? {
        return Err(f.err(
            f.position(),
            "'?'",
            format!("Filter must start with '[?' and end with ']'. {text}"),
        ));
    }
    f.increment(1);
    f.trim();
    if !f.current_char_is('(')? || !f.last_char_is(')')? {
        return Err(f.err(
            f.position(),
            "'('",
            format!("Filter must start with '[?(' and end with ')]'. {text}"),
        ));
    }
    let mut fc = FilterCompiler { f, text, depth };
    match fc.read_logical_or() {
        Ok(e) => {
            fc.f.skip_blanks();
            if fc.f.in_bounds() {
                let rest =
                    fc.f.sub_string(fc.f.position(), fc.f.length())
                        .unwrap_or_default();
                return Err(fc.f.err(
                    fc.f.position(),
                    "the end of the filter",
                    format!("Expected end of filter expression instead of: {rest}"),
                ));
            }
            Ok(e)
        }
        Err(e) if e.invalid_path => Err(e),
        Err(e) => {
            let pos = fc.f.position();
            let ch = fc.f.current_char().map(String::from).unwrap_or_default();
            Err(CErr::invalid(ParseError::new(
                e.err.position,
                e.err.expected,
                format!(
                    "Failed to parse filter: {}, error on position: {pos}, char: {ch} ({})",
                    fc.text, e.err.message
                ),
            )))
        }
    }
}

struct FilterCompiler<'s> {
    f: CharIndex<'s>,
    text: String,
    depth: usize,
}

fn is_rel_op_char(c: char) -> bool {
    matches!(c, '<' | '>' | '=' | '~' | '!')
}

impl FilterCompiler<'_> {
    fn enter(&mut self) -> Result<(), CErr> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(too_deep(self.f.abs(self.f.position()) as isize));
        }
        Ok(())
    }

    fn read_logical_or(&mut self) -> Result<Expr, CErr> {
        let mut ops = vec![self.read_logical_and()?];
        loop {
            let save = self.f.position();
            if self.f.has_significant_sub_sequence("||") {
                ops.push(self.read_logical_and()?);
            } else {
                self.f.set_position(save);
                break;
            }
        }
        Ok(if ops.len() == 1 {
            ops.remove(0)
        } else {
            Expr::Or(ops)
        })
    }

    fn read_logical_and(&mut self) -> Result<Expr, CErr> {
        let mut ops = vec![self.read_logical_and_operand()?];
        loop {
            let save = self.f.position();
            if self.f.has_significant_sub_sequence("&&") {
                ops.push(self.read_logical_and_operand()?);
            } else {
                self.f.set_position(save);
                break;
            }
        }
        Ok(if ops.len() == 1 {
            ops.remove(0)
        } else {
            Expr::And(ops)
        })
    }

    fn read_logical_and_operand(&mut self) -> Result<Expr, CErr> {
        let save = self.f.skip_blanks().position();
        if self.f.skip_blanks().current_char_is('!')? {
            self.f.read_significant_char('!')?;
            let c = self.f.skip_blanks().current_char()?;
            if c == '$' || c == '@' {
                self.f.set_position(save);
            } else {
                self.enter()?;
                let op = self.read_logical_and_operand()?;
                self.depth -= 1;
                return Ok(Expr::Not(Box::new(op)));
            }
        }
        if self.f.skip_blanks().current_char_is('(')? {
            self.f.read_significant_char('(')?;
            self.enter()?;
            let op = self.read_logical_or()?;
            self.depth -= 1;
            self.f.read_significant_char(')')?;
            return Ok(op);
        }
        self.read_expression()
    }

    fn read_expression(&mut self) -> Result<Expr, CErr> {
        let left = self.read_value_node()?;
        let save = self.f.position();
        let attempt = (|| -> Result<(RelOp, Operand), CErr> {
            let op = self.read_relational_operator()?;
            let right = self.read_value_node()?;
            Ok((op, right))
        })();
        match attempt {
            Ok((op, right)) => return Ok(Expr::Rel(Box::new(Relation { left, op, right }))),
            Err(e) if e.invalid_path => self.f.set_position(save),
            Err(e) => return Err(e),
        }
        let Operand::Path(mut p) = left else {
            return Err(self.f.err(
                save,
                "a path before the end of the expression",
                "Expected path node",
            ));
        };
        p.exists_check = true;
        let right = Operand::Bool(p.should_exist);
        Ok(Expr::Rel(Box::new(Relation {
            left: Operand::Path(p),
            op: RelOp::Exists,
            right,
        })))
    }

    fn read_value_node(&mut self) -> Result<Operand, CErr> {
        match self.f.skip_blanks().current_char()? {
            '$' | '@' => self.read_path(),
            '!' => {
                self.f.increment(1);
                match self.f.skip_blanks().current_char()? {
                    '$' | '@' => self.read_path(),
                    _ => Err(self.f.err(
                        self.f.position(),
                        "a path after '!'",
                        "Unexpected character: !",
                    )),
                }
            }
            _ => self.read_literal(),
        }
    }

    fn read_literal(&mut self) -> Result<Operand, CErr> {
        match self.f.skip_blanks().current_char()? {
            '\'' => self.read_string('\''),
            '"' => self.read_string('"'),
            't' | 'f' => self.read_boolean(),
            'n' => self.read_null(),
            '{' | '[' => self.read_json(),
            '/' => self.read_pattern(),
            _ => self.read_number(),
        }
    }

    fn read_relational_operator(&mut self) -> Result<RelOp, CErr> {
        let begin = self.f.skip_blanks().position();
        if is_rel_op_char(self.f.current_char()?) {
            while self.f.in_bounds() && is_rel_op_char(self.f.current_char()?) {
                self.f.increment(1);
            }
        } else {
            while self.f.in_bounds() && self.f.current_char()? != SPACE {
                self.f.increment(1);
            }
        }
        let op = self.f.sub_string(begin, self.f.position())?;
        RelOp::from_str_ci(&op.to_uppercase()).ok_or_else(|| {
            self.f.err(
                begin,
                "an operator (== != < <= > >= =~ in nin subsetof anyof noneof size empty contains)",
                format!("Filter operator {op} is not supported!"),
            )
        })
    }

    fn read_null(&mut self) -> Result<Operand, CErr> {
        let p = self.f.position();
        if self.f.current_char()? == 'n'
            && self.f.in_bounds_at(p + 3)
            && self.f.sub_string(p, p + 4)? == "null"
        {
            self.f.increment(4);
            return Ok(Operand::Null);
        }
        Err(self.f.err(p, "null", "Expected <null> value"))
    }

    fn read_json(&mut self) -> Result<Operand, CErr> {
        let begin = self.f.position();
        let open = self.f.current_char()?;
        let close = if open == '[' { ']' } else { '}' };
        let Some(closing) = self
            .f
            .index_of_matching_close(begin, open, close, true, false)?
        else {
            return Err(self.f.err(
                begin,
                &format!("a closing {close}"),
                format!("String not closed. Expected ' in {}", self.text),
            ));
        };
        self.f.set_position(closing + 1);
        let text = self.f.sub_string(begin, self.f.position())?;
        let parsed = parse_permissive(&text);
        Ok(Operand::Json(Box::new(JsonLiteral { text, parsed })))
    }

    fn read_pattern(&mut self) -> Result<Operand, CErr> {
        let begin = self.f.position();
        let Some(mut closing) = self.f.next_index_of_unescaped(begin, '/') else {
            return Err(self.f.err(
                begin,
                "a closing /",
                format!("Pattern not closed. Expected / in {}", self.text),
            ));
        };
        if self.f.in_bounds_at(closing + 1) {
            let mut end = closing + 1;
            while self.f.in_bounds_at(end) && "dixmsuU".contains(self.f.char_at(end)?) {
                end += 1;
            }
            closing += end - (closing + 1);
        }
        self.f.set_position(closing + 1);
        let text = self.f.sub_string(begin, self.f.position())?;
        let first = text.find('/').unwrap_or(0);
        let last = text.rfind('/').unwrap_or(text.len());
        let source = text.get(first + 1..last).unwrap_or("");
        let flags = text.get(last + 1..).unwrap_or("");
        let count = REGEXES.with(|count| {
            count.set(count.get() + 1);
            count.get()
        });
        if count > MAX_REGEXES {
            return Err(self.f.other(
                begin,
                "fewer regular expressions",
                format!(
                    "Expression too complex: more than {MAX_REGEXES} regular expressions in one \
                     expression"
                ),
            ));
        }
        let re = JavaRegex::compile(source, flags)
            .map_err(|m| self.f.other(begin, "a valid regular expression", m))?;
        Ok(Operand::Pattern(Box::new(re)))
    }

    fn read_string(&mut self, quote: char) -> Result<Operand, CErr> {
        let begin = self.f.position();
        let Some(closing) = self.f.next_index_of_unescaped(begin, quote) else {
            return Err(self.f.err(
                begin,
                &format!("a closing {quote}"),
                format!(
                    "String literal does not have matching quotes. Expected {quote} in {}",
                    self.text
                ),
            ));
        };
        self.f.set_position(closing + 1);
        let lit = self.f.sub_string(begin, self.f.position())?;
        let inner = lit
            .strip_prefix(quote)
            .and_then(|s| s.strip_suffix(quote))
            .filter(|_| lit.chars().count() > 1)
            .unwrap_or(&lit);
        let s = unescape(inner).map_err(|m| self.f.other(begin, "a valid escape", m))?;
        Ok(Operand::Str(s))
    }

    fn read_number(&mut self) -> Result<Operand, CErr> {
        let begin = self.f.position();
        while self.f.in_bounds() && self.f.is_number_character(self.f.position())? {
            self.f.increment(1);
        }
        let text = self.f.sub_string(begin, self.f.position())?;
        match Dec::parse_java(&text) {
            Some(d) => Ok(Operand::Num(d)),
            None => Err(self.f.other(
                begin,
                "a value (number, 'string', true, false, null, [..], /regex/ or a path)",
                format!("Invalid number literal: '{text}'"),
            )),
        }
    }

    fn read_boolean(&mut self) -> Result<Operand, CErr> {
        let begin = self.f.position();
        let end = if self.f.current_char()? == 't' {
            begin + 3
        } else {
            begin + 4
        };
        if !self.f.in_bounds_at(end) {
            return Err(self
                .f
                .err(begin, "true or false", "Expected boolean literal"));
        }
        let v = self.f.sub_string(begin, end + 1)?;
        let b = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(self
                    .f
                    .err(begin, "true or false", "Expected boolean literal"));
            }
        };
        self.f.increment(end + 1 - begin);
        Ok(Operand::Bool(b))
    }

    fn read_path(&mut self) -> Result<Operand, CErr> {
        let previous = self.f.previous_significant_char();
        let begin = self.f.position();
        self.f.increment(1);
        while self.f.in_bounds() {
            if self.f.current_char()? == '[' {
                match self
                    .f
                    .index_of_matching_close(self.f.position(), '[', ']', true, false)?
                {
                    Some(close) => self.f.set_position(close + 1),
                    None => {
                        return Err(self.f.err(
                            self.f.position(),
                            "']'",
                            format!("Square brackets does not match in filter {}", self.text),
                        ));
                    }
                }
            }
            let c = self.f.current_char()?;
            let closing_function = c == ')' && self.closing_function_bracket(begin)?;
            let closing_logical = c == ')' && !closing_function;
            if !self.f.in_bounds() || is_rel_op_char(c) || c == SPACE || closing_logical {
                break;
            }
            self.f.increment(1);
        }
        let should_exist = previous != '!';
        let text: Vec<char> = self
            .f
            .chars()
            .get(begin as usize..self.f.position().max(begin) as usize)
            .map(<[char]>::to_vec)
            .unwrap_or_default();
        let path = compile_static(&text, self.f.base() + begin, self.depth + 1)?;
        Ok(Operand::Path(Box::new(PathOperand {
            path,
            exists_check: false,
            should_exist,
        })))
    }

    fn closing_function_bracket(&self, lower: isize) -> Result<bool, CErr> {
        if self.f.current_char()? != ')' {
            return Ok(false);
        }
        let Some(mut idx) = self.f.index_of_previous_significant(self.f.position()) else {
            return Ok(false);
        };
        if self.f.char_at(idx)? != '(' {
            return Ok(false);
        }
        idx -= 1;
        while self.f.in_bounds_at(idx) && idx > lower {
            if self.f.char_at(idx)? == '.' {
                return Ok(true);
            }
            idx -= 1;
        }
        Ok(false)
    }
}

/// Static evaluation depth of a path: one level per token plus the deepest nested path.
pub(crate) fn weight(p: &CompiledPath) -> usize {
    let mut w = p.tokens.len() + 1;
    let mut nested = 0;
    for t in &p.tokens {
        match t {
            Token::Filter(e) => nested = nested.max(expr_weight(e)),
            Token::Function(f) => {
                for prm in &f.params {
                    if let Param::Path(pp) = prm {
                        nested = nested.max(weight(pp));
                    }
                }
                if let Some(lp) = &f.length_param {
                    nested = nested.max(weight(lp));
                }
            }
            _ => {}
        }
    }
    w += nested;
    w
}

fn expr_weight(e: &Expr) -> usize {
    match e {
        Expr::Or(v) | Expr::And(v) => 1 + v.iter().map(expr_weight).max().unwrap_or(0),
        Expr::Not(x) => 1 + expr_weight(x),
        Expr::Rel(r) => {
            let side = |o: &Operand| match o {
                Operand::Path(p) => weight(&p.path),
                _ => 0,
            };
            1 + side(&r.left).max(side(&r.right))
        }
    }
}
