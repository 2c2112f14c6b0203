//! Java `java.util.regex` patterns on top of the `regex` crate.
//!
//! Jayway compiles `/pattern/flags` with `Pattern.compile` and tests values with
//! `matcher(value).matches()`, i.e. the whole value must match. The pattern is translated so that
//! the common constructs mean what they mean in Java:
//!
//! * the match is anchored at both ends (`matches()`, not `find()`);
//! * `\d \w \s \b`, their negations and the POSIX classes (`\p{Alpha}`) are ASCII-only unless the
//!   `U` flag is given, as in Java;
//! * `.` excludes Java's line terminators (`\n \r \u0085 \u2028 \u2029`; only `\n` with `d`);
//! * flags `i m s x d u U` map to their Java meaning, after the pattern and inline (`(?s)`,
//!   `(?-i:…)`), each for the rest of its group; with `m`, `\r` ends a line too;
//! * `#` comments under `x` are removed here (left to the `regex` crate, one would take the
//!   closing of the group the pattern is wrapped in with it);
//! * a `[` inside a class opens a nested set, as in Java: `[[:alpha:]]` is not a POSIX class;
//! * `\Q…\E`, `\Z`, `\G`, `\v \V \h \H \R \e \cX \0nnn` and Java's `\p{javaLowerCase}` and
//!   `\p{IsLatin}` forms are supported.
//!
//! * ignoring case without `u` folds ASCII letters only, as in Java: every other letter outside a
//!   class is matched with its case (and `k`, `s` without their non-ASCII fold partners).
//!
//! Differences that remain: the `regex` crate has no backreferences, lookaround, possessive
//! quantifiers or atomic groups (such patterns fail to compile, which Jayway would accept),
//! inside a bracket class or `\Q…\E` case-insensitive matching folds Unicode case (Java folds
//! only ASCII there too without `u`), and `$` without `m` matches only at the very end (Java's
//! also matches before a final line break).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use regex::Regex;

/// Largest compiled size of one pattern (the `regex` crate's measure); larger ones are refused
/// as too complex. A match runs in a lazily built DFA while its states fit its cache
/// ([`DFA_CACHE_SIZE`]), and otherwise in an engine whose time grows with the pattern's size
/// times the value's length, where a pattern at 1 MiB took minutes on a 1 MB value
/// (`[ab]*a[ab]{12000}c`). At this size and cache, the worst such pattern accepted takes
/// about 0.2 s on the largest value an event holds.
const MAX_COMPILED_SIZE: usize = 512 << 10;

/// The lazy DFA's cache for one pattern (per thread matching with it).
const DFA_CACHE_SIZE: usize = 8 << 20;

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
        let java = java_repetitions(source, flags)?;
        let initial = Flags::from_letters(flags);
        let body = translate(&java, initial)?;
        let full = match rust_flags(flags, initial.unix_lines) {
            None => format!(r"\A(?:{body})\z"),
            Some(prefix) => format!(r"(?{prefix})\A(?:{body})\z"),
        };
        // A pattern's compiled size bounds the time compiling it takes, or finding that it is
        // too large (up to about 15 ms at this limit, for large Unicode classes repeated); the
        // number of patterns in an expression is bounded by the parser.
        let re = regex::RegexBuilder::new(&full)
            .size_limit(MAX_COMPILED_SIZE)
            .dfa_size_limit(DFA_CACHE_SIZE)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(JavaRegex {
            source: source.to_string(),
            flags: flags.to_string(),
            re,
        })
    }

    /// `Pattern.matcher(input).matches()`; false without matching once the deadline of
    /// [`within`] has passed (the evaluation's answer is then dropped).
    pub(crate) fn matches(&self, input: &str) -> bool {
        if past_deadline() {
            return false;
        }
        self.re.is_match(input)
    }
}

