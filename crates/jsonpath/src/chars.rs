//! A cursor over the characters of an expression that reproduces the scanning rules of Jayway's
//! `CharacterIndex`: an adjustable logical end, "significant" characters that skip only plain
//! spaces, and reads past the logical end that still see the underlying text. Jayway's grammar is
//! defined by this scanner rather than by a formal grammar, so the parser must scan the same way to
//! accept and reject the same expressions.

use crate::error::ParseError;

/// A compile failure, remembering whether Jayway would have thrown an `InvalidPathException`
/// (`invalid_path`) or some other exception. The filter parser backtracks only on the former.
#[derive(Debug, Clone)]
pub(crate) struct CErr {
    pub err: ParseError,
    pub invalid_path: bool,
}

impl CErr {
    pub(crate) fn invalid(err: ParseError) -> Self {
        CErr {
            err,
            invalid_path: true,
        }
    }
    pub(crate) fn other(err: ParseError) -> Self {
        CErr {
            err,
            invalid_path: false,
        }
    }
}

pub(crate) const SPACE: char = ' ';

#[derive(Debug, Clone)]
pub(crate) struct CharIndex<'s> {
    chars: &'s [char],
    pos: isize,
    end: isize,
    /// Offset of `chars[0]` in the expression the caller wrote (may be negative when Jayway
    /// prefixed the text with `$.`), used only to report positions.
    base: isize,
}

impl<'s> CharIndex<'s> {
    pub(crate) fn new(chars: &'s [char], base: isize) -> Self {
        CharIndex {
            chars,
            pos: 0,
            end: chars.len() as isize - 1,
            base,
        }
    }

