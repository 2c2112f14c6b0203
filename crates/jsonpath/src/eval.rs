//! Evaluation of a compiled path, token by token, as Jayway's `PathToken.evaluate` chain does:
//! depth first, results in document order, with Jayway's rules for when a missing property or a
//! type mismatch is skipped and when it throws.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::ast::{CompiledPath, Function, FunctionKind, Param, Slice, Token};
use crate::number::{PastRange, java_double_string, java_double_value, past_double_range};
use crate::options::Options;
use crate::predicate;

pub(crate) static NULL: Value = Value::Null;

/// Where Jayway holds a `Double` that is infinite or not a number (an aggregation that
/// overflowed, the standard deviation of rounding noise), JSON has no number for it. Such a
/// result reads as null here, as json-smart writes it, but it is one of these three values, told
/// apart by address, so that `toString` gives Java's text and a filter that compares it throws as
/// `new BigDecimal("Infinity")` does. (Elements of one array never share an address.)
static NON_FINITE: [Value; 3] = [Value::Null, Value::Null, Value::Null];
const NON_FINITE_TEXT: [&str; 3] = ["Infinity", "-Infinity", "NaN"];

/// The item of a double result: a number, or one of the [`NON_FINITE`] values.
pub(crate) fn double_item<'a>(v: f64) -> Item<'a> {
    match serde_json::Number::from_f64(v) {
        Some(n) => Item::Owned(Rc::new(Value::Number(n))),
        None if v.is_nan() => Item::Ref(&NON_FINITE[2]),
        None if v > 0.0 => Item::Ref(&NON_FINITE[0]),
        None => Item::Ref(&NON_FINITE[1]),
    }
}

/// Java's `Double.toString` of an item that stands for an infinite or NaN double.
pub(crate) fn non_finite_text(item: &Item<'_>) -> Option<&'static str> {
    let Item::Ref(v) = item else {
        return None;
    };
    NON_FINITE
        .iter()
        .position(|n| std::ptr::eq(n, *v))
        .map(|ix| NON_FINITE_TEXT[ix])
}

/// What `new BigDecimal(text)` throws for the text of an infinite or NaN double.
pub(crate) fn not_a_decimal(text: &str) -> Fail {
    let first = text.trim_start_matches('-').chars().next().unwrap_or('N');
    Fail::Runtime(format!(
        "NumberFormatException: Character {first} is neither a decimal digit number, decimal \
         point, nor \"e\" notation exponential mark."
    ))
}

const PROVIDER: &str = "com.jayway.jsonpath.spi.json.JsonSmartJsonProvider";

/// A value met during evaluation: part of the document, a value computed by a function, or the
/// key set returned by `keys()` (a Java `Set`: neither a list nor a map for Jayway).
#[derive(Debug, Clone)]
pub(crate) enum Item<'a> {
    Ref(&'a Value),
    Owned(Rc<Value>),
    Keys(Rc<Vec<String>>),
}

impl<'a> Item<'a> {
    pub(crate) fn value(&self) -> Option<&Value> {
        match self {
            Item::Ref(v) => Some(v),
            Item::Owned(v) => Some(v),
            Item::Keys(_) => None,
        }
    }

    pub(crate) fn is_map(&self) -> bool {
        matches!(self.value(), Some(Value::Object(_)))
    }

    pub(crate) fn is_array(&self) -> bool {
        matches!(self.value(), Some(Value::Array(_)))
    }

    fn is_null(&self) -> bool {
        matches!(self.value(), Some(Value::Null))
    }

    fn child_of(&self, pick: impl FnOnce(&Value) -> Option<&Value>) -> Option<Item<'a>> {
        match self {
            Item::Ref(v) => pick(v).map(Item::Ref),
            // Children of computed values are copied out; this only happens after a function.
            Item::Owned(v) => pick(v).map(|c| Item::Owned(Rc::new(c.clone()))),
            Item::Keys(_) => None,
        }
    }

    pub(crate) fn get_key(&self, key: &str) -> Option<Item<'a>> {
        self.child_of(|v| v.as_object().and_then(|m| m.get(key)))
    }

    pub(crate) fn get_index(&self, i: i64) -> Option<Item<'a>> {
        if i < 0 {
            return None;
        }
        self.child_of(|v| v.as_array().and_then(|a| a.get(i as usize)))
    }

    pub(crate) fn len(&self) -> usize {
        match self.value() {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(m)) => m.len(),
            _ => 0,
        }
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        match self.value() {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The elements of an array item.
    pub(crate) fn elements(&self) -> Vec<Item<'a>> {
        (0..self.len())
            .filter_map(|i| self.get_index(i as i64))
            .collect()
    }

    /// An owned JSON value (key sets become arrays of strings).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Item::Ref(v) => (*v).clone(),
            Item::Owned(v) => (**v).clone(),
            Item::Keys(k) => Value::Array(k.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// Java's `getClass().getName()` for a value as json-smart represents it.
pub(crate) fn java_class(item: &Item<'_>) -> &'static str {
    match item {
        Item::Keys(_) => "java.util.LinkedHashMap$LinkedKeySet",
        _ => match item.value() {
            None | Some(Value::Null) => "null",
            Some(Value::Bool(_)) => "java.lang.Boolean",
            Some(Value::String(_)) => "java.lang.String",
            Some(Value::Array(_)) => "net.minidev.json.JSONArray",
            Some(Value::Object(_)) => "java.util.LinkedHashMap",
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    if i32::try_from(i).is_ok() {
                        "java.lang.Integer"
                    } else {
                        "java.lang.Long"
                    }
                } else if n.is_u64() || crate::number::is_big_integer(n) {
                    "java.math.BigInteger"
                } else {
                    "java.lang.Double"
                }
            }
        },
    }
}

