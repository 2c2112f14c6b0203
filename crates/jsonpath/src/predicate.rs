//! Filter evaluation: Jayway's `ValueNode`s, their `equals`, and the relational operators of
//! `EvaluatorFactory`, with the same type rules (a string equals a number when the number's
//! decimal text is the string; JSON literals compare as Java collections; lists are built from
//! values only, so a list holding objects or arrays makes `in`/`contains`/… throw).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::ast::{Expr, JsonLiteral, Operand, PathOperand, RelOp};
use crate::eval::{Fail, Got, Item, evaluate, java_to_string, non_finite_text, not_a_decimal};
use crate::jsonlit::parse_permissive;
use crate::number::Dec;
use crate::options::Options;
use crate::regex::JavaRegex;

/// A value node after evaluation.
#[derive(Debug)]
enum Node<'x> {
    Str(Cow<'x, str>),
    Num(Dec),
    Bool(bool),
    Null,
    Undefined,
    Pattern(&'x JavaRegex),
    /// A JSON literal from the expression (a `JsonNode` holding unparsed text).
    Lit(&'x JsonLiteral),
    /// A list element string that parses as JSON (a `JsonNode` holding text).
    JsonText(&'x str),
    /// An array or object from the document (a `JsonNode` holding a parsed value).
    Doc(Item<'x>),
    /// The result list of an indefinite path.
    DocList(Vec<Item<'x>>),
    /// A list element string that compiles as a path: Jayway turns it into a path node, which
    /// equals nothing.
    PathText,
}

impl Node<'_> {
    fn is_json(&self) -> bool {
        matches!(
            self,
            Node::Lit(_) | Node::JsonText(_) | Node::Doc(_) | Node::DocList(_)
        )
    }

    /// The class Jayway's type-safe operators compare.
    fn class(&self) -> u8 {
        match self {
            Node::Str(_) => 0,
            Node::Num(_) => 1,
            Node::Bool(_) => 2,
            Node::Null => 3,
            Node::Undefined => 4,
            Node::Pattern(_) => 5,
            Node::Lit(_) | Node::JsonText(_) | Node::Doc(_) | Node::DocList(_) => 6,
            Node::PathText => 7,
        }
    }
}

/// `PredicatePathToken.accept`: the filter holds for `item`; an `InvalidPathException` inside
/// the filter makes it false, other failures propagate.
pub(crate) fn accept(
    expr: &Expr,
    item: &Item<'_>,
    root: &Value,
    opts: Options,
) -> Result<bool, Fail> {
    match apply(expr, item, root, opts) {
        Ok(b) => Ok(b),
        Err(Fail::InvalidPath(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn apply(expr: &Expr, item: &Item<'_>, root: &Value, opts: Options) -> Result<bool, Fail> {
    match expr {
        Expr::Or(v) => {
            for e in v {
                if apply(e, item, root, opts)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(v) => {
            for e in v {
                if !apply(e, item, root, opts)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(e) => Ok(!apply(e, item, root, opts)?),
        Expr::Rel(r) => {
            let l = operand(&r.left, item, root, opts)?;
            let rv = operand(&r.right, item, root, opts)?;
            relate(r.op, &l, &rv)
        }
    }
}

fn operand<'x>(
    o: &'x Operand,
    item: &Item<'x>,
    root: &'x Value,
    opts: Options,
) -> Result<Node<'x>, Fail> {
    Ok(match o {
        Operand::Path(p) => path_node(p, item, root, opts)?,
        Operand::Str(s) => Node::Str(Cow::Borrowed(s)),
        Operand::Num(d) => Node::Num(d.clone()),
        Operand::Bool(b) => Node::Bool(*b),
        Operand::Null => Node::Null,
        Operand::Json(j) => Node::Lit(j),
        Operand::Pattern(p) => Node::Pattern(p),
    })
}

/// `PathNode.evaluate`.
fn path_node<'x>(
    p: &'x PathOperand,
    item: &Item<'x>,
    root: &'x Value,
    opts: Options,
) -> Result<Node<'x>, Fail> {
    if p.exists_check {
        // Existence is tested on the current item (even for `$` paths), with only
        // REQUIRE_PROPERTIES set.
        let o = Options {
            require_properties: true,
            ..Options::default()
        };
        return Ok(match evaluate(&p.path, item.clone(), root, o, false) {
            Ok(_) => Node::Bool(true),
            Err(Fail::PathNotFound(_)) => Node::Bool(false),
            Err(e) => return Err(e),
        });
    }
    let doc = if p.path.is_root_path {
        Item::Ref(root)
    } else {
        item.clone()
    };
    if let Some(fast) = fast_definite(&p.path, &doc, opts) {
        return Ok(match fast {
            Some(v) => value_node(v)?,
            None => Node::Undefined,
        });
    }
    match evaluate(&p.path, doc, root, opts, false) {
        Ok(Got::One(v)) => value_node(v),
        Ok(Got::List(v)) => Ok(Node::DocList(v)),
        Err(Fail::PathNotFound(_)) => Ok(Node::Undefined),
        Err(e) => Err(e),
    }
}

/// A definite path of plain property and index steps, walked without building an evaluation
/// context: `Some(None)` when Jayway would throw `PathNotFoundException`. `None` when the path
/// or options need the general evaluator.
fn fast_definite<'x>(
    path: &crate::ast::CompiledPath,
    doc: &Item<'x>,
    opts: Options,
) -> Option<Option<Item<'x>>> {
    if !path.definite || opts.suppress_exceptions || opts.default_path_leaf_to_null {
        return None;
    }
    let &Item::Ref(mut cur) = doc else {
        return None;
    };
    for t in &path.tokens {
        match t {
            crate::ast::Token::Property(names, _) if names.len() == 1 => {
                match cur.get(names[0].as_str()) {
                    Some(v) if cur.is_object() => cur = v,
                    _ => return Some(None),
                }
            }
            crate::ast::Token::Index(ix) if ix.len() == 1 => {
                let Value::Array(a) = cur else {
                    return Some(None);
                };
                let i = i64::from(ix[0]);
                let eff = if i < 0 { a.len() as i64 + i } else { i };
                match usize::try_from(eff).ok().and_then(|e| a.get(e)) {
                    Some(v) => cur = v,
                    None => return Some(None),
                }
            }
            _ => return None,
        }
    }
    Some(Some(Item::Ref(cur)))
}

fn value_node<'x>(v: Item<'x>) -> Result<Node<'x>, Fail> {
    if let Some(text) = non_finite_text(&v) {
        return Err(not_a_decimal(text));
    }
    if let Item::Keys(_) = v {
        return Err(Fail::JsonPath(format!(
            "Could not convert class java.util.LinkedHashMap$LinkedKeySet:{} to a ValueNode",
            java_to_string(&v)
        )));
    }
    Ok(match v {
        Item::Ref(r) => match r {
            Value::Number(n) => document_number(n)?,
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Bool(b) => Node::Bool(*b),
            Value::Null => Node::Null,
            Value::Array(_) | Value::Object(_) => Node::Doc(Item::Ref(r)),
        },
        Item::Owned(rc) => match &*rc {
            Value::Number(n) => document_number(n)?,
            Value::String(s) => Node::Str(Cow::Owned(s.clone())),
            Value::Bool(b) => Node::Bool(*b),
            Value::Null => Node::Null,
            Value::Array(_) | Value::Object(_) => Node::Doc(Item::Owned(rc)),
        },
        Item::Keys(_) => Node::Undefined,
    })
}

/// `createNumberNode(number.toString())`: json-smart reads a short number past the double range
/// as an infinite `Double`, whose text `new BigDecimal` refuses.
fn document_number<'x>(n: &serde_json::Number) -> Result<Node<'x>, Fail> {
    Dec::from_document_number(n).map(Node::Num).ok_or_else(|| {
        not_a_decimal(if n.to_string().starts_with('-') {
            "-Infinity"
        } else {
            "Infinity"
        })
    })
}

/// `ValueNode.toValueNode` for a list element.
fn element_node<'x>(v: &'x Value) -> Result<Node<'x>, Fail> {
    Ok(match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => document_number(n)?,
        Value::String(s) => {
            if looks_like_path(s) {
                path_text(s)?
            } else if looks_like_json(s) {
                Node::JsonText(s)
            } else {
                Node::Str(escaped_element(s)?)
            }
        }
        Value::Array(_) | Value::Object(_) => {
            return Err(Fail::JsonPath("Could not determine value type".into()));
        }
    })
}

/// A list element's string as `ValueNode.toValueNode` makes it, `new StringNode(s, true)`: a
/// string of more than one (UTF-16) unit loses matching quotes around it and is unescaped as
/// a literal of the filter is (`Utils.unescape`). So `["a\\, b"]` holds `a, b`, a document's
/// `"'vip'"` in a list is `vip`, and `C:\temp` is `C:<tab>emp`; a bad `\u` escape throws.
/// (A single value read by a path is taken as it is.)
fn escaped_element(s: &str) -> Result<Cow<'_, str>, Fail> {
    if s.encode_utf16().nth(1).is_none() {
        return Ok(Cow::Borrowed(s));
    }
    let inner = match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(b'\''), Some(b'\'')) | (Some(b'"'), Some(b'"')) => &s[1..s.len() - 1],
        _ => s,
    };
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    crate::parser::unescape(inner)
        .map(Cow::Owned)
        .map_err(Fail::JsonPath)
}

fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// A list element that reads as a path (see [`looks_like_path`]). Jayway makes it a `PathNode`
/// of the text as it is, untrimmed: a path after leading whitespace (`" $"`) fails to compile
/// there (`PathCompiler` reads `$. $`), and the whole predicate with it.
fn path_text<'x>(s: &str) -> Result<Node<'x>, Fail> {
    if s.starts_with(|c: char| c <= ' ') {
        return Err(Fail::JsonPath(format!(
            "Could not compile the path {s:?} of a list element"
        )));
    }
    Ok(Node::PathText)
}

fn looks_like_path(s: &str) -> bool {
    let t = java_trim(s);
    matches!(t.chars().next(), Some('$' | '@')) && crate::parser::compile(t).is_ok()
}

fn looks_like_json(s: &str) -> bool {
    let t = java_trim(s);
    if t.chars().count() <= 1 {
        return false;
    }
    let ok = (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}'));
    ok && parse_permissive(t).is_ok()
}

/// The elements of a list operand: a JSON literal array, a document array, or an indefinite
/// path's results. `None` when the node is not a list (Jayway's `UndefinedNode`).
enum ListSrc<'x> {
    Values(&'x [Value]),
    Items(&'x [Item<'x>]),
}

impl<'x> ListSrc<'x> {
    /// Converts every element first, as Jayway's `ValueListNode` constructor does, so that a
    /// nested object or array throws even when an earlier element would have matched.
    fn nodes(&self) -> Result<Vec<Node<'x>>, Fail> {
        match self {
            ListSrc::Values(vs) => vs.iter().map(element_node).collect(),
            ListSrc::Items(items) => items
                .iter()
                .map(|it| match it {
                    Item::Ref(v) => element_node(v),
                    Item::Owned(v) => owned_element(v),
                    Item::Keys(_) => Err(Fail::JsonPath("Could not determine value type".into())),
                })
                .collect(),
        }
    }

    /// Checks that every element converts, without building the nodes: no nested array or
    /// object, and no string whose escapes cannot be read.
    fn check(&self) -> Result<(), Fail> {
        let bad = |v: &Value| match v {
            Value::Array(_) | Value::Object(_) => true,
            Value::String(s) => s.contains("\\u") && escaped_element(s).is_err(),
            _ => false,
        };
        let any_bad = match self {
            ListSrc::Values(vs) => vs.iter().any(bad),
            ListSrc::Items(items) => items.iter().any(|it| match it.value() {
                Some(v) => bad(v),
                None => true,
            }),
        };
        if any_bad {
            Err(Fail::JsonPath("Could not determine value type".into()))
        } else {
            Ok(())
        }
    }

    /// Whether `needle.equals(element)` for some element, short-circuiting.
    fn contains(&self, needle: &Node<'_>) -> Result<bool, Fail> {
        self.check()?;
        match self {
            ListSrc::Values(vs) => {
                for v in *vs {
                    out_of_time()?;
                    if java_equals(needle, &element_node(v)?)? {
                        return Ok(true);
                    }
                }
            }
            ListSrc::Items(items) => {
                for it in *items {
                    out_of_time()?;
                    let n = match it {
                        Item::Ref(v) => element_node(v)?,
                        Item::Owned(v) => owned_element(v)?,
                        Item::Keys(_) => {
                            return Err(Fail::JsonPath("Could not determine value type".into()));
                        }
                    };
                    if java_equals(needle, &n)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

/// Past the deadline of `Path::matches_within` (read every so many steps): a list compared
/// element by element, which can take as long as a whole path's evaluation (a list compared
/// with itself), stops as a path's steps do.
fn out_of_time() -> Result<(), Fail> {
    if crate::regex::step_past_deadline() {
        return Err(Fail::Runtime(crate::eval::PAST_DEADLINE.into()));
    }
    Ok(())
}

fn owned_element<'x>(v: &Value) -> Result<Node<'x>, Fail> {
    Ok(match v {
        Value::String(s) => {
            if looks_like_path(s) {
                path_text(s)?
            } else if looks_like_json(s) {
                // Equality on such nodes compares text, which an owned element cannot lend;
                // an equal JsonNode text can only come from another list element.
                Node::PathText
            } else {
                Node::Str(Cow::Owned(escaped_element(s)?.into_owned()))
            }
        }
        other => match element_node(other)? {
            Node::Num(d) => Node::Num(d),
            Node::Bool(b) => Node::Bool(b),
            _ => Node::Null,
        },
    })
}

/// `JsonNode.parse(ctx)`: the parsed value of a JSON node (an unparsable literal throws
/// `IllegalArgumentException`).
fn parsed<'n>(n: &'n Node<'_>) -> Result<Option<ParsedRef<'n>>, Fail> {
    Ok(match n {
        Node::Lit(l) => match &l.parsed {
            Ok(v) => Some(ParsedRef::Value(v)),
            Err(m) => return Err(Fail::Runtime(format!("IllegalArgumentException: {m}"))),
        },
        Node::Doc(it) => it.value().map(ParsedRef::Value),
        Node::DocList(items) => Some(ParsedRef::Items(items)),
        _ => None,
    })
}

enum ParsedRef<'n> {
    Value(&'n Value),
    Items(&'n [Item<'n>]),
}

impl<'n> ParsedRef<'n> {
    fn list(&self) -> Option<ListSrc<'n>> {
        match self {
            ParsedRef::Value(Value::Array(a)) => Some(ListSrc::Values(a)),
            ParsedRef::Items(items) => Some(ListSrc::Items(items)),
            _ => None,
        }
    }

    fn size(&self) -> Option<usize> {
        match self {
            ParsedRef::Value(Value::Array(a)) => Some(a.len()),
            ParsedRef::Value(Value::Object(m)) => Some(m.len()),
            ParsedRef::Items(items) => Some(items.len()),
            _ => None,
        }
    }
}

/// `JsonNode.asValueListNode(ctx)`: `Ok(None)` for Jayway's `UndefinedNode`.
fn json_list<'n>(n: &'n Node<'_>) -> Result<Option<ListSrc<'n>>, Fail> {
    Ok(parsed(n)?.and_then(|p| p.list()))
}

/// A list operand for `in`, `subsetof`, `anyof`, `noneof`: a JSON node gives its list (or
/// `None`, which makes the operator false); anything else throws `InvalidPathException`.
fn list_operand<'n>(n: &'n Node<'_>) -> Result<Option<ListSrc<'n>>, Fail> {
    if n.is_json() {
        json_list(n)
    } else {
        Err(Fail::InvalidPath("Expected value list node".into()))
    }
}

fn java_equals(a: &Node<'_>, b: &Node<'_>) -> Result<bool, Fail> {
    Ok(match a {
        Node::Str(s) => match b {
            Node::Str(t) => s == t,
            Node::Num(d) => **s == d.to_java_string(),
            _ => false,
        },
        Node::Num(d) => match b {
            Node::Num(e) => d.compare(e) == Ordering::Equal,
            Node::Str(t) => Dec::parse_java(t).is_some_and(|e| d.compare(&e) == Ordering::Equal),
            _ => false,
        },
        Node::Bool(x) => matches!(b, Node::Bool(y) if x == y),
        Node::Null => matches!(b, Node::Null),
        Node::Undefined | Node::PathText => false,
        Node::Pattern(p) => matches!(b, Node::Pattern(q) if std::ptr::eq(*p, *q)),
        Node::Lit(_) | Node::JsonText(_) | Node::Doc(_) | Node::DocList(_) => {
            json_field_equals(a, b)
        }
    })
}

/// The text of a JSON node that holds text.
fn json_text<'n>(n: &'n Node<'_>) -> Option<&'n str> {
    match n {
        Node::Lit(l) => Some(&l.text),
        Node::JsonText(t) => Some(t),
        _ => None,
    }
}

/// `JsonNode.equals(Object)`: compares the raw `json` fields (text with text, values with values).
fn json_field_equals(a: &Node<'_>, b: &Node<'_>) -> bool {
    if !b.is_json() {
        return false;
    }
    match (json_text(a), json_text(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => match (parsed(a), parsed(b)) {
            (Ok(Some(x)), Ok(Some(y))) => parsed_equals(&x, &y),
            _ => false,
        },
        _ => false,
    }
}

fn parsed_equals(a: &ParsedRef<'_>, b: &ParsedRef<'_>) -> bool {
    match (a, b) {
        (ParsedRef::Value(x), ParsedRef::Value(y)) => java_value_equals(x, y),
        (ParsedRef::Items(xs), ParsedRef::Items(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys.iter()).all(|(x, y)| item_equals(x, y))
        }
        (ParsedRef::Items(xs), ParsedRef::Value(Value::Array(ys)))
        | (ParsedRef::Value(Value::Array(ys)), ParsedRef::Items(xs)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys.iter())
                    .all(|(x, y)| x.value().is_some_and(|x| java_value_equals(x, y)))
        }
        _ => false,
    }
}

fn item_equals(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Keys(x), Item::Keys(y)) => x == y,
        _ => match (a.value(), b.value()) {
            (Some(x), Some(y)) => java_value_equals(x, y),
            _ => false,
        },
    }
}