    pub(crate) fn chars(&self) -> &'s [char] {
        self.chars
    }

    pub(crate) fn base(&self) -> isize {
        self.base
    }

    /// Absolute (caller-visible) position of index `i`, clamped at zero.
    pub(crate) fn abs(&self, i: isize) -> usize {
        (self.base + i).max(0) as usize
    }

    /// An `InvalidPathException` at index `at`.
    pub(crate) fn err(&self, at: isize, expected: &str, message: impl Into<String>) -> CErr {
        CErr::invalid(ParseError::new(self.abs(at), expected, message))
    }

    /// Some other exception (index out of range, number format…) at index `at`.
    pub(crate) fn other(&self, at: isize, expected: &str, message: impl Into<String>) -> CErr {
        CErr::other(ParseError::new(self.abs(at), expected, message))
    }

    /// `charAt` reads the underlying text, ignoring the logical end; outside it Java throws.
    pub(crate) fn char_at(&self, i: isize) -> Result<char, CErr> {
        if i >= 0 && (i as usize) < self.chars.len() {
            Ok(self.chars[i as usize])
        } else {
            Err(self.other(i, "more characters", "Unexpected end of expression"))
        }
    }

    pub(crate) fn length(&self) -> isize {
        self.end + 1
    }

    pub(crate) fn current_char(&self) -> Result<char, CErr> {
        self.char_at(self.pos)
    }

    pub(crate) fn current_char_is(&self, c: char) -> Result<bool, CErr> {
        Ok(self.current_char()? == c)
    }

    pub(crate) fn last_char_is(&self, c: char) -> Result<bool, CErr> {
        Ok(self.char_at(self.end)? == c)
    }

    pub(crate) fn next_char_is(&self, c: char) -> bool {
        self.in_bounds_at(self.pos + 1) && self.chars.get((self.pos + 1) as usize) == Some(&c)
    }

    pub(crate) fn increment(&mut self, n: isize) {
        self.pos += n;
    }

    pub(crate) fn decrement_end(&mut self, n: isize) {
        self.end -= n;
    }

    pub(crate) fn set_position(&mut self, p: isize) {
        self.pos = p;
    }

    pub(crate) fn position(&self) -> isize {
        self.pos
    }

    pub(crate) fn in_bounds_at(&self, i: isize) -> bool {
        i >= 0 && i <= self.end
    }

    pub(crate) fn in_bounds(&self) -> bool {
        self.in_bounds_at(self.pos)
    }

    pub(crate) fn out_of_bounds(&self, i: isize) -> bool {
        !self.in_bounds_at(i)
    }

    pub(crate) fn current_is_tail(&self) -> bool {
        self.pos >= self.end
    }

    pub(crate) fn has_more_characters(&self) -> bool {
        self.in_bounds_at(self.pos + 1)
    }

    /// Index of the bracket closing the one at `start`, skipping quoted strings and regex
    /// literals when asked; `None` when unbalanced.
    pub(crate) fn index_of_matching_close(
        &self,
        start: isize,
        open: char,
        close: char,
        skip_strings: bool,
        skip_regex: bool,
    ) -> Result<Option<isize>, CErr> {
        let c = self.char_at(start)?;
        if c != open {
            return Err(self.err(
                start,
                &format!("'{open}'"),
                format!("Expected {open} but found {c}"),
            ));
        }
        let mut opened = 1;
        let mut read = start + 1;
        while self.in_bounds_at(read) {
            if skip_strings {
                let q = self.char_at(read)?;
                if q == '\'' || q == '"' {
                    match self.next_index_of_unescaped(read, q) {
                        Some(i) => read = i + 1,
                        None => {
                            return Err(self.err(
                                read,
                                &format!("a closing {q}"),
                                format!("Could not find matching close quote for {q}"),
                            ));
                        }
                    }
                }
            }
            if skip_regex && self.char_at(read)? == '/' {
                match self.next_index_of_unescaped(read, '/') {
                    Some(i) => read = i + 1,
                    None => {
                        return Err(self.err(
                            read,
                            "a closing /",
                            "Could not find matching close for / when parsing regex",
                        ));
                    }
                }
            }
            let c = self.char_at(read)?;
            if c == open {
                opened += 1;
            }
            if c == close {
                opened -= 1;
                if opened == 0 {
                    return Ok(Some(read));
                }
            }
            read += 1;
        }
        Ok(None)
    }

    /// Next index after `start` holding `c` once plain spaces are skipped, else `None`.
    pub(crate) fn index_of_next_significant(
        &self,
        start: isize,
        c: char,
    ) -> Result<Option<isize>, CErr> {
        let mut read = start + 1;
        while !self.out_of_bounds(read) && self.char_at(read)? == SPACE {
            read += 1;
        }
        // Jayway reads the character even past the logical end (and throws past the text).
        if self.char_at(read)? == c {
            Ok(Some(read))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn next_index_of(&self, start: isize, c: char) -> Option<isize> {
        let mut read = start.max(0);
        while !self.out_of_bounds(read) {
            if self.chars.get(read as usize) == Some(&c) {
                return Some(read);
            }
            read += 1;
        }
        None
    }

    pub(crate) fn next_index_of_unescaped(&self, start: isize, c: char) -> Option<isize> {
        let mut read = start + 1;
        let mut escaped = false;
        while !self.out_of_bounds(read) {
            let ch = self.chars.get(read as usize).copied().unwrap_or(SPACE);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == c {
                return Some(read);
            }
            read += 1;
        }
        None
    }

    pub(crate) fn next_significant_char_is_at(&self, start: isize, c: char) -> bool {
        let mut read = start + 1;
        while !self.out_of_bounds(read) && self.chars.get(read as usize) == Some(&SPACE) {
            read += 1;
        }
        !self.out_of_bounds(read) && self.chars.get(read as usize) == Some(&c)
    }

    pub(crate) fn next_significant_char_is(&self, c: char) -> bool {
        self.next_significant_char_is_at(self.pos, c)
    }

    pub(crate) fn next_significant_char_at(&self, start: isize) -> char {
        let mut read = start + 1;
        while !self.out_of_bounds(read) && self.chars.get(read as usize) == Some(&SPACE) {
            read += 1;
        }
        if self.out_of_bounds(read) {
            SPACE
        } else {
            self.chars.get(read as usize).copied().unwrap_or(SPACE)
        }
    }

    pub(crate) fn next_significant_char(&self) -> char {
        self.next_significant_char_at(self.pos)
    }

    pub(crate) fn read_significant_char(&mut self, c: char) -> Result<(), CErr> {
        self.skip_blanks();
        if self.current_char()? != c {
            return Err(self.err(
                self.pos,
                &format!("'{c}'"),
                format!("Expected character: {c}"),
            ));
        }
        self.increment(1);
        Ok(())
    }

    /// Consumes `s` after skipping blanks if it is there; the caller restores the position
    /// otherwise (as Jayway does).
    pub(crate) fn has_significant_sub_sequence(&mut self, s: &str) -> bool {
        self.skip_blanks();
        let n = s.chars().count() as isize;
        if !self.in_bounds_at(self.pos + n - 1) {
            return false;
        }
        let start = self.pos as usize;
        let matches = self
            .chars
            .get(start..start + n as usize)
            .is_some_and(|w| w.iter().copied().eq(s.chars()));
        if !matches {
            return false;
        }
        self.increment(n);
        true
    }

    pub(crate) fn index_of_previous_significant(&self, start: isize) -> Option<isize> {
        let mut read = start - 1;
        while !self.out_of_bounds(read) && self.chars.get(read as usize) == Some(&SPACE) {
            read -= 1;
        }
        if self.out_of_bounds(read) {
            None
        } else {
            Some(read)
        }
    }

    pub(crate) fn previous_significant_char(&self) -> char {
        match self.index_of_previous_significant(self.pos) {
            Some(i) => self.chars.get(i as usize).copied().unwrap_or(SPACE),
            None => SPACE,
        }
    }

    /// The number scanner's alphabet (digits, sign, point and exponent letters).
    pub(crate) fn is_number_character(&self, i: isize) -> Result<bool, CErr> {
        let c = self.char_at(i)?;
        Ok(c.is_ascii_digit() || c == '-' || c == '.' || c == 'E' || c == 'e')
    }

    pub(crate) fn skip_blanks(&mut self) -> &mut Self {
        while self.in_bounds()
            && self.pos < self.end
            && self.chars.get(self.pos as usize) == Some(&SPACE)
        {
            self.pos += 1;
        }
        self
    }

    fn skip_blanks_at_end(&mut self) {
        while self.in_bounds()
            && self.pos < self.end
            && self.chars.get(self.end as usize) == Some(&SPACE)
        {
            self.end -= 1;
        }
    }

    pub(crate) fn trim(&mut self) -> &mut Self {
        self.skip_blanks();
        self.skip_blanks_at_end();
        self
    }

    /// The characters in `[start, end)` as a `String` (Java `subSequence`), clamped to the text.
    pub(crate) fn sub_string(&self, start: isize, end: isize) -> Result<String, CErr> {
        if start < 0 || end < start || end as usize > self.chars.len() {
            return Err(self.other(
                start.max(0),
                "a well-formed expression",
                "Unexpected end of expression",
            ));
        }
        Ok(self.chars[start as usize..end as usize].iter().collect())
    }
}
