//! JsonPath in the **Jayway 2.10 dialect**: the dialect SailPoint Identity Security Cloud uses to
//! evaluate event-trigger subscription filters.
//!
//! The crate gives Jayway's answers, quirks included, for every expression and document: it is a
//! re-implementation of Jayway's compiler and evaluator behaviour, not an RFC 9535 engine.
//! It does no I/O.
//!
//! ```
//! use serde_json::json;
//!
//! let filter = provtrail_jsonpath::compile(r#"$[?($.identity.name == "john.doe")]"#).unwrap();
//! let event = json!({"identity": {"name": "john.doe"}});
//! assert!(filter.matches(&event));
//! assert_eq!(filter.evaluate(&event).unwrap().to_value(), json!([event]));
//! ```
//!
//! # Key semantics
//!
//! * **A filter on an object tests the object itself.** `$[?(…)]` applied to an object returns
//!   `[object]` when the predicate holds and `[]` otherwise; on an array it tests each element.
//!   (RFC 9535 engines test an object's members instead.) This is how ISC filters are written:
//!   `$[?($.identity.name == "john.doe")]`.
//! * **Definite and indefinite paths.** A path without wildcard, deep scan, filter, slice or
//!   several indexes/names is *definite*: it answers one value ([`Evaluation::Value`]) and fails
//!   with [`EvalErrorKind::PathNotFound`] when the value is missing. Any other path answers a list
//!   ([`Evaluation::List`]), possibly empty, and missing properties are simply skipped.
//! * **Match decision** ([`Path::matches`]): an event matches when evaluation answers a non-empty
//!   list. A definite answer matches unless it is `null` or an empty array; an evaluation error
//!   is no match.
//! * **Operators** `== != < <= > >= =~ in nin subsetof anyof noneof size empty contains`, with
//!   Jayway's type rules: numbers compare by decimal value (`1 == 1.0`); a string equals a number
//!   when it is the number's decimal text (`'1' == 1`, but `'1.0' != 1` while `1 == '1.0'`);
//!   `<`… compare two numbers or two strings and are false otherwise; a missing operand is
//!   *undefined* and equals nothing; `@.x` alone tests existence; JSON literals (`[1,'a']`) are
//!   lists; list operators throw (the filter then fails the whole evaluation) when a list holds
//!   objects or arrays; `=~` matches the whole value with Java regex semantics (see below) and
//!   treats a missing value as the empty string.
//! * **Functions** at the end of a path: `length() size() min() max() avg() stddev() sum()
//!   concat() keys() first() last() index(n) append(…)`. Numeric functions answer doubles
//!   (`max()` of negative numbers is Java's `Double.MIN_VALUE`, as in Jayway); `length()` of a
//!   string is `null`; `$..a.sum()` means `$.sum($..a)`.
//! * **Regular expressions** are Java patterns with flags `d i m s u x U`, translated to the
//!   `regex` crate: `\d \w \s \b` are ASCII unless `U` is given and `.` excludes Java's line
//!   terminators, as in Java. Backreferences, lookaround, possessive quantifiers and atomic groups
//!   are not supported (such a filter does not compile), and case-insensitive matching folds
//!   Unicode case even without `u`.
//! * **Options** ([`Options`]) are Jayway's `Option` flags; ISC uses none of them.
//!
//! Compile once and evaluate many times: [`Path`] holds parsed literals and compiled patterns,
//! is `Send + Sync`, and evaluating a simple predicate does not allocate.
//!
//! Differences from Jayway that remain are listed in the crate README and in
//! `tests/conformance/known-differences.txt`.

mod ast;
mod chars;
mod error;
mod eval;
mod explain;
mod jsonlit;
mod number;
mod options;
mod parser;
mod predicate;
mod regex;

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

use serde_json::Value;

pub use error::{EvalError, EvalErrorKind, ParseError};
pub use options::Options;

use ast::{CompiledPath, FunctionKind};
use eval::{Cx, Fail, Item};

/// A compiled expression. Compile with [`compile`] (or `str::parse`), then evaluate it on as many
/// documents as needed.
#[derive(Debug, Clone)]
pub struct Path {
    source: String,
    compiled: CompiledPath,
}

/// Compiles a Jayway JsonPath expression.
///
/// Fails where Jayway's `JsonPath.compile` throws `InvalidPathException`, with the character
/// position and what was expected there. Expressions nested more than a few dozen levels deep are
/// rejected too, so that evaluation stays within a bounded stack.
pub fn compile(expr: &str) -> Result<Path, ParseError> {
    let compiled = parser::compile(expr)?;
    Ok(Path {
        source: expr.to_string(),
        compiled,
    })
}

impl FromStr for Path {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        compile(s)
    }
}