/// Java `equals` between json-smart values: integers and doubles are different classes, maps
/// compare without regard to order.
pub(crate) fn java_value_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.is_f64()
                    && y.is_f64()
                    && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| java_value_equals(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| java_value_equals(v, w)))
        }
        _ => false,
    }
}

/// Java `String.compareTo`: by UTF-16 code units.
fn java_compare_str(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn java_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `RegexpEvaluator.getInput`.
fn regex_input<'n>(n: &'n Node<'_>) -> Cow<'n, str> {
    match n {
        Node::Str(s) => Cow::Borrowed(s),
        Node::Num(d) => Cow::Owned(d.to_java_string()),
        Node::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => Cow::Borrowed(""),
    }
}

fn regex_side(p: &JavaRegex, other: &Node<'_>) -> Result<bool, Fail> {
    let is_list = other.is_json() && parsed(other)?.and_then(|x| x.list()).is_some();
    if is_list {
        let Some(list) = json_list(other)? else {
            return Ok(false);
        };
        for n in list.nodes()? {
            if p.matches(&regex_input(&n)) {
                return Ok(true);
            }
        }
        Ok(false)
    } else {
        Ok(p.matches(&regex_input(other)))
    }
}

fn as_bool(n: &Node<'_>) -> Result<bool, Fail> {
    match n {
        Node::Bool(b) => Ok(*b),
        _ => Err(Fail::InvalidPath("Expected boolean node".into())),
    }
}

fn relate(op: RelOp, l: &Node<'_>, r: &Node<'_>) -> Result<bool, Fail> {
    match op {
        RelOp::Eq => eq(l, r),
        RelOp::Ne => Ok(!eq(l, r)?),
        RelOp::TsEq => Ok(l.class() == r.class() && eq(l, r)?),
        RelOp::TsNe => Ok(!(l.class() == r.class() && eq(l, r)?)),
        RelOp::Lt | RelOp::Lte | RelOp::Gt | RelOp::Gte => {
            let ord = match (l, r) {
                (Node::Num(a), Node::Num(b)) => a.compare(b),
                (Node::Str(a), Node::Str(b)) => java_compare_str(a, b),
                _ => return Ok(false),
            };
            Ok(match op {
                RelOp::Lt => ord == Ordering::Less,
                RelOp::Lte => ord != Ordering::Greater,
                RelOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
        RelOp::Size => {
            let Node::Num(d) = r else { return Ok(false) };
            let expected = i64::from(d.int_value());
            match l {
                Node::Str(s) => Ok(java_len(s) as i64 == expected),
                _ if l.is_json() => {
                    let len = match parsed(l)? {
                        Some(p) if p.list().is_some() => p.size().map_or(-1, |s| s as i64),
                        _ => -1,
                    };
                    Ok(len == expected)
                }
                _ => Ok(false),
            }
        }
        RelOp::Empty => match l {
            Node::Str(s) => Ok(s.is_empty() == as_bool(r)?),
            _ if l.is_json() => {
                let empty = match parsed(l)? {
                    Some(ParsedRef::Value(Value::String(s))) => s.is_empty(),
                    // Jayway casts the parsed value to a Collection, which a map is not.
                    Some(ParsedRef::Value(Value::Object(_))) => {
                        return Err(Fail::Runtime(
                            "ClassCastException: a JSON object cannot be cast to java.util.Collection".into(),
                        ));
                    }
                    Some(p) => p.size().is_none_or(|s| s == 0),
                    None => true,
                };
                Ok(empty == as_bool(r)?)
            }
            _ => Ok(false),
        },
        RelOp::In => match list_operand(r)? {
            None => Ok(false),
            Some(list) => list.contains(l),
        },
        RelOp::Nin => match list_operand(r)? {
            None => Ok(true),
            Some(list) => Ok(!list.contains(l)?),
        },
        RelOp::All | RelOp::Type | RelOp::Matches => Err(Fail::InvalidPath(format!(
            "Operator {} needs a value that a filter cannot express",
            op.as_str()
        ))),
        RelOp::Contains => {
            if let (Node::Str(a), Node::Str(b)) = (l, r) {
                return Ok(a.contains(&**b));
            }
            if l.is_json() {
                return match json_list(l)? {
                    None => Ok(false),
                    Some(list) => list.contains(r),
                };
            }
            Ok(false)
        }
        RelOp::SubsetOf | RelOp::AnyOf | RelOp::NoneOf => {
            // Jayway converts the right list (which throws on nested values) before it even
            // looks at the left operand.
            let Some(right) = list_operand(r)? else {
                return Ok(false);
            };
            right.check()?;
            let Some(left) = list_operand(l)? else {
                return Ok(false);
            };
            let rn = right.nodes()?;
            let ln = left.nodes()?;
            match op {
                RelOp::SubsetOf => {
                    for a in &ln {
                        let mut found = false;
                        for b in &rn {
                            out_of_time()?;
                            if java_equals(a, b)? {
                                found = true;
                                break;
                            }
                        }
                        if !found {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
                _ => {
                    for a in &ln {
                        for b in &rn {
                            out_of_time()?;
                            if java_equals(a, b)? {
                                return Ok(op == RelOp::AnyOf);
                            }
                        }
                    }
                    Ok(op == RelOp::NoneOf)
                }
            }
        }
        RelOp::Regex => {
            let (lp, rp) = (matches!(l, Node::Pattern(_)), matches!(r, Node::Pattern(_)));
            if lp == rp {
                return Ok(false);
            }
            match (l, r) {
                (Node::Pattern(p), other) | (other, Node::Pattern(p)) => regex_side(p, other),
                _ => Ok(false),
            }
        }
        RelOp::Exists => {
            if !matches!(l, Node::Bool(_)) && !matches!(r, Node::Bool(_)) {
                return Err(Fail::JsonPath(
                    "Failed to evaluate exists expression".into(),
                ));
            }
            Ok(as_bool(l)? == as_bool(r)?)
        }
    }
}

/// `EqualsEvaluator`.
fn eq(l: &Node<'_>, r: &Node<'_>) -> Result<bool, Fail> {
    if l.is_json() && r.is_json() {
        // `left.json.equals(right.parse())`: literal text never equals a parsed value.
        if json_text(l).is_some() {
            // Jayway's parse of the right side still happens (and can throw).
            parsed(r)?;
            return Ok(false);
        }
        let (Some(a), Some(b)) = (parsed(l)?, parsed(r)?) else {
            return Ok(false);
        };
        return Ok(parsed_equals(&a, &b));
    }
    java_equals(l, r)
}