/// Java's `toString()` of a value: JSON text for maps and lists (json-smart), Java number text.
pub(crate) fn java_to_string(item: &Item<'_>) -> String {
    if let Some(text) = non_finite_text(item) {
        return text.into();
    }
    match item {
        Item::Keys(k) => format!("[{}]", k.join(", ")),
        _ => match item.value() {
            None | Some(Value::Null) => "null".into(),
            Some(v) => value_java_string(v),
        },
    }
}

pub(crate) fn value_java_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => java_number_string(n),
        // json-smart's lists print as JSON text.
        Value::Array(_) => {
            let mut out = String::new();
            json_smart_text(v, &mut out);
            out
        }
        // Its maps are `LinkedHashMap`s, which print as `{k=v, …}`.
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", value_java_string(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

fn java_number_string(n: &serde_json::Number) -> String {
    match past_double_range(n) {
        Some(PastRange::Double(v)) => java_double_string(v),
        Some(PastRange::Decimal(dec)) => dec.to_java_string(),
        None if n.is_f64() => java_double_string(n.as_f64().unwrap_or(0.0)),
        None => n.to_string(),
    }
}

/// json-smart's compact JSON text (it escapes `/` and a few Unicode ranges).
fn json_smart_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&java_number_string(n)),
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '/' => out.push_str("\\/"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20
                        || (0x7f..=0x9f).contains(&(c as u32))
                        || (0x2000..=0x20ff).contains(&(c as u32)) =>
                    {
                        out.push_str(&format!("\\u{:04X}", c as u32));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_smart_text(e, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_smart_text(&Value::String(k.clone()), out);
                out.push(':');
                json_smart_text(e, out);
            }
            out.push('}');
        }
    }
}

/// A failure that Jayway would throw; the evaluator catches some of them on the way up just as
/// Jayway's `catch` blocks do.
#[derive(Debug, Clone)]
pub(crate) enum Fail {
    PathNotFound(String),
    InvalidPath(String),
    JsonPath(String),
    /// `IndexOutOfBoundsException`, which array index steps swallow.
    IndexOutOfBounds(String),
    /// Any other Java runtime exception.
    Runtime(String),
}