thread_local! {
    /// The time by which the evaluation running on this thread is to end, if it has one.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether a pattern was left unmatched, or a step not taken, for the deadline.
    static EXPIRED: Cell<bool> = const { Cell::new(false) };
    /// Steps taken since the clock was last read (see [`step_past_deadline`]).
    static STEPS: Cell<u32> = const { Cell::new(0) };
    /// Set by whoever asked for the evaluation when its answer is no longer wanted (the client
    /// of a search has left): the evaluation then ends as at its deadline.
    static STOP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Steps of an evaluation between two readings of the clock: a step is microseconds at most,
/// so the deadline is noticed within a millisecond or so, and the clock costs little.
const STEPS_PER_CLOCK_READING: u32 = 256;

/// Whether the evaluation on this thread is to stop: its deadline has passed. Asked at every
/// step of the evaluator, since steps, not only patterns, can add up to minutes (a deep scan
/// compared with a deep scan, `$..*[?(@ == $..*)]`, over a large event is quadratic in its
/// nodes). Once true, it stays true until the evaluation ends, so that every step still to
/// come returns at once.
pub(crate) fn step_past_deadline() -> bool {
    if EXPIRED.with(Cell::get) {
        return true;
    }
    let steps = STEPS.with(|steps| {
        let taken = steps.get().wrapping_add(1);
        steps.set(taken);
        taken
    });
    steps % STEPS_PER_CLOCK_READING == 0 && past_deadline()
}

fn past_deadline() -> bool {
    let stopped = STOP.with(|stop| {
        stop.borrow()
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
    });
    DEADLINE.with(|deadline| match deadline.get() {
        Some(at) if stopped || Instant::now() >= at => {
            EXPIRED.with(|expired| expired.set(true));
            true
        }
        _ => false,
    })
}

/// Runs `evaluate` with `deadline` for its pattern matches, the one step of an evaluation whose
/// cost grows with both the pattern and the text: `None` when the deadline passed before it
/// ended (its answer is then not the evaluation's).
pub(crate) fn within<T>(deadline: Instant, evaluate: impl FnOnce() -> T) -> Option<T> {
    within_unless(deadline, None, evaluate)
}

/// [`within`], also ending as at the deadline once `stop` is set (from another thread).
pub(crate) fn within_unless<T>(
    deadline: Instant,
    stop: Option<Arc<AtomicBool>>,
    evaluate: impl FnOnce() -> T,
) -> Option<T> {
    /// Puts the thread's deadline and stop back as they were, also when `evaluate` panics.
    struct Restore(Option<Instant>, Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|deadline| deadline.set(self.0));
            STOP.with(|stop| *stop.borrow_mut() = self.1.take());
        }
    }
    let _restore = Restore(
        DEADLINE.with(|current| current.replace(Some(deadline))),
        STOP.with(|current| current.replace(stop)),
    );
    EXPIRED.with(|expired| expired.set(false));
    STEPS.with(|steps| steps.set(0));
    let answer = evaluate();
    let expired = EXPIRED.with(|expired| expired.replace(false));
    (!expired).then_some(answer)
}

const ASCII_D: &str = "[0-9]";
const ASCII_ND: &str = "[^0-9]";
const ASCII_W: &str = "[0-9A-Za-z_]";
const ASCII_NW: &str = "[^0-9A-Za-z_]";
const ASCII_S: &str = r"[\t\n\x0B\f\r ]";
const ASCII_NS: &str = r"[^\t\n\x0B\f\r ]";
/// Java's `\v`: the vertical whitespace characters.
const VERTICAL: &str = r"\n\x0B\f\r\x{85}\x{2028}\x{2029}";
/// Java's `\h`: the horizontal whitespace characters.
const HORIZONTAL: &str = r" \t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}";

/// The flags that change how this translation reads the pattern; the others (`i`, `m`, `x`)
/// are the `regex` crate's own and are passed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    /// `s`: `.` matches line terminators too.
    dotall: bool,
    /// `d`: only `\n` ends a line.
    unix_lines: bool,
    /// `U`: `\d \w \s \b` and the POSIX classes are Unicode's.
    unicode_classes: bool,
    /// `x`: whitespace and `#` comments are ignored.
    comments: bool,
    /// `i`: case is ignored, for ASCII letters only unless `u` is given too.
    case_insensitive: bool,
    /// `u`: with `i`, case is ignored for every letter.
    unicode_case: bool,
}

impl Flags {
    fn from_letters(letters: &str) -> Flags {
        Flags::default().with(letters)
    }

    /// These flags changed by the letters of a Java flag group (`is-x`): those before a `-` on,
    /// those after it off. Also returns the letters to pass on to the `regex` crate.
    fn with(mut self, letters: &str) -> Flags {
        let mut on = true;
        for letter in letters.chars() {
            match letter {
                '-' => on = false,
                's' => self.dotall = on,
                'd' => self.unix_lines = on,
                // As in Java, `U` brings Unicode case (`u`) with it, and takes it away.
                'U' => {
                    self.unicode_classes = on;
                    self.unicode_case = on;
                }
                'x' => self.comments = on,
                'i' => self.case_insensitive = on,
                'u' => self.unicode_case = on,
                _ => {}
            }
        }
        self
    }
}

/// The `regex` crate's form of a Java flag group's letters: `i`, `m` and `x` (with `m`, `R`, so
/// that `\r` ends a line as in Java), each said once, with their `-` (Java takes `(?ii)` and
/// `(?i-i)`; the crate does not); `None` when nothing is left to say.
fn rust_flags(letters: &str, unix_lines: bool) -> Option<String> {
    let mut on = String::new();
    let mut off = String::new();
    let mut turning_on = true;
    for letter in letters.chars() {
        match letter {
            '-' => turning_on = false,
            'i' | 'm' | 'x' => {
                // The last mention of a letter wins, as in Java.
                on.retain(|c| c != letter);
                off.retain(|c| c != letter);
                if turning_on {
                    on.push(letter);
                } else {
                    off.push(letter);
                }
            }
            _ => {}
        }
    }
    if on.contains('m') && !unix_lines {
        on.push('R');
    }
    if off.contains('m') {
        off.push('R');
    }
    match (on.is_empty(), off.is_empty()) {
        (true, true) => None,
        (_, true) => Some(on),
        _ => Some(format!("{on}-{off}")),
    }
}

