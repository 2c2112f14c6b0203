//! Text shown to people (a terminal, a web page) with the characters that could deceive them
//! made visible.
//!
//! Events and quarantined bodies hold whatever a sender posted. A control character could drive
//! the terminal that prints it; a right-to-left override could make a value show something
//! other than what is stored (`\u{202e}gnp.exe` reads as `exe.png`); an invisible character
//! could make two different values look alike. Each such character is shown as the escape JSON
//! gives it (`\u202e`), Rust's form (`\u{e0001}`) beyond the Basic Multilingual Plane.

use std::borrow::Cow;

/// Whether `c` is a control character, or one that reorders text, separates lines without a
/// line break, or shows as nothing.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || deceptive(c)
}

fn deceptive(c: char) -> bool {
    matches!(
        c,
        // Line and paragraph separators, Unicode's format characters (category Cf:
        // direction marks and overrides among them), and the other characters Unicode
        // says to show as nothing (Default_Ignorable_Code_Point: fillers, variation
        // selectors).
        '\u{00ad}'
            | '\u{034f}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{ffa0}'
            | '\u{e0100}'..='\u{e01ef}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Whether `c`, an [`is_hidden`] character between `before` and `after`, is doing its job in
/// writing rather than hiding: a zero-width joiner or non-joiner between two characters beyond
/// ASCII (an emoji sequence, a Persian or Indic word), a variation selector after one (the
/// emoji form of ❤) or before a keycap.
fn in_use(c: char, before: Option<char>, after: Option<char>) -> bool {
    let wide = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace());
    match c {
        '\u{200c}' | '\u{200d}' => wide(before) && wide(after),
        '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' => {
            wide(before) || after == Some('\u{20e3}')
        }
        _ => false,
    }
}

/// `text` with every [`is_hidden`] character escaped, except those `keep` keeps (a line break
/// where lines are allowed) and joiners and variation selectors that join or select (see
/// [`in_use`]). Borrowed when there is none.
pub fn escape_hidden(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    // Allocated at the first character to escape: most text has none.
    let mut safe: Option<String> = None;
    let mut before = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let after = chars.peek().map(|&(_, next)| next);
        let escaped = is_hidden(c) && !keep(c) && !in_use(c, before, after);
        before = Some(c);
        let safe = match (&mut safe, escaped) {
            (Some(safe), _) => safe,
            (None, false) => continue,
            (None, true) => {
                let mut started = String::with_capacity(text.len() + 16);
                started.push_str(&text[..at]);
                safe.insert(started)
            }
        };
        match c {
            c if !escaped => safe.push(c),
            '\n' => safe.push_str("\\n"),
            '\r' => safe.push_str("\\r"),
            '\t' => safe.push_str("\\t"),
            // JSON's escape where it has one (the Basic Multilingual Plane), Rust's beyond.
            c => {
                use std::fmt::Write as _;
                let _ = if u32::from(c) <= 0xffff {
                    write!(safe, "\\u{:04x}", u32::from(c))
                } else {
                    write!(safe, "\\u{{{:x}}}", u32::from(c))
                };
            }
        }
    }
    safe.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn shortened(text: &str, max: usize) -> String {
    match cut_after(text, max) {
        Some(end) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Where `text` is cut to keep its first `max` characters as a reader counts them (a letter and
/// its accents, an emoji sequence or a flag are one: cut between code points, a family emoji
/// would show as its first person and a hanging joiner); None when it has no more than `max`.
pub fn cut_after(text: &str, max: usize) -> Option<usize> {
    use unicode_segmentation::UnicodeSegmentation as _;
    text.grapheme_indices(true).nth(max).map(|(end, _)| end)
}

/// The characters of `text` as a reader counts them (see [`cut_after`]).
pub fn characters(text: &str) -> usize {
    use unicode_segmentation::UnicodeSegmentation as _;
    text.graphemes(true).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_between_the_characters_a_reader_sees() {
        let family = "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}";
        let text = format!("ab{family}e\u{301}f");
        assert_eq!(shortened(&text, 3), format!("ab{family}…"));
        assert_eq!(
            shortened(&text, 4),
            "ab\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}e\u{301}…"
        );
        assert_eq!(shortened(&text, 5), text);
        assert_eq!(characters(&text), 5);
        assert_eq!(cut_after("short", 5), None);
        assert_eq!(shortened("🇫🇷🇩🇪", 1), "🇫🇷…");
    }

    #[test]
    fn deceiving_characters_are_escaped_and_kept_ones_are_not() {
        assert_eq!(escape_hidden("plain é 漢", |_| false), "plain é 漢");
        assert_eq!(
            escape_hidden("\u{202e}gnp.exe\u{202c}\u{1b}[31m\u{200b}\u{e0041}", |_| {
                false
            }),
            "\\u202egnp.exe\\u202c\\u001b[31m\\u200b\\u{e0041}"
        );
        assert_eq!(escape_hidden("a\nb\tc", |_| false), "a\\nb\\tc");
        assert_eq!(escape_hidden("a\nb\tc", |c| c == '\n'), "a\nb\\tc");
    }

    #[test]
    fn joiners_and_selectors_that_do_their_job_in_writing_are_kept() {
        for text in [
            "👨\u{200d}👩\u{200d}👧 family",
            "می\u{200c}خواهم",
            "❤\u{fe0f}",
            "1\u{fe0f}\u{20e3}",
        ] {
            assert_eq!(escape_hidden(text, |_| false), text);
        }
        // Between ASCII letters they only make one word look like another.
        assert_eq!(escape_hidden("ad\u{200d}min", |_| false), "ad\\u200dmin");
        assert_eq!(escape_hidden("a\u{fe0f}", |_| false), "a\\ufe0f");
    }
}