/// One step of the current location, kept on the stack so that locations cost nothing unless a
/// result path or an error message needs them.
#[derive(Clone, Copy)]
pub(crate) enum Seg<'t> {
    Root(char),
    Prop(&'t str),
    Multi(&'t [String]),
    Index(i64),
    Func(&'t str),
    Text(&'t str),
}

#[derive(Clone, Copy)]
pub(crate) struct Trail<'t> {
    parent: Option<&'t Trail<'t>>,
    seg: Seg<'t>,
}

impl<'t> Trail<'t> {
    pub(crate) fn root(seg: Seg<'t>) -> Self {
        Trail { parent: None, seg }
    }

    fn child(&'t self, seg: Seg<'t>) -> Trail<'t> {
        Trail {
            parent: Some(self),
            seg,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(t) = cur {
            segs.push(t.seg);
            cur = t.parent;
        }
        let mut s = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root(c) => s.push(*c),
                Seg::Prop(p) => {
                    s.push_str("['");
                    s.push_str(p);
                    s.push_str("']");
                }
                Seg::Multi(ps) => {
                    let inner: Vec<String> = ps.iter().map(|p| format!("'{p}'")).collect();
                    s.push('[');
                    s.push_str(&inner.join(", "));
                    s.push(']');
                }
                Seg::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
                Seg::Func(f) => {
                    s.push('.');
                    s.push_str(f);
                }
                Seg::Text(t) => s.push_str(t),
            }
        }
        s
    }
}

/// The answer of evaluating a path (Jayway's `getValue()`): one value for a definite path, the
/// list of results for an indefinite one.
#[derive(Debug, Clone)]
pub(crate) enum Got<'a> {
    One(Item<'a>),
    List(Vec<Item<'a>>),
}

impl<'a> Got<'a> {
    /// As one item (lists become JSON arrays).
    pub(crate) fn into_item(self) -> Item<'a> {
        match self {
            Got::One(i) => i,
            Got::List(v) => Item::Owned(Rc::new(Value::Array(
                v.iter().map(Item::to_value).collect(),
            ))),
        }
    }
}

/// Jayway's `EvaluationContextImpl` for one path evaluation.
pub(crate) struct Cx<'a, 'p> {
    pub path: &'p CompiledPath,
    pub root: &'a Value,
    pub opts: Options,
    pub results: Vec<Item<'a>>,
    pub paths: Vec<String>,
    /// Record result locations (`AS_PATH_LIST`) and full locations in deep-scan messages.
    pub track: bool,
    /// Jayway's per-token `upstreamArrayIndex`, set by deep scans over arrays.
    upstream: Vec<(usize, i64)>,
    /// Results were left out past [`MAX_RESULTS`]: the evaluation fails.
    overflowed: bool,
}

/// Most results one path evaluation collects. Deep scans of deep scans (`@..*..*..*`) multiply
/// an event's nodes by its depth at each scan: past this, the evaluation fails rather than take
/// the memory (the largest event's `$..*` is well under it).
const MAX_RESULTS: usize = 1_000_000;

fn too_many_results() -> String {
    format!("the path has more than {MAX_RESULTS} results; this engine collects no more")
}

/// Whether the evaluation failed for a limit of this engine (its results, its deadline), not
/// for anything in the document: evaluating again would fail alike.
pub(crate) fn is_limit(fail: &Fail) -> bool {
    matches!(fail, Fail::Runtime(message) if *message == too_many_results() || message == PAST_DEADLINE)
}

pub(crate) const PAST_DEADLINE: &str = "the evaluation ran past its deadline";

impl<'a, 'p> Cx<'a, 'p> {
    pub(crate) fn new(path: &'p CompiledPath, root: &'a Value, opts: Options, track: bool) -> Self {
        Cx {
            path,
            root,
            opts,
            results: Vec::new(),
            paths: Vec::new(),
            track,
            upstream: Vec::new(),
            overflowed: false,
        }
    }

    /// `CompiledPath.evaluate(document, root)`.
    pub(crate) fn run(&mut self, doc: Item<'a>) -> Result<(), Fail> {
        let path = self.path;
        let trail = Trail::root(Seg::Root(path.root));
        if path.tokens.is_empty() {
            self.add(&trail, doc);
            return Ok(());
        }
        self.eval(0, &trail, doc)?;
        if self.overflowed {
            return Err(Fail::Runtime(too_many_results()));
        }
        Ok(())
    }