/// `c` as a literal of the `regex` crate, also in its comments mode (where whitespace and `#`
/// are otherwise skipped).
fn push_literal(out: &mut String, c: char) {
    if c.is_whitespace() || c == '#' {
        out.push_str(&format!(r"\x{{{:X}}}", u32::from(c)));
    } else {
        out.push_str(&regex::escape(&c.to_string()));
    }
}

/// The value of the four hexadecimal digits at `at`, if there are four.
fn hex4(chars: &[char], at: usize) -> Option<u32> {
    hex_at(chars, at, 4)
}

/// The value of the `count` hexadecimal digits at `at`, if there are that many (and it fits).
fn hex_at(chars: &[char], at: usize, count: usize) -> Option<u32> {
    let digits = chars.get(at..at.checked_add(count)?)?;
    digits.iter().try_fold(0u32, |value, digit| {
        value.checked_mul(16)?.checked_add(digit.to_digit(16)?)
    })
}

/// The character `code`, written as an escape (a literal in a class and under `x` too).
/// Ignoring case without `u`, a letter that folds beyond ASCII is matched with its case, as
/// Java does for a character written as an escape as for one written as itself.
fn push_code(out: &mut String, code: u32, flags: Flags, class_depth: usize) {
    let escaped = format!(r"\x{{{code:X}}}");
    let folds_wider = char::from_u32(code).is_some_and(|c| {
        matches!(c, 'k' | 'K' | 's' | 'S') || (!c.is_ascii() && c.is_alphabetic())
    });
    if flags.case_insensitive && !flags.unicode_case && class_depth == 0 && folds_wider {
        match char::from_u32(code).filter(char::is_ascii) {
            Some(c) => {
                let (lower, upper) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
                out.push_str(&format!("(?-i:[{lower}{upper}])"));
            }
            None => out.push_str(&format!("(?-i:{escaped})")),
        }
    } else {
        out.push_str(&escaped);
    }
}

/// The inside of a bracket class for a Java `\p{name}`, where Java means something other than
/// the `regex` crate does by the name (or the crate does not know it); `None` otherwise.
fn java_property(name: &str, unicode_classes: bool) -> Option<&'static str> {
    // The POSIX classes: ASCII only in Java, unless `U` is given.
    let posix = match name {
        "Lower" => ("a-z", r"\p{Lowercase}"),
        "Upper" => ("A-Z", r"\p{Uppercase}"),
        "ASCII" => (r"\x00-\x7F", r"\x00-\x7F"),
        "Alpha" => ("a-zA-Z", r"\p{Alphabetic}"),
        "Digit" => ("0-9", r"\p{Nd}"),
        "Alnum" => ("a-zA-Z0-9", r"\p{Alphabetic}\p{Nd}"),
        "Punct" => (r"!-/:-@\[-`{-~", r"\p{P}"),
        // Java's Unicode forms: everything but white space, controls, surrogates (which no
        // text here holds) and unassigned code points; and that with the blanks, less the
        // controls.
        "Graph" => ("!-~", r"[^\s\p{Cc}\p{Cn}]"),
        "Print" => (" -~", r"[^\s\p{Cc}\p{Cn}]\p{Zs}\t&&[^\p{Cc}]"),
        "Blank" => (r" \t", r"\p{Zs}\t"),
        "Cntrl" => (r"\x00-\x1F\x7F", r"\p{Cc}"),
        "XDigit" => ("0-9a-fA-F", r"\p{Nd}\p{Hex_Digit}"),
        "Space" => (r" \t\n\x0B\f\r", r"\p{White_Space}"),
        // The `java.lang.Character` classes.
        "javaLowerCase" => (r"\p{Lowercase}", r"\p{Lowercase}"),
        "javaUpperCase" => (r"\p{Uppercase}", r"\p{Uppercase}"),
        "javaAlphabetic" => (r"\p{Alphabetic}", r"\p{Alphabetic}"),
        "javaLetter" => (r"\p{L}", r"\p{L}"),
        "javaDigit" => (r"\p{Nd}", r"\p{Nd}"),
        "javaLetterOrDigit" => (r"\p{L}\p{Nd}", r"\p{L}\p{Nd}"),
        "javaSpaceChar" => (r"\p{Zs}\p{Zl}\p{Zp}", r"\p{Zs}\p{Zl}\p{Zp}"),
        "javaWhitespace" => (
            r"\t-\r\x1C-\x1F\p{Zl}\p{Zp}\p{Zs}--\xA0\x{2007}\x{202F}",
            r"\t-\r\x1C-\x1F\p{Zl}\p{Zp}\p{Zs}--\xA0\x{2007}\x{202F}",
        ),
        _ => return None,
    };
    Some(if unicode_classes { posix.1 } else { posix.0 })
}