/// Jayway's answer to an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation<'a> {
    /// The value of a definite path (also `null` for a missing definite path under
    /// `SUPPRESS_EXCEPTIONS`).
    Value(Cow<'a, Value>),
    /// The results of an indefinite path, in document order.
    List(Vec<Cow<'a, Value>>),
    /// With `AS_PATH_LIST`: the location of each result, as `$['a'][0]`.
    Paths(Vec<String>),
}

impl Evaluation<'_> {
    /// The answer as one JSON value (a list becomes an array).
    pub fn to_value(&self) -> Value {
        match self {
            Evaluation::Value(v) => v.as_ref().clone(),
            Evaluation::List(v) => Value::Array(v.iter().map(|c| c.as_ref().clone()).collect()),
            Evaluation::Paths(p) => Value::Array(p.iter().cloned().map(Value::String).collect()),
        }
    }

    /// The answer as one JSON value, consuming the evaluation.
    pub fn into_value(self) -> Value {
        match self {
            Evaluation::Value(v) => v.into_owned(),
            Evaluation::List(v) => Value::Array(v.into_iter().map(Cow::into_owned).collect()),
            Evaluation::Paths(p) => Value::Array(p.into_iter().map(Value::String).collect()),
        }
    }

    /// ISC's decision for this answer: a non-empty list matches; a single value matches unless
    /// it is `null` or an empty array.
    pub fn is_match(&self) -> bool {
        match self {
            Evaluation::List(v) => !v.is_empty(),
            Evaluation::Paths(p) => !p.is_empty(),
            Evaluation::Value(v) => match v.as_ref() {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                _ => true,
            },
        }
    }
}