    /// `getValue()`.
    pub(crate) fn value(mut self) -> Result<Got<'a>, Fail> {
        if self.path.definite {
            match self.results.pop() {
                Some(v) => Ok(Got::One(v)),
                None if self.opts.suppress_exceptions => Ok(Got::One(Item::Ref(&NULL))),
                None => Err(Fail::PathNotFound(format!(
                    "No results for path: {}",
                    self.path.render_from(None)
                ))),
            }
        } else {
            Ok(Got::List(self.results))
        }
    }

    fn add(&mut self, trail: &Trail<'_>, item: Item<'a>) {
        if self.results.len() >= MAX_RESULTS {
            self.overflowed = true;
            return;
        }
        if self.track {
            self.paths.push(trail.render());
        }
        self.results.push(item);
    }

    fn is_leaf(&self, i: usize) -> bool {
        i + 1 == self.path.tokens.len()
    }

    fn token_definite(&self, i: usize) -> bool {
        self.path
            .tokens
            .get(i)
            .is_some_and(|t| t.is_definite(self.is_leaf(i)))
    }

    fn upstream_definite(&self, i: usize) -> bool {
        self.path.upstream_definite.get(i).copied().unwrap_or(true)
    }

    fn upstream_index(&self, i: usize) -> i64 {
        self.upstream
            .iter()
            .find(|(t, _)| *t == i)
            .map_or(-1, |(_, v)| *v)
    }

    fn set_upstream_index(&mut self, i: usize, v: i64) {
        match self.upstream.iter_mut().find(|(t, _)| *t == i) {
            Some(e) => e.1 = v,
            None => self.upstream.push((i, v)),
        }
    }

    fn eval(&mut self, i: usize, trail: &Trail<'_>, model: Item<'a>) -> Result<(), Fail> {
        // Past the deadline of `Path::matches_within`, every step ends at once; the answer is
        // then dropped, whatever this error makes of it.
        if crate::regex::step_past_deadline() {
            return Err(Fail::Runtime(PAST_DEADLINE.into()));
        }
        if self.overflowed {
            return Err(Fail::Runtime(too_many_results()));
        }
        let path = self.path;
        let Some(token) = path.tokens.get(i) else {
            return Err(Fail::Runtime("Current path token is a leaf".into()));
        };
        match token {
            Token::Property(names, _) => {
                if !model.is_map() {
                    if !self.upstream_definite(i) || self.opts.suppress_exceptions {
                        return Ok(());
                    }
                    return Err(Fail::PathNotFound(format!(
                        "Expected to find an object with property {} in path {} but found '{}'. This is not a json object according to the JsonProvider: '{PROVIDER}'.",
                        token.fragment(),
                        trail.render(),
                        java_class(&model),
                    )));
                }
                if names.len() == 1 || self.is_leaf(i) {
                    self.handle_property(i, trail, &model, names)
                } else {
                    for n in names {
                        self.handle_property(i, trail, &model, std::slice::from_ref(n))?;
                    }
                    Ok(())
                }
            }
            Token::Index(ixs) => {
                if !self.check_array(i, trail, &model)? {
                    return Ok(());
                }
                for ix in ixs {
                    self.handle_index(i, i64::from(*ix), trail, &model)?;
                }
                Ok(())
            }
            Token::Slice(s) => {
                if !self.check_array(i, trail, &model)? {
                    return Ok(());
                }
                let len = model.len() as i64;
                let (from, to) = match *s {
                    Slice::From(f) => {
                        let mut from = i64::from(f);
                        if from < 0 {
                            from += len;
                        }
                        from = from.max(0);
                        if len == 0 || from >= len {
                            return Ok(());
                        }
                        (from, len)
                    }
                    Slice::Between(f, t) => {
                        let from = i64::from(f);
                        let to = i64::from(t).min(len);
                        if from >= to || len == 0 {
                            return Ok(());
                        }
                        (from, to)
                    }
                    Slice::To(t) => {
                        if len == 0 {
                            return Ok(());
                        }
                        let mut to = i64::from(t);
                        if to < 0 {
                            to += len;
                        }
                        (0, to.min(len))
                    }
                };
                for ix in from..to {
                    self.handle_index(i, ix, trail, &model)?;
                }
                Ok(())
            }
            Token::Wildcard => {
                if model.is_map() {
                    for k in model.keys() {
                        self.handle_property(i, trail, &model, std::slice::from_ref(&k))?;
                    }
                } else if model.is_array() {
                    for ix in 0..model.len() {
                        match self.handle_index(i, ix as i64, trail, &model) {
                            Err(Fail::PathNotFound(_)) if !self.opts.require_properties => {}
                            other => other?,
                        }
                    }
                }
                Ok(())
            }
            Token::Scan => self.scan(i, trail, model),
            Token::Filter(expr) => {
                if model.is_map() {
                    if predicate::accept(expr, &model, self.root, self.opts)? {
                        if self.is_leaf(i) {
                            self.add(trail, model);
                        } else {
                            self.eval(i + 1, trail, model)?;
                        }
                    }
                } else if model.is_array() {
                    // By index, so that filtering a document array allocates nothing.
                    for ix in 0..model.len() {
                        let Some(el) = model.get_index(ix as i64) else {
                            continue;
                        };
                        if predicate::accept(expr, &el, self.root, self.opts)? {
                            self.handle_index(i, ix as i64, trail, &model)?;
                        }
                    }
                } else if self.upstream_definite(i) {
                    return Err(Fail::InvalidPath(format!(
                        "Filter: {} can not be applied to primitives. Current context is: {}",
                        path.render_from(Some(i)),
                        java_to_string(&model),
                    )));
                }
                Ok(())
            }
            Token::Function(f) => {
                let result = self.invoke(f, &model)?;
                let ft = trail.child(Seg::Func(&f.name));
                self.add(&ft, result.clone());
                if !self.is_leaf(i) {
                    self.eval(i + 1, trail, result)?;
                }
                Ok(())
            }
        }
    }

    /// `PathToken.handleObjectProperty`.
    fn handle_property(
        &mut self,
        i: usize,
        trail: &Trail<'_>,
        model: &Item<'a>,
        props: &[String],
    ) -> Result<(), Fail> {
        let leaf = self.is_leaf(i);
        if let [prop] = props {
            let et = trail.child(Seg::Prop(prop));
            let val = match model.get_key(prop) {
                Some(v) => v,
                None => {
                    if leaf {
                        if self.opts.default_path_leaf_to_null {
                            Item::Ref(&NULL)
                        } else if self.opts.suppress_exceptions || !self.opts.require_properties {
                            return Ok(());
                        } else {
                            return Err(Fail::PathNotFound(format!(
                                "No results for path: {}",
                                et.render()
                            )));
                        }
                    } else if !(self.opts.require_properties
                        || self.upstream_definite(i) && self.token_definite(i))
                        || self.opts.suppress_exceptions
                    {
                        return Ok(());
                    } else {
                        return Err(Fail::PathNotFound(format!(
                            "Missing property in path {}",
                            et.render()
                        )));
                    }
                }
            };
            if leaf {
                let idx = self.upstream_index(i);
                if idx == -1 || self.path.tail_prev_fragment == format!("[{idx}]") {
                    self.add(&et, val);
                }
                Ok(())
            } else {
                self.eval(i + 1, &et, val)
            }
        } else {
            let et = trail.child(Seg::Multi(props));
            let mut merged = Map::new();
            let obj = model.value().and_then(Value::as_object);
            for p in props {
                let v = match obj.and_then(|o| o.get(p)) {
                    Some(v) => v.clone(),
                    None => {
                        if self.opts.default_path_leaf_to_null {
                            Value::Null
                        } else if self.opts.require_properties {
                            return Err(Fail::PathNotFound(format!(
                                "Missing property in path {}",
                                et.render()
                            )));
                        } else {
                            continue;
                        }
                    }
                };
                merged.insert(p.clone(), v);
            }
            self.add(&et, Item::Owned(Rc::new(Value::Object(merged))));
            Ok(())
        }
    }

    /// `PathToken.handleArrayIndex`: an index outside the array, and any index error further
    /// down the chain, is silently skipped.
    fn handle_index(
        &mut self,
        i: usize,
        index: i64,
        trail: &Trail<'_>,
        model: &Item<'a>,
    ) -> Result<(), Fail> {
        let et = trail.child(Seg::Index(index));
        let eff = if index < 0 {
            model.len() as i64 + index
        } else {
            index
        };
        let Some(hit) = model.get_index(eff) else {
            return Ok(());
        };
        let r = if self.is_leaf(i) {
            self.add(&et, hit);
            Ok(())
        } else {
            self.eval(i + 1, &et, hit)
        };
        match r {
            Err(Fail::IndexOutOfBounds(_)) => Ok(()),
            other => other,
        }
    }

    /// `ArrayPathToken.checkArrayModel`.
    fn check_array(&self, i: usize, trail: &Trail<'_>, model: &Item<'a>) -> Result<bool, Fail> {
        if model.is_null() {
            if !self.upstream_definite(i) || self.opts.suppress_exceptions {
                return Ok(false);
            }
            return Err(Fail::PathNotFound(format!(
                "The path {} is null",
                trail.render()
            )));
        }
        if !model.is_array() {
            if !self.upstream_definite(i) || self.opts.suppress_exceptions {
                return Ok(false);
            }
            return Err(Fail::PathNotFound(format!(
                "Filter: {} can only be applied to arrays. Current context is: {}",
                self.path.render_from(Some(i)),
                java_to_string(model),
            )));
        }
        Ok(true)
    }

    /// Whether a deep scan applies the next token at this node (Jayway's scan predicates).
    fn scan_accepts(&self, pt: usize, node: &Item<'a>) -> Result<bool, Fail> {
        let Some(token) = self.path.tokens.get(pt) else {
            return Ok(false);
        };
        Ok(match token {
            Token::Property(names, _) => {
                if !node.is_map() {
                    false
                } else if !token.is_definite(self.is_leaf(pt))
                    || (self.is_leaf(pt) && self.opts.default_path_leaf_to_null)
                {
                    true
                } else {
                    let obj = node.value().and_then(Value::as_object);
                    names.iter().all(|n| obj.is_some_and(|o| o.contains_key(n)))
                }
            }
            Token::Index(_) | Token::Slice(_) => node.is_array(),
            Token::Wildcard => true,
            Token::Filter(expr) => predicate::accept(expr, node, self.root, self.opts)?,
            Token::Scan | Token::Function(_) => false,
        })
    }

    /// `ScanPathToken`: a pre-order walk of every object and array under `model`, iterative so
    /// that document depth never becomes stack depth.
    fn scan(&mut self, i: usize, trail: &Trail<'_>, model: Item<'a>) -> Result<(), Fail> {
        let pt = i + 1;
        if self.path.tokens.get(pt).is_none() {
            return Err(Fail::Runtime("Current path token is a leaf".into()));
        }
        let base = if self.track {
            trail.render()
        } else {
            String::new()
        };
        let mut stack: Vec<(Item<'a>, Option<Rc<str>>)> = vec![(model, None)];
        while let Some((node, loc)) = stack.pop() {
            let here = match &loc {
                Some(l) => l.to_string(),
                None => base.clone(),
            };
            let node_trail = Trail::root(Seg::Text(&here));
            if node.is_map() {
                if self.scan_accepts(pt, &node)? {
                    self.eval(pt, &node_trail, node.clone())?;
                }
                let obj = node.value().and_then(Value::as_object);
                let keys: Vec<&String> = obj.map(|o| o.keys().collect()).unwrap_or_default();
                for k in keys.into_iter().rev() {
                    if let Some(child) = node.get_key(k) {
                        let l = self.track.then(|| Rc::from(format!("{here}['{k}']")));
                        stack.push((child, l));
                    }
                }
            } else if node.is_array() {
                if self.scan_accepts(pt, &node)? {
                    if self.is_leaf(pt) {
                        self.eval(pt, &node_trail, node.clone())?;
                    } else {
                        for (ix, el) in node.elements().into_iter().enumerate() {
                            self.set_upstream_index(pt + 1, ix as i64);
                            let et = node_trail.child(Seg::Index(ix as i64));
                            self.eval(pt + 1, &et, el)?;
                        }
                    }
                }
                for ix in (0..node.len()).rev() {
                    if let Some(el) = node.get_index(ix as i64) {
                        let l = self.track.then(|| Rc::from(format!("{here}[{ix}]")));
                        stack.push((el, l));
                    }
                }
            }
        }
        Ok(())
    }

    fn invoke(&mut self, f: &'p Function, model: &Item<'a>) -> Result<Item<'a>, Fail> {
        if f.kind == FunctionKind::Unknown {
            return Err(Fail::InvalidPath(format!(
                "Function with name: {} does not exist.",
                f.name
            )));
        }
        // Jayway binds path arguments first, evaluating each against the document root.
        let mut bound: Vec<Option<Item<'a>>> = Vec::with_capacity(f.params.len());
        for p in &f.params {
            match p {
                Param::Path(pp) => {
                    let got = evaluate(pp, Item::Ref(self.root), self.root, self.opts, false)?;
                    bound.push(Some(got.into_item()));
                }
                Param::Json(..) => bound.push(None),
            }
        }
        let param_value = |ix: usize| -> Result<Item<'a>, Fail> {
            match (f.params.get(ix), bound.get(ix)) {
                (_, Some(Some(item))) => Ok(item.clone()),
                (Some(Param::Json(text, parsed)), _) => match parsed {
                    Ok(v) => Ok(Item::Owned(Rc::new(v.clone()))),
                    Err(m) => Err(Fail::JsonPath(format!(
                        "net.minidev.json.parser.ParseException: {m} ({text})"
                    ))),
                },
                _ => Ok(Item::Ref(&NULL)),
            }
        };
        let numbers = |acc: &mut Vec<serde_json::Number>| -> Result<(), Fail> {
            for ix in 0..f.params.len() {
                let v = param_value(ix)?;
                match v.value() {
                    Some(Value::Array(a)) => {
                        acc.extend(a.iter().filter_map(|e| e.as_number().cloned()));
                    }
                    Some(Value::Number(n)) => acc.push(n.clone()),
                    _ => {}
                }
            }
            Ok(())
        };
        match f.kind {
            FunctionKind::Avg
            | FunctionKind::Stddev
            | FunctionKind::Sum
            | FunctionKind::Min
            | FunctionKind::Max => {
                let mut nums: Vec<f64> = Vec::new();
                if let Some(Value::Array(a)) = model.value() {
                    nums.extend(
                        a.iter()
                            .filter_map(|v| v.as_number().map(java_double_value)),
                    );
                }
                let mut ps = Vec::new();
                numbers(&mut ps)?;
                nums.extend(ps.iter().map(java_double_value));
                if nums.is_empty() {
                    return Err(Fail::JsonPath(
                        "Aggregation function attempted to calculate value using empty array"
                            .into(),
                    ));
                }
                let r = match f.kind {
                    FunctionKind::Sum => nums.iter().fold(0.0, |s, v| s + v),
                    FunctionKind::Avg => nums.iter().fold(0.0, |s, v| s + v) / nums.len() as f64,
                    FunctionKind::Min => nums
                        .iter()
                        .fold(f64::MAX, |m, v| if m > *v { *v } else { m }),
                    // Jayway starts from Double.MIN_VALUE, the smallest positive double.
                    FunctionKind::Max => nums
                        .iter()
                        .fold(f64::from_bits(1), |m, v| if m < *v { *v } else { m }),
                    _ => {
                        let (mut s, mut sq, mut c) = (0.0, 0.0, 0.0);
                        for v in &nums {
                            s += v;
                            sq += v * v;
                            c += 1.0;
                        }
                        (sq / c - s * s / c / c).sqrt()
                    }
                };
                Ok(double_item(r))
            }
            FunctionKind::Concat => {
                let mut out = String::new();
                if let Some(Value::Array(a)) = model.value() {
                    for e in a {
                        if let Value::String(s) = e {
                            out.push_str(s);
                        }
                    }
                }
                for ix in 0..f.params.len() {
                    let v = param_value(ix)?;
                    if v.is_array() {
                        for e in v.elements() {
                            if !e.is_null() {
                                out.push_str(&java_to_string(&e));
                            }
                        }
                    } else if !v.is_null() || non_finite_text(&v).is_some() {
                        out.push_str(&java_to_string(&v));
                    }
                }
                Ok(Item::Owned(Rc::new(Value::String(out))))
            }
            FunctionKind::Length => {
                if let Some(first) = f.params.first() {
                    let Param::Path(pp) = first else {
                        return Err(Fail::Runtime(
                            "NullPointerException: length() argument is not a path".into(),
                        ));
                    };
                    let arg = f.length_param.as_deref().unwrap_or(pp);
                    let inner = evaluate(
                        arg,
                        model.clone(),
                        root_of(model, self.root),
                        self.opts,
                        false,
                    )?;
                    let inner = inner.into_item();
                    if inner.is_array() {
                        return Ok(int_item(inner.len()));
                    }
                }
                if model.is_array() || model.is_map() {
                    Ok(int_item(model.len()))
                } else {
                    Ok(Item::Ref(&NULL))
                }
            }
            FunctionKind::Append => {
                let mut base = model.clone();
                for ix in 0..f.params.len() {
                    if let Some(Value::Array(a)) = base.value() {
                        let mut a = a.clone();
                        a.push(param_value(ix)?.to_value());
                        base = Item::Owned(Rc::new(Value::Array(a)));
                    }
                }
                Ok(base)
            }
            FunctionKind::Keys => {
                if model.is_map() {
                    Ok(Item::Keys(Rc::new(model.keys())))
                } else {
                    Ok(Item::Ref(&NULL))
                }
            }
            FunctionKind::First | FunctionKind::Last | FunctionKind::Index => {
                if !model.is_array() {
                    return Err(Fail::JsonPath(
                        "Aggregation function attempted to calculate value using empty array"
                            .into(),
                    ));
                }
                let target: i64 = match f.kind {
                    FunctionKind::First => 0,
                    FunctionKind::Last => -1,
                    _ => {
                        let mut ps = Vec::new();
                        numbers(&mut ps)?;
                        match ps.first() {
                            Some(n) => i64::from(java_int_value(n)),
                            None => {
                                return Err(Fail::IndexOutOfBounds(
                                    "Index 0 out of bounds for length 0".into(),
                                ));
                            }
                        }
                    }
                };
                let size = model.len() as i64;
                let real = if target >= 0 {
                    target
                } else {
                    let real = size + target;
                    if real <= 0 {
                        return Err(Fail::JsonPath(format!(
                            "Target index:{target} larger than object count:{size}"
                        )));
                    }
                    real
                };
                model.get_index(real).ok_or_else(|| {
                    Fail::IndexOutOfBounds(format!("Index {real} out of bounds for length {size}"))
                })
            }
            FunctionKind::Unknown => Err(Fail::InvalidPath(format!(
                "Function with name: {} does not exist.",
                f.name
            ))),
        }
    }
}

/// The root a `length(path)` argument sees: Jayway evaluates it with the function's input as both
/// document and root. Only a document value can serve as root here; a computed input falls back
/// to the document root.
fn root_of<'a>(model: &Item<'a>, root: &'a Value) -> &'a Value {
    match model {
        Item::Ref(v) => v,
        _ => root,
    }
}

fn int_item<'a>(n: usize) -> Item<'a> {
    Item::Owned(Rc::new(Value::Number((n as u64).into())))
}

/// Java `Number.intValue()`.
fn java_int_value(n: &serde_json::Number) -> i32 {
    if let Some(i) = n.as_i64() {
        i as i32
    } else if let Some(u) = n.as_u64() {
        u as i32
    } else {
        java_double_value(n) as i32
    }
}

/// Evaluates `path` on `doc` (with `root` as `$`) and returns Jayway's `getValue()`.
pub(crate) fn evaluate<'a>(
    path: &CompiledPath,
    doc: Item<'a>,
    root: &'a Value,
    opts: Options,
    track: bool,
) -> Result<Got<'a>, Fail> {
    let mut cx = Cx::new(path, root, opts, track);
    cx.run(doc)?;
    cx.value()
}