/// The inside of a bracket class for a Java `\p{name}` that [`java_property`] does not cover and
/// that is no `Is…` name: the names `Pattern` takes without a prefix (the general categories and
/// their groups, `LC`, `LD`, `L1`, `all`, the rest of the `java…` classes) and the `gc=`,
/// `general_category=`, `sc=` and `script=` forms. Java's error for any other name: it refuses
/// `\p{Latin}` (a script needs `Is` or `sc=`), which the `regex` crate would take.
fn java_named_property(name: &str) -> Result<String, String> {
    const CATEGORIES: [&str; 37] = [
        "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Me", "Mc", "Nd", "Nl", "No", "Zs", "Zl", "Zp",
        "Cc", "Cf", "Co", "Cs", "Pd", "Ps", "Pe", "Pc", "Po", "Sm", "Sc", "Sk", "So", "Pi", "Pf",
        "L", "M", "N", "Z", "C", "P", "S",
    ];
    /// Java's `Character.isIdentifierIgnorable`.
    const IGNORABLE: &str = r"\x00-\x08\x0E-\x1B\x7F-\x9F\p{Cf}";
    if let Some((key, value)) = name.split_once('=') {
        return match key {
            "gc" | "general_category" => java_property(value, false)
                .map(str::to_owned)
                .map_or_else(|| java_named_property(value), Ok)
                .map_err(|_| format!("Unknown character property name {{{value}}}")),
            "sc" | "script" if !value.is_empty() => Ok(format!(r"\p{{sc={value}}}")),
            "blk" | "block" => Err(format!(
                "Unicode blocks ({{{name}}}) are not supported; use a script (sc=) or a range"
            )),
            _ => Err(format!(
                "Unknown Unicode property {{name=<{key}>, value=<{value}>}}"
            )),
        };
    }
    // Surrogates: no text here holds one alone (the `regex` crate has no such category).
    if name == "Cs" {
        return Ok(r"[^\s\S]".to_owned());
    }
    if CATEGORIES.contains(&name) || name == "LC" {
        return Ok(format!(r"\p{{{name}}}"));
    }
    Ok(match name {
        "LD" => r"\p{L}\p{Nd}".to_owned(),
        "L1" => r"\x00-\xFF".to_owned(),
        "all" => r"\s\S".to_owned(),
        "javaTitleCase" => r"\p{Lt}".to_owned(),
        "javaMirrored" => r"\p{Bidi_Mirrored}".to_owned(),
        "javaDefined" => r"\P{Cn}".to_owned(),
        "javaIdeographic" => r"\p{Ideographic}".to_owned(),
        "javaISOControl" => r"\x00-\x1F\x7F-\x9F".to_owned(),
        "javaIdentifierIgnorable" => IGNORABLE.to_owned(),
        "javaJavaIdentifierStart" => r"\p{L}\p{Nl}\p{Sc}\p{Pc}".to_owned(),
        "javaJavaIdentifierPart" => {
            format!(r"\p{{L}}\p{{Sc}}\p{{Pc}}\p{{Nd}}\p{{Nl}}\p{{Mc}}\p{{Mn}}{IGNORABLE}")
        }
        "javaUnicodeIdentifierStart" => r"\p{ID_Start}".to_owned(),
        "javaUnicodeIdentifierPart" => format!(r"\p{{ID_Continue}}{IGNORABLE}"),
        _ if name.starts_with("In") => {
            return Err(format!(
                "Unicode blocks ({{{name}}}) are not supported; use a script (IsLatin) or a range"
            ));
        }
        _ => return Err(format!("Unknown character property name {{{name}}}")),
    })
}

