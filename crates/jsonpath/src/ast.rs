//! The compiled form of an expression. It mirrors Jayway's token chain (root, then one token per
//! step) and filter trees, with every literal parsed and every regex compiled at compile time so
//! that evaluation never re-parses.

use serde_json::Value;

use crate::number::Dec;
use crate::regex::JavaRegex;

/// A path: `$` or `@` followed by tokens. Jayway's `CompiledPath` and its `RootPathToken`.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPath {
    /// `$` or `@`.
    pub root: char,
    pub tokens: Vec<Token>,
    /// Jayway's `isRootPath`: the path was written from `$`. Filter operands that are root paths
    /// are evaluated against the document, the others against the current item.
    pub is_root_path: bool,
    /// Every token definite: the answer is one value, not a list.
    pub definite: bool,
    /// `upstream_definite[i]`: every token before `i` is definite. Decides whether a missing
    /// property or a type mismatch at `i` throws or is skipped.
    pub upstream_definite: Vec<bool>,
    /// The fragment of the token before the last one (Jayway compares it with the scan index of
    /// `$..[n].leaf` paths).
    pub tail_prev_fragment: String,
}

impl CompiledPath {
    pub(crate) fn new(root: char, tokens: Vec<Token>, is_root_path: bool) -> Self {
        let n = tokens.len();
        let token_definite: Vec<bool> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| t.is_definite(i + 1 == n))
            .collect();
        let definite = token_definite.iter().all(|d| *d);
        let mut upstream_definite = Vec::with_capacity(n);
        let mut all = true; // the root token is definite
        for d in &token_definite {
            upstream_definite.push(all);
            all = all && *d;
        }
        let tail_prev_fragment = if n >= 2 {
            tokens[n - 2].fragment()
        } else {
            root.to_string()
        };
        CompiledPath {
            root,
            tokens,
            is_root_path,
            definite,
            upstream_definite,
            tail_prev_fragment,
        }
    }

    /// Adds to `names` the members of the document's root that this path reads when evaluated
    /// against the root; false when it may read any (it does not begin with member names).
    pub(crate) fn root_members(&self, names: &mut Vec<String>) -> bool {
        let Some(Token::Property(first, _)) = self.tokens.first() else {
            return false;
        };
        names.extend(first.iter().cloned());
        self.tokens.iter().all(|token| token.root_members(names))
    }

    /// Calls `visit` with every function this path calls, also inside its filters and in the
    /// parameters of its functions.
    pub(crate) fn visit_functions(&self, visit: &mut dyn FnMut(&Function)) {
        for token in &self.tokens {
            token.visit_functions(visit);
        }
    }

    pub(crate) fn is_function_path(&self) -> bool {
        matches!(self.tokens.last(), Some(Token::Function(_)))
    }

    /// Jayway's `toString()` of the chain from token `from` on (the root when `from` is `None`).
    pub(crate) fn render_from(&self, from: Option<usize>) -> String {
        let mut s = String::new();
        let start = match from {
            None => {
                s.push(self.root);
                0
            }
            Some(i) => i,
        };
        for t in self.tokens.iter().skip(start) {
            s.push_str(&t.fragment());
        }
        s
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Token {
    /// `.name`, `['name']`, `['a','b']`; the char is the quote used (for rendering only).
    Property(Vec<String>, char),
    /// `[1]`, `[1,2]`.
    Index(Vec<i32>),
    /// `[a:b]` (a step, when written, is ignored as by Jayway).
    Slice(Slice),
    /// `*`, `[*]`.
    Wildcard,
    /// `..`.
    Scan,
    /// `[?(…)]`.
    Filter(Box<Expr>),
    /// `.name(…)`.
    Function(Box<Function>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Slice {
    From(i32),
    To(i32),
    Between(i32, i32),
}

impl Token {
    /// Adds the root members read by the root paths inside this token (a filter's `$…`
    /// operands, a function's path parameters); false when one may read any.
    fn root_members(&self, names: &mut Vec<String>) -> bool {
        match self {
            Token::Filter(expr) => expr.root_members(names),
            // Path parameters are evaluated against the root, whatever they start with.
            Token::Function(function) => {
                function.params.iter().all(|param| match param {
                    Param::Path(path) => path.root_members(names),
                    Param::Json(..) => true,
                }) && function
                    .length_param
                    .as_ref()
                    .is_none_or(|path| path.root_members(names))
            }
            Token::Property(..)
            | Token::Index(_)
            | Token::Slice(_)
            | Token::Wildcard
            | Token::Scan => true,
        }
    }

    fn visit_functions(&self, visit: &mut dyn FnMut(&Function)) {
        match self {
            Token::Filter(expr) => expr.visit_functions(visit),
            Token::Function(function) => {
                visit(function);
                for param in &function.params {
                    if let Param::Path(path) = param {
                        path.visit_functions(visit);
                    }
                }
            }
            Token::Property(..)
            | Token::Index(_)
            | Token::Slice(_)
            | Token::Wildcard
            | Token::Scan => {}
        }
    }

    pub(crate) fn is_definite(&self, is_leaf: bool) -> bool {
        match self {
            Token::Property(names, _) => names.len() == 1 || is_leaf,
            Token::Index(ix) => ix.len() == 1,
            Token::Function(_) => true,
            Token::Slice(_) | Token::Wildcard | Token::Scan | Token::Filter(_) => false,
        }
    }

    /// Jayway's `getPathFragment()`.
    pub(crate) fn fragment(&self) -> String {
        match self {
            Token::Property(names, q) => {
                let inner: Vec<String> = names.iter().map(|n| format!("{q}{n}{q}")).collect();
                format!("[{}]", inner.join(","))
            }
            Token::Index(ix) => {
                let inner: Vec<String> = ix.iter().map(|i| i.to_string()).collect();
                format!("[{}]", inner.join(","))
            }
            Token::Slice(s) => match s {
                Slice::From(f) => format!("[{f}:]"),
                Slice::To(t) => format!("[:{t}]"),
                Slice::Between(f, t) => format!("[{f}:{t}]"),
            },
            Token::Wildcard => "[*]".to_string(),
            Token::Scan => "..".to_string(),
            Token::Filter(_) => "[?]".to_string(),
            Token::Function(f) => {
                if f.params.is_empty() {
                    format!(".{}()", f.name)
                } else {
                    format!(".{}(...)", f.name)
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FunctionKind {
    Avg,
    Stddev,
    Sum,
    Min,
    Max,
    Concat,
    Length,
    Append,
    Keys,
    First,
    Last,
    Index,
    /// Not a Jayway function: compiles, but evaluation throws `InvalidPathException`.
    Unknown,
}

impl FunctionKind {
    pub(crate) fn from_name(name: &str) -> Self {
        match name {
            "avg" => FunctionKind::Avg,
            "stddev" => FunctionKind::Stddev,
            "sum" => FunctionKind::Sum,
            "min" => FunctionKind::Min,
            "max" => FunctionKind::Max,
            "concat" => FunctionKind::Concat,
            "length" | "size" => FunctionKind::Length,
            "append" => FunctionKind::Append,
            "keys" => FunctionKind::Keys,
            "first" => FunctionKind::First,
            "last" => FunctionKind::Last,
            "index" => FunctionKind::Index,
            _ => FunctionKind::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Function {
    pub name: String,
    pub kind: FunctionKind,
    pub params: Vec<Param>,
    /// For `length(path)`: the parameter path with a trailing `[*]` appended, keeping the
    /// definiteness of the original (Jayway mutates the parameter this way before evaluating it).
    pub length_param: Option<Box<CompiledPath>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Param {
    /// A JSON parameter: the raw text and its permissive parse (`Err` keeps the parse message).
    Json(String, Result<Value, String>),
    /// A path parameter, evaluated against the document root.
    Path(Box<CompiledPath>),
}

/// A filter expression (Jayway's `ExpressionNode`).
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Rel(Box<Relation>),
}

impl Expr {
    fn visit_functions(&self, visit: &mut dyn FnMut(&Function)) {
        match self {
            Expr::Or(all) | Expr::And(all) => {
                for expr in all {
                    expr.visit_functions(visit);
                }
            }
            Expr::Not(expr) => expr.visit_functions(visit),
            Expr::Rel(relation) => {
                for operand in [&relation.left, &relation.right] {
                    if let Operand::Path(operand) = operand {
                        operand.path.visit_functions(visit);
                    }
                }
            }
        }
    }

    fn root_members(&self, names: &mut Vec<String>) -> bool {
        match self {
            Expr::Or(all) | Expr::And(all) => all.iter().all(|expr| expr.root_members(names)),
            Expr::Not(expr) => expr.root_members(names),
            Expr::Rel(relation) => {
                relation.left.root_members(names) && relation.right.root_members(names)
            }
        }
    }
}

impl Operand {
    fn root_members(&self, names: &mut Vec<String>) -> bool {
        match self {
            // `$…` reads the root; `@…` reads the current item, but may hold filters that read
            // the root.
            Operand::Path(operand) if operand.path.is_root_path => operand.path.root_members(names),
            Operand::Path(operand) => operand
                .path
                .tokens
                .iter()
                .all(|token| token.root_members(names)),
            Operand::Str(_)
            | Operand::Num(_)
            | Operand::Bool(_)
            | Operand::Null
            | Operand::Json(_)
            | Operand::Pattern(_) => true,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Relation {
    pub left: Operand,
    pub op: RelOp,
    pub right: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelOp {
    Gte,
    Lte,
    Eq,
    TsEq,
    Ne,
    TsNe,
    Lt,
    Gt,
    Regex,
    Nin,
    In,
    Contains,
    All,
    Size,
    Exists,
    Type,
    Matches,
    Empty,
    SubsetOf,
    AnyOf,
    NoneOf,
}

impl RelOp {
    pub(crate) fn from_str_ci(s: &str) -> Option<RelOp> {
        Some(match s.to_ascii_uppercase().as_str() {
            ">=" => RelOp::Gte,
            "<=" => RelOp::Lte,
            "==" => RelOp::Eq,
            "===" => RelOp::TsEq,
            "!=" => RelOp::Ne,
            "!==" => RelOp::TsNe,
            "<" => RelOp::Lt,
            ">" => RelOp::Gt,
            "=~" => RelOp::Regex,
            "NIN" => RelOp::Nin,
            "IN" => RelOp::In,
            "CONTAINS" => RelOp::Contains,
            "ALL" => RelOp::All,
            "SIZE" => RelOp::Size,
            "EXISTS" => RelOp::Exists,
            "TYPE" => RelOp::Type,
            "MATCHES" => RelOp::Matches,
            "EMPTY" => RelOp::Empty,
            "SUBSETOF" => RelOp::SubsetOf,
            "ANYOF" => RelOp::AnyOf,
            "NONEOF" => RelOp::NoneOf,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RelOp::Gte => ">=",
            RelOp::Lte => "<=",
            RelOp::Eq => "==",
            RelOp::TsEq => "===",
            RelOp::Ne => "!=",
            RelOp::TsNe => "!==",
            RelOp::Lt => "<",
            RelOp::Gt => ">",
            RelOp::Regex => "=~",
            RelOp::Nin => "NIN",
            RelOp::In => "IN",
            RelOp::Contains => "CONTAINS",
            RelOp::All => "ALL",
            RelOp::Size => "SIZE",
            RelOp::Exists => "EXISTS",
            RelOp::Type => "TYPE",
            RelOp::Matches => "MATCHES",
            RelOp::Empty => "EMPTY",
            RelOp::SubsetOf => "SUBSETOF",
            RelOp::AnyOf => "ANYOF",
            RelOp::NoneOf => "NONEOF",
        }
    }
}

/// A compiled operand (Jayway's `ValueNode` as the filter compiler builds it).
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Path(Box<PathOperand>),
    Str(String),
    Num(Dec),
    Bool(bool),
    Null,
    Json(Box<JsonLiteral>),
    Pattern(Box<JavaRegex>),
}

#[derive(Debug, Clone)]
pub(crate) struct PathOperand {
    pub path: CompiledPath,
    /// An existence test (`[?(@.a)]`, `[?(!@.a)]`) rather than a value.
    pub exists_check: bool,
    /// For existence tests: `false` when negated with `!`.
    pub should_exist: bool,
}

/// A JSON literal in a filter (`[1,2]`, `{"a":1}`): Jayway keeps the text and parses it with
/// json-smart's permissive parser whenever it is used; the parse is done once here.
#[derive(Debug, Clone)]
pub(crate) struct JsonLiteral {
    pub text: String,
    pub parsed: Result<Value, String>,
}