fn cow(item: Item<'_>) -> Cow<'_, Value> {
    match item {
        Item::Ref(v) => Cow::Borrowed(v),
        Item::Owned(rc) => Cow::Owned(Rc::try_unwrap(rc).unwrap_or_else(|rc| (*rc).clone())),
        Item::Keys(k) => Cow::Owned(Value::Array(k.iter().cloned().map(Value::String).collect())),
    }
}

fn to_error(f: Fail) -> EvalError {
    match f {
        Fail::PathNotFound(m) => EvalError::new(EvalErrorKind::PathNotFound, m),
        Fail::InvalidPath(m) => EvalError::new(EvalErrorKind::InvalidPath, m),
        Fail::JsonPath(m) => EvalError::new(EvalErrorKind::JsonPath, m),
        Fail::IndexOutOfBounds(m) => EvalError::new(
            EvalErrorKind::InvalidArgument,
            format!("IndexOutOfBoundsException: {m}"),
        ),
        Fail::Runtime(m) => EvalError::new(EvalErrorKind::InvalidArgument, m),
    }
}

impl Path {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the path is definite (answers a single value rather than a list).
    pub fn is_definite(&self) -> bool {
        self.compiled.definite
    }

    /// A readable description of the compiled expression (tokens and filter tree).
    pub fn explain(&self) -> String {
        explain::explain(&self.compiled)
    }

    /// Evaluates with Jayway's default configuration (what ISC uses).
    pub fn evaluate<'a>(&self, doc: &'a Value) -> Result<Evaluation<'a>, EvalError> {
        self.evaluate_with(doc, Options::default())
    }

    /// Evaluates with the given Jayway options (`JsonPath.read(document, configuration)`).
    pub fn evaluate_with<'a>(
        &self,
        doc: &'a Value,
        options: Options,
    ) -> Result<Evaluation<'a>, EvalError> {
        match self.read(doc, options, options.as_path_list) {
            Ok(e) => Ok(e),
            // Deep scans only track locations when asked to; evaluate again to word the error.
            Err(f) if !options.as_path_list && !eval::is_limit(&f) => {
                match self.read(doc, options, true) {
                    Err(f) => Err(to_error(f)),
                    Ok(_) => Err(EvalError::new(EvalErrorKind::JsonPath, "evaluation failed")),
                }
            }
            Err(f) => Err(to_error(f)),
        }
    }

    /// The members of the document's root that an evaluation can read: `Some(names)` (sorted,
    /// without repeats) when the path, and every root path inside its filters and function
    /// parameters, begins with member names (`$.a…`, `$['a','b']…`); `None` when it may read any
    /// member (`$..a`, `$.*`, `$[?(…)]`, `$.length()`, `$`).
    ///
    /// Evaluated on an object that holds only those members (those of them the document has),
    /// the path answers exactly as on the whole document: a caller that builds the document for
    /// the filter can leave the other members out.
    pub fn root_members(&self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        if !self.compiled.root_members(&mut names) {
            return None;
        }
        names.sort_unstable();
        names.dedup();
        Some(names)
    }

    /// The names of the functions the expression calls that Jayway does not have (`.lenght()`,
    /// `.count()`), sorted, without repeats. Such an expression compiles, as it does in Jayway,
    /// but every evaluation that reaches the call fails ("Function with name: … does not
    /// exist."), and a filter whose every path to a match goes through it never matches: a
    /// caller that stores a filter for later can refuse it up front.
    pub fn unknown_functions(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.compiled.visit_functions(&mut |function| {
            if function.kind == FunctionKind::Unknown {
                names.push(function.name.clone());
            }
        });
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The function names Jayway knows, as the expression calls them.
    pub const FUNCTIONS: &'static [&'static str] = &[
        "append", "avg", "concat", "first", "index", "keys", "last", "length", "max", "min",
        "size", "stddev", "sum",
    ];

    /// ISC's decision: does the event match this subscription filter? True when the evaluation
    /// answers a non-empty list (or a definite value that is neither `null` nor an empty array);
    /// an evaluation error is no match.
    pub fn matches(&self, doc: &Value) -> bool {
        let p = &self.compiled;
        let mut cx = Cx::new(p, doc, Options::default(), false);
        if cx.run(Item::Ref(doc)).is_err() {
            return false;
        }
        if p.definite {
            match cx.results.last().and_then(Item::value) {
                None => matches!(cx.results.last(), Some(Item::Keys(k)) if !k.is_empty()),
                Some(Value::Null) => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            }
        } else {
            !cx.results.is_empty()
        }
    }

    /// [`Path::matches`] that gives up once `deadline` has passed: `None` when it passed before
    /// the evaluation ended, and the answer is then unknown. The time is checked before each
    /// regular expression is matched (a large pattern over a long string can take a good part
    /// of a second) and every few hundred steps of the evaluation (a filter comparing deep
    /// scans, `$..*[?(@ == $..*)]`, takes time quadratic in the document's nodes), so the
    /// evaluation stops within about a millisecond of the deadline.
    pub fn matches_within(&self, doc: &Value, deadline: std::time::Instant) -> Option<bool> {
        regex::within(deadline, || self.matches(doc))
    }

    /// [`Path::matches_within`] that also gives up, as at the deadline, once `stop` is set from
    /// another thread (the answer is no longer wanted: the client of a search has left).
    pub fn matches_within_unless(
        &self,
        doc: &Value,
        deadline: std::time::Instant,
        stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Option<bool> {
        regex::within_unless(deadline, Some(stop.clone()), || self.matches(doc))
    }

    /// `JsonPath.read(document, configuration)`.
    fn read<'a>(&self, doc: &'a Value, o: Options, track: bool) -> Result<Evaluation<'a>, Fail> {
        let p = &self.compiled;
        let empty = |definite: bool| {
            if definite {
                Evaluation::Value(Cow::Owned(Value::Null))
            } else {
                Evaluation::List(Vec::new())
            }
        };
        let mut cx = Cx::new(p, doc, o, track);
        if p.is_function_path() {
            if o.as_path_list || o.always_return_list {
                if o.suppress_exceptions {
                    return Ok(empty(p.definite));
                }
                return Err(Fail::JsonPath(
                    "Options AS_PATH_LIST and ALWAYS_RETURN_LIST are not allowed when using path functions!".into(),
                ));
            }
            cx.run(Item::Ref(doc))?;
            if o.suppress_exceptions && cx.results.is_empty() {
                return Ok(empty(p.definite));
            }
            return Ok(got_to_eval(cx.value()?));
        }
        if o.as_path_list {
            cx.run(Item::Ref(doc))?;
            if cx.results.is_empty() {
                if o.suppress_exceptions {
                    return Ok(Evaluation::List(Vec::new()));
                }
                return Err(Fail::PathNotFound(format!(
                    "No results for path: {}",
                    p.render_from(None)
                )));
            }
            return Ok(Evaluation::Paths(cx.paths));
        }
        cx.run(Item::Ref(doc))?;
        if o.suppress_exceptions && cx.results.is_empty() {
            return Ok(if o.always_return_list {
                Evaluation::List(Vec::new())
            } else {
                empty(p.definite)
            });
        }
        let got = cx.value()?;
        Ok(match got {
            eval::Got::One(v) if o.always_return_list => Evaluation::List(vec![cow(v)]),
            g => got_to_eval(g),
        })
    }
}

fn got_to_eval(g: eval::Got<'_>) -> Evaluation<'_> {
    match g {
        eval::Got::One(v) => Evaluation::Value(cow(v)),
        eval::Got::List(v) => Evaluation::List(v.into_iter().map(cow).collect()),
    }
}

impl fmt::Display for Path {
    /// Jayway's rendering of the compiled path (`$['a'][?]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.compiled.render_from(None))
    }
}