/// Repetitions as `java.util.regex.Pattern` reads them, where the `regex` crate reads them
/// otherwise: an error for a quantifier on a quantifier (`a**`, `a+*`, `a{2}*`, `a???`: Java
/// allows one `?` after a quantifier, its reluctant form, and nothing after that; its possessive
/// `+` is not supported) and for a `{` that begins no repetition (`a{ 1}`, `a{x}`), which Java
/// refuses when the filter is compiled, so ISC refuses the filter; and the pattern without a
/// counted repetition that follows another (`a{2}{3}`, `a+{2}`), which Java reads as repeating
/// nothing, where the `regex` crate would repeat the repetition. In comments mode (`x`),
/// whitespace and `#` comments between the parts are read past, as Java reads them.
fn java_repetitions(src: &str, flags: &str) -> Result<String, String> {
    // Comments mode (`x`), given or turned on anywhere: whitespace means nothing and `#` starts
    // a comment to the line's end (taken here for the whole pattern).
    let comments = flags.contains('x')
        || src.split("(?").skip(1).any(|rest| {
            rest.chars()
                .take_while(|c| "idmsuxUc-".contains(*c))
                .take_while(|c| *c != '-')
                .any(|c| c == 'x')
        });
    #[derive(Clone, Copy, PartialEq)]
    enum Prev {
        Nothing,
        Atom,
        Quantifier,
        Modified,
    }
    let chars: Vec<char> = src.chars().collect();
    let dangling =
        |c: char, at: usize| Err(format!("Dangling meta character '{c}' near index {at}"));
    // Counted repetitions (with their `?`) that Java reads as repeating nothing.
    let mut ignored: Vec<std::ops::RangeInclusive<usize>> = Vec::new();
    let mut prev = Prev::Nothing;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if comments && c.is_whitespace() {
            i += 1;
            continue;
        }
        if comments && c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        match c {
            '\\' => {
                let n = chars.get(i + 1).copied();
                i += 2;
                match n {
                    Some('Q') => {
                        while i < chars.len()
                            && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E'))
                        {
                            i += 1;
                        }
                        i += 2;
                    }
                    // `\p{L}`, `\x{1F600}`, `\N{…}`, `\k<name>`: their braces are no repetition.
                    Some('p' | 'P' | 'x' | 'N') if chars.get(i) == Some(&'{') => {
                        while i < chars.len() && chars[i] != '}' {
                            i += 1;
                        }
                        i += 1;
                    }
                    Some('k') if chars.get(i) == Some(&'<') => {
                        while i < chars.len() && chars[i] != '>' {
                            i += 1;
                        }
                        i += 1;
                    }
                    _ => {}
                }
                prev = Prev::Atom;
                continue;
            }
            '[' => {
                // To the class's end: classes nest in Java (`[a[b]]`, `[a&&[^b]]`).
                let mut depth = 0usize;
                let mut first = true;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 1,
                        '[' => depth += 1,
                        ']' if !first => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    // A `]` first in a class (after `[` or `[^`) is a member.
                    first = chars[i] == '[' || (chars[i] == '^' && chars[i - 1] == '[');
                    i += 1;
                }
                prev = Prev::Atom;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    i += 1;
                    if chars.get(i + 1) == Some(&'<')
                        && chars.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic())
                    {
                        while i < chars.len() && chars[i] != '>' {
                            i += 1;
                        }
                    }
                }
                prev = Prev::Nothing;
            }
            '|' => prev = Prev::Nothing,
            '*' | '+' | '?' => {
                prev = match prev {
                    Prev::Atom => Prev::Quantifier,
                    // Possessive (`a++`): matching without giving back, which the `regex`
                    // crate cannot do; taken as greedy, `a++a` would match where Java cannot.
                    Prev::Quantifier if c == '+' => {
                        return Err(format!(
                            "possessive quantifiers (near index {i}) are not supported"
                        ));
                    }
                    Prev::Quantifier if c == '?' => Prev::Modified,
                    Prev::Quantifier | Prev::Modified => return dangling(c, i),
                    // Nothing to repeat: the `regex` crate refuses it too.
                    Prev::Nothing => Prev::Nothing,
                };
            }
            '{' => {
                let digits = |from: usize| {
                    chars[from..]
                        .iter()
                        .take_while(|d| d.is_ascii_digit())
                        .count()
                };
                let low = digits(i + 1);
                let mut end = i + 1 + low;
                if low > 0 && chars.get(end) == Some(&',') {
                    end += 1 + digits(end + 1);
                }
                if low == 0 || chars.get(end) != Some(&'}') {
                    return Err(format!("Illegal repetition near index {i}"));
                }
                match prev {
                    Prev::Atom => prev = Prev::Quantifier,
                    // After a repetition, Java's repeats nothing: `a{2}{3}` is `a{2}`.
                    Prev::Quantifier | Prev::Modified => {
                        let reluctant = chars.get(end + 1) == Some(&'?');
                        ignored.push(i..=end + usize::from(reluctant));
                        end += usize::from(reluctant);
                    }
                    Prev::Nothing => {}
                }
                i = end;
            }
            _ => prev = Prev::Atom,
        }
        i += 1;
    }
    Ok(chars
        .iter()
        .enumerate()
        .filter(|(at, _)| !ignored.iter().any(|range| range.contains(at)))
        .map(|(_, c)| c)
        .collect())
}

