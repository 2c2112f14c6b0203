//! Error types: [`ParseError`] for expressions that do not compile and [`EvalError`] for
//! evaluations that fail the way Jayway's `read` throws.

use std::fmt;

/// An expression that does not compile (Jayway's `InvalidPathException` at compile time).
///
/// `position` counts characters (Unicode scalar values) from the start of the expression as the
/// caller wrote it, so a caret can be drawn under the offending character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at position {position}; expected {expected})")]
pub struct ParseError {
    /// Character offset in the expression where parsing failed.
    pub position: usize,
    /// What the parser expected at `position`, in words.
    pub expected: String,
    /// Jayway-style description of the failure.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(
        position: usize,
        expected: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ParseError {
            position,
            expected: expected.into(),
            message: message.into(),
        }
    }
}

/// Which Jayway exception an evaluation failure corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalErrorKind {
    /// `PathNotFoundException`: a definite path (or a required property) is missing.
    PathNotFound,
    /// `InvalidPathException` thrown while evaluating, e.g. a filter applied to a primitive on a
    /// definite path, or an unknown function name.
    InvalidPath,
    /// `JsonPathException`: a function or conversion failed (aggregation of an empty array,
    /// nested values in a list operand, unsupported option combinations…).
    JsonPath,
    /// A Java runtime exception escaped Jayway (`IndexOutOfBoundsException` from `first()` on an
    /// empty array, `IllegalArgumentException` from an unparsable JSON literal…).
    InvalidArgument,
}

impl EvalErrorKind {
    /// The short name used in reports, mirroring Jayway's exception names.
    pub fn name(self) -> &'static str {
        match self {
            EvalErrorKind::PathNotFound => "PathNotFound",
            EvalErrorKind::InvalidPath => "InvalidPath",
            EvalErrorKind::JsonPath => "JsonPathException",
            EvalErrorKind::InvalidArgument => "InvalidArgument",
        }
    }
}

impl fmt::Display for EvalErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An evaluation that failed where Jayway's `read` throws.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EvalError {
    /// The Jayway exception this failure mirrors.
    pub kind: EvalErrorKind,
    /// Jayway-style message.
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(kind: EvalErrorKind, message: impl Into<String>) -> Self {
        EvalError {
            kind,
            message: message.into(),
        }
    }
}