fn translate(src: &str, initial: Flags) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    let mut class_depth = 0usize;
    let mut flags = initial;
    // The flags in force outside each open group, restored when it closes.
    let mut groups: Vec<Flags> = Vec::new();
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
                            push_literal(&mut out, chars[i]);
                            i += 1;
                        }
                    }
                    // The whole input must match, so the end of input is all it can be here.
                    'Z' if class_depth == 0 => out.push_str(r"\z"),
                    'G' if class_depth == 0 => out.push_str(r"\A"),
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' if !flags.unicode_classes => {
                        out.push_str(match n {
                            'd' => ASCII_D,
                            'D' => ASCII_ND,
                            'w' => ASCII_W,
                            'W' => ASCII_NW,
                            's' => ASCII_S,
                            _ => ASCII_NS,
                        });
                    }
                    // With `U`, Unicode's classes, each in brackets of its own, so that a `-`
                    // after one in a class is the character, as in Java (`[\w-.]`), which the
                    // `regex` crate would take for a range.
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' => out.push_str(&format!("[\\{n}]")),
                    'b' if !flags.unicode_classes && class_depth == 0 => {
                        out.push_str(r"(?-u:\b)");
                    }
                    'B' if !flags.unicode_classes && class_depth == 0 => {
                        out.push_str(r"(?-u:\B)");
                    }
                    'v' => out.push_str(&format!("[{VERTICAL}]")),
                    'V' => out.push_str(&format!("[^{VERTICAL}]")),
                    'h' => out.push_str(&format!("[{HORIZONTAL}]")),
                    'H' => out.push_str(&format!("[^{HORIZONTAL}]")),
                    'R' if class_depth == 0 => out.push_str(&format!(r"(?:\r\n|[{VERTICAL}])")),
                    'e' => out.push_str(r"\x1B"),
                    // `\cX`: the control character of X.
                    'c' if i < chars.len() => {
                        push_code(&mut out, u32::from(chars[i]) ^ 0x40, flags, class_depth);
                        i += 1;
                    }
                    // `\xhh` and `\x{h…h}`.
                    'x' if hex_at(&chars, i, 2).is_some() => {
                        let value = hex_at(&chars, i, 2).unwrap_or_default();
                        push_code(&mut out, value, flags, class_depth);
                        i += 2;
                    }
                    'x' if chars.get(i) == Some(&'{') => {
                        let digits = chars[i + 1..]
                            .iter()
                            .take_while(|c| c.is_ascii_hexdigit())
                            .count();
                        match (chars.get(i + 1 + digits), hex_at(&chars, i + 1, digits)) {
                            (Some('}'), Some(value)) if digits > 0 => {
                                push_code(&mut out, value, flags, class_depth);
                                i += digits + 2;
                            }
                            _ => out.push_str(r"\x"),
                        }
                    }
                    // A backslash before a character that is not ASCII: the character, in Java.
                    n if !n.is_ascii() => push_code(&mut out, u32::from(n), flags, class_depth),
                    // `\0n`, `\0nn`, `\0mnn` (m at most 3): octal.
                    '0' if chars.get(i).is_some_and(|d| ('0'..='7').contains(d)) => {
                        let mut value = 0u32;
                        let mut digits = 0;
                        while let Some(d) = chars.get(i).and_then(|d| d.to_digit(8)) {
                            if digits == 3 || (digits == 2 && value > 0o37) {
                                break;
                            }
                            value = value * 8 + d;
                            digits += 1;
                            i += 1;
                        }
                        push_code(&mut out, value, flags, class_depth);
                    }
                    // `\uhhhh`, and a UTF-16 surrogate pair written as two of them.
                    'u' if hex4(&chars, i).is_some() => {
                        let mut value = hex4(&chars, i).unwrap_or_default();
                        i += 4;
                        if (0xd800..0xdc00).contains(&value)
                            && chars.get(i) == Some(&'\\')
                            && chars.get(i + 1) == Some(&'u')
                        {
                            if let Some(low) =
                                hex4(&chars, i + 2).filter(|low| (0xdc00..0xe000).contains(low))
                            {
                                value = 0x10000 + ((value - 0xd800) << 10) + (low - 0xdc00);
                                i += 6;
                            }
                        }
                        if (0xd800..0xe000).contains(&value) {
                            // Half of a pair, alone: Java compiles it, and it matches a lone
                            // surrogate, which no text here can hold.
                            out.push_str(r"[^\s\S]");
                        } else {
                            push_code(&mut out, value, flags, class_depth);
                        }
                    }
                    'p' | 'P' => {
                        // `\p{name}`, or `\pL` with a one-letter name; the name is read whole
                        // here, never by the rest of the translation (which would take the `s`
                        // of `\p{Sc}` for a letter to match without case).
                        let (name, read): (String, usize) = if chars.get(i) == Some(&'{') {
                            match chars[i..].iter().position(|&c| c == '}') {
                                Some(end) => (chars[i + 1..i + end].iter().collect(), end + 1),
                                None => {
                                    return Err(format!(
                                        "Unclosed character family near index {i}"
                                    ));
                                }
                            }
                        } else {
                            match chars.get(i) {
                                Some(c) => (c.to_string(), 1),
                                None => {
                                    return Err(format!("Illegal character family near index {i}"));
                                }
                            }
                        };
                        let at = i + read - 1;
                        let negated = n == 'P';
                        if let Some(inside) = java_property(&name, flags.unicode_classes) {
                            out.push_str(if negated { "[^" } else { "[" });
                            out.push_str(inside);
                            out.push(']');
                        } else if let Some(rest) =
                            name.strip_prefix("Is").filter(|rest| !rest.is_empty())
                        {
                            // `\p{IsLatin}`, `\p{IsAlphabetic}`: a script or property by name.
                            out.push_str(&format!("\\{n}{{{rest}}}"));
                        } else {
                            let inside = java_named_property(&name)
                                .map_err(|why| format!("{why} near index {at}"))?;
                            out.push_str(if negated { "[^" } else { "[" });
                            out.push_str(&inside);
                            out.push(']');
                        }
                        i += read;
                    }
                    // A backslash before any other ASCII character that is not a letter or a
                    // digit: the character itself in Java, where the `regex` crate reads some
                    // (`\<`, `\>`) as assertions.
                    n if n.is_ascii_punctuation() || n == ' ' => push_literal(&mut out, n),
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
                // `[:alpha:]` is a set of characters in Java, not a POSIX class.
                if chars.get(i) == Some(&':') {
                    out.push_str(r"\:");
                    i += 1;
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
                i += 1;
            }
            '(' if class_depth == 0 => {
                groups.push(flags);
                i += 1;
                // A flag group: `(?is)` for the rest of the enclosing group, `(?is:…)` for its own.
                let letters: String = if chars.get(i) == Some(&'?') {
                    chars[i + 1..]
                        .iter()
                        .take_while(|c| "idmsuxUc-".contains(**c))
                        .collect()
                } else {
                    String::new()
                };
                let ends = chars.get(i + 1 + letters.len()).copied();
                // `(?)` and `(?c)` (canonical equivalence, which the text here needs not) are
                // flag groups that change nothing; `(?:` is a plain group.
                let flag_group = chars.get(i) == Some(&'?')
                    && (ends == Some(')') || (!letters.is_empty() && ends == Some(':')));
                // `(?<name>`: the name is copied whole (its letters are no text to match).
                let named = chars.get(i) == Some(&'?')
                    && chars.get(i + 1) == Some(&'<')
                    && chars.get(i + 2).is_some_and(char::is_ascii_alphabetic);
                if named {
                    let length = chars[i + 2..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .count();
                    if chars.get(i + 2 + length) != Some(&'>') {
                        return Err(format!(
                            "named capturing group is missing trailing '>' near index {}",
                            i + 2 + length
                        ));
                    }
                    out.push('(');
                    out.extend(&chars[i..i + 3 + length]);
                    i += 3 + length;
                } else if flag_group {
                    let changed = flags.with(&letters);
                    let passed = rust_flags(&letters, changed.unix_lines);
                    i += 1 + letters.len() + 1;
                    if ends == Some(')') {
                        // It changes the enclosing group: no group of its own.
                        groups.pop();
                        flags = changed;
                        if let Some(passed) = passed {
                            out.push_str(&format!("(?{passed})"));
                        }
                    } else {
                        flags = changed;
                        out.push_str(&format!("(?{}:", passed.unwrap_or_default()));
                    }
                } else {
                    out.push('(');
                }
            }
            ')' if class_depth == 0 => {
                if let Some(outer) = groups.pop() {
                    flags = outer;
                }
                out.push(')');
                i += 1;
            }
            // A comment, to the end of its line; left to the `regex` crate, it would take the
            // group this translation wraps the pattern in with it.
            '#' if flags.comments && class_depth == 0 => {
                let ends_line = |c: char| {
                    if flags.unix_lines {
                        c == '\n'
                    } else {
                        matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
                    }
                };
                while i < chars.len() && !ends_line(chars[i]) {
                    i += 1;
                }
                // The line's end is the comment's too (Java skips it with the comment).
                i += 1;
            }
            // Java's comments mode skips only ASCII whitespace; the `regex` crate's skips all of
            // Unicode's, so the rest is written out as the character it is.
            c if flags.comments && c.is_whitespace() && !c.is_ascii() => {
                push_literal(&mut out, c);
                i += 1;
            }
            // Ignoring case without `u`, Java folds ASCII letters only: `é` is not `É`, and `k`
            // is not the Kelvin sign (nor `s` the long s), which the `regex` crate would fold.
            c if flags.case_insensitive
                && !flags.unicode_case
                && class_depth == 0
                && (matches!(c, 'k' | 'K' | 's' | 'S') || (!c.is_ascii() && c.is_alphabetic())) =>
            {
                if c.is_ascii() {
                    let (lower, upper) = (c.to_ascii_lowercase(), c.to_ascii_uppercase());
                    out.push_str(&format!("(?-i:[{lower}{upper}])"));
                } else {
                    out.push_str(&format!("(?-i:{})", regex::escape(&c.to_string())));
                }
                i += 1;
            }
            '.' if class_depth == 0 => {
                if flags.dotall {
                    out.push_str("(?s:.)");
                } else if flags.unix_lines {
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
    Ok(out)
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
    fn a_pattern_too_large_to_match_in_bounded_time_is_refused_when_compiled() {
        // Matched without the lazy DFA, this one took minutes on a value of 1 MB.
        let refused = JavaRegex::compile("[ab]*a[ab]{12000}c", "").unwrap_err();
        assert!(refused.contains("exceeds size limit"), "{refused}");
        let accepted = JavaRegex::compile("[ab]*a[ab]{6000}c", "").unwrap();
        let value = "ab".repeat(20_000) + "c";
        assert!(!accepted.matches(&value));
        assert!(accepted.matches(&("a".to_owned() + &"b".repeat(6000) + "c")));
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

    /// Cases where Jayway 2.10 (on `java.util.regex`) and an earlier translation disagreed.
    #[test]
    fn constructs_read_as_java_reads_them() {
        let yes = |pattern: &str, flags: &str, input: &str| {
            let r = JavaRegex::compile(pattern, flags)
                .unwrap_or_else(|err| panic!("/{pattern}/{flags}: {err}"));
            assert!(
                r.matches(input),
                "/{pattern}/{flags} should match {input:?}"
            );
        };
        let no = |pattern: &str, flags: &str, input: &str| {
            let r = JavaRegex::compile(pattern, flags)
                .unwrap_or_else(|err| panic!("/{pattern}/{flags}: {err}"));
            assert!(
                !r.matches(input),
                "/{pattern}/{flags} should not match {input:?}"
            );
        };
        // Inline flags, for the rest of their group or for their own.
        yes("(?s).*", "", "a\nb");
        no("(?s:a).", "", "a\n");
        yes("(?U)\\w", "", "ä");
        no("(?U:x)\\w", "", "xä");
        yes("(?i)abc", "", "ABC");
        yes("(?d).", "", "\r");
        // Comments under `x` end at the line's end, not at the end of the pattern.
        yes("a # c", "x", "a");
        yes("(?x)a b # c", "", "ab");
        yes("(?x)a#c\nb", "", "ab");
        no("a # c", "", "a");
        // `[[:alpha:]]` is a set holding `:`, `a`, `l`, `p`, `h` in Java.
        no("[[:alpha:]]+", "", "x");
        yes("[[:alpha:]]+", "", "ahl:");
        no("[:digit:]", "", "1");
        // The POSIX classes are ASCII unless `U` is given.
        no("\\p{Alpha}", "", "ä");
        yes("\\p{Alpha}", "U", "ä");
        yes("[\\p{Lower}_]+", "", "a_b");
        yes("\\P{Digit}", "", "x");
        yes("\\p{javaLowerCase}", "", "é");
        yes("\\p{IsLatin}+", "", "abc");
        // Vertical and horizontal whitespace, line breaks, and character escapes.
        yes("\\v", "", "\n");
        no("\\V", "", "\n");
        yes("a\\hb", "", "a\u{a0}b");
        yes("a\\Rb", "", "a\r\nb");
        yes("\\e\\cA", "", "\u{1b}\u{1}");
        yes("\\0141", "", "a");
        yes("\\0777", "", "?7");
        // `\Z` before a final line break: the whole input must still match.
        no("a\\Z", "", "a\n");
        yes("a\\Z", "", "a");
        // With `m`, a carriage return ends a line too.
        yes("(?m)a$\\r^b", "", "a\rb");
        yes("a$\\r^b", "m", "a\rb");
        // Quoted text is literal, spaces and `#` too, also under `x`.
        yes("(?x)\\Qa #b\\E", "", "a #b");
        yes("(?x)[\\Q \\E]", "", " ");
        // A comment ends at any line terminator; only ASCII whitespace is skipped.
        yes("(?x)a#c\rb", "", "ab");
        yes("(?x)a\u{a0}b", "", "a\u{a0}b");
        no("(?x)a\u{a0}b", "", "ab");
        // Flags said twice or taken back; `\\u` escapes, a surrogate pair among them.
        yes("(?ii)a", "", "A");
        no("(?i-i)a", "", "A");
        yes("(?x-x)a b", "", "a b");
        yes("\\uD83D\\uDE00", "", "\u{1f600}");
        yes("[\\uD83D\\uDE00]", "", "\u{1f600}");
        yes("\\u0041", "", "A");
        yes("\\c\u{c0}", "", "\u{80}");
        // A comment's line end goes with it; empty and canonical-equivalence flag groups.
        yes("(?x)a#c\u{2028}b", "", "ab");
        yes("(?x)a#c\u{85}b", "", "ab");
        yes("(?)abc", "", "abc");
        yes("(?c)abc", "", "abc");
        yes("(?c:ab)c", "", "abc");
        // Without `u`, ignoring case covers ASCII letters only, as in Java.
        yes("Müller", "i", "MüLLER");
        no("Müller", "i", "MÜLLER");
        yes("Müller", "iu", "MÜLLER");
        yes("(?iu)é", "", "É");
        no("(?i)é", "", "É");
        no("k", "i", "\u{212a}");
        yes("k", "i", "K");
        yes("(?i)s.k", "", "S-K");
        no("s", "i", "\u{17f}");
        // `U` brings Unicode case with it, as in Java.
        yes("é", "iU", "É");
        yes("(?iU)é", "", "É");
        // A character written as an escape folds as one written as itself.
        no("\\x{e9}", "i", "É");
        no("\\xe9", "i", "É");
        no("\\u00e9", "i", "É");
        yes("\\u00e9", "iu", "É");
        no("\\u212a", "i", "k");
        yes("\\x41\\x{42}", "", "AB");
        yes("\\x41", "i", "a");
        yes("[\\x41-\\x43]+", "", "ABC");
        // A backslash before a character that is not ASCII is that character.
        yes("\\é+", "", "éé");
        no("\\é", "i", "É");
        // Half a surrogate pair compiles, and matches nothing text can hold.
        no("\\uD83Dx", "", "x");
        no("a|\\uDE00\\uD83D", "", "x");
        yes("a|\\uDE00\\uD83D", "", "a");
    }
}
