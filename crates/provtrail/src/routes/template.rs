//! Webhook body templates: MiniJinja (Jinja2 syntax), sandboxed: no file or network access, a fuel
//! limit on the work one rendering may do, and no HTML auto-escaping (bodies are JSON).
//!
//! What a template sees:
//!
//! | name | what |
//! |---|---|
//! | `event` | the whole event as received (`event.recipient.name`, `event.accountRequests`, …) |
//! | `outcome` | `succeeded`, `failed`, `partially_failed`, `pending`, `unknown`, `no_requests` |
//! | `failed` | the failed account requests: `source`, `account_id`, `operation`, `target`, `ticket_id` |
//! | `sources` | names of the sources of the account requests, without repeats |
//! | `errors`, `warnings` | the event's messages |
//! | `ticket_ids` | the account requests' ticket ids, without repeats |
//! | `recipient`, `requester` | names (`requester` may be empty) |
//! | `tracking_number`, `action` | from the event |
//! | `event_id`, `received_at`, `route`, `delivery_key`, `attempt` | provtrail's own |
//!
//! Filters besides MiniJinja's built-ins: `tojson` (a JSON value: `{{ event.recipient.name |
//! tojson }}` gives `"Jane Doe"` with its quotes) and `json_escape` (the inside of a JSON string,
//! for text assembled between quotes: `"text": "Access for {{ recipient | json_escape }}"`).
//! Event text comes from outsiders, and chat services read markup in it: `slack_escape` makes
//! `&`, `<` and `>` Slack's entities (so that `<!channel>` pages nobody and `<https://…|here>` is
//! no link), `markdown_escape` puts a backslash before Markdown's punctuation (Teams cards), each
//! to apply before `tojson` or `json_escape`.

use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::json;

use super::sink::Delivery;

/// The names a template sees (see the module documentation and [`context`]).
const CONTEXT_NAMES: &[&str] = &[
    "event",
    "outcome",
    "failed",
    "sources",
    "errors",
    "warnings",
    "ticket_ids",
    "recipient",
    "requester",
    "tracking_number",
    "action",
    "event_id",
    "received_at",
    "route",
    "delivery_key",
    "attempt",
];

/// The work one rendering of a small event may do, in MiniJinja's fuel: an instruction costs
/// one, and so do 64 bytes of text made (strings built, filter results, output; a list's slot
/// counts 32 bytes). It bounds a runaway loop, and the memory a rendering can take.
const FUEL: u64 = 200_000;

/// Bytes of text one unit of fuel pays for (MiniJinja's own rate).
const BYTES_PER_FUEL: u64 = 64;

/// Fuel a rendering gets per byte of its event beyond [`FUEL`]. A template that loops over an
/// event made of many small values (100,000 one-letter errors) with a few steps each needs about
/// 1.1 a byte, and one that sends the whole event (`event | tojson`) 0.3: this leaves room for
/// more work per value, while keeping what a rendering can make to 256 bytes per byte of event.
const FUEL_PER_EVENT_BYTE: u64 = 4;

/// The memory that the renderings in progress may make together: each reserves what its fuel
/// can pay for before it starts, and waits while others hold it. A template that keeps what it
/// built and builds on it (`{% set s = s ~ s %}` over and over) takes that much, and no more.
const RENDER_MEMORY: u64 = 1 << 30;

/// The most fuel one rendering gets, whatever its event's size: half of [`RENDER_MEMORY`], so
/// that one rendering never waits for all of it. It serves an event of about 2 MB at
/// [`FUEL_PER_EVENT_BYTE`]; past that, a rendering has less fuel per byte.
const MAX_FUEL: u64 = RENDER_MEMORY / 2 / BYTES_PER_FUEL;

/// Fuel doubles from one prepared environment to the next, up to [`MAX_FUEL`].
const FUEL_STEP: u64 = 2;

/// A compiled body template.
#[derive(Debug)]
pub struct BodyTemplate {
    /// The template's text, for the child processes that render it (see `render`).
    source: String,
    /// The same template with more fuel in each (fuel is set per environment), so that a
    /// rendering gets fuel in proportion to its event.
    envs: Vec<(u64, Environment<'static>)>,
}

/// The fuel of the prepared environments: [`FUEL`], doubled until [`MAX_FUEL`], which ends it.
fn fuel_tiers() -> Vec<u64> {
    let mut tiers = vec![FUEL];
    while let Some(&last) = tiers.last() {
        if last >= MAX_FUEL {
            break;
        }
        tiers.push(last.saturating_mul(FUEL_STEP).min(MAX_FUEL));
    }
    tiers
}

/// The memory the renderings in progress have reserved (see [`RENDER_MEMORY`]).
static RENDERING: MemoryBudget = MemoryBudget::new(RENDER_MEMORY);

/// Bytes shared by the holders of reservations: a reservation waits until its bytes are free.
struct MemoryBudget {
    limit: u64,
    reserved: std::sync::Mutex<u64>,
    released: std::sync::Condvar,
}

impl MemoryBudget {
    const fn new(limit: u64) -> Self {
        MemoryBudget {
            limit,
            reserved: std::sync::Mutex::new(0),
            released: std::sync::Condvar::new(),
        }
    }

    /// Reserves `bytes` (at most the whole budget), waiting for them to be free.
    fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.limit);
        let mut reserved = self
            .reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *reserved + bytes > self.limit {
            reserved = self
                .released
                .wait(reserved)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *reserved += bytes;
        Reservation {
            budget: self,
            bytes,
        }
    }
}

/// Bytes of a [`MemoryBudget`], given back when dropped.
struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self
            .budget
            .reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *reserved -= self.bytes;
        self.budget.released.notify_all();
    }
}

const NAME: &str = "body";

impl BodyTemplate {
    /// Compiles a template; the error says where it is wrong.
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("json_escape", json_escape);
        env.add_filter("slack_escape", slack_escape);
        env.add_filter("markdown_escape", markdown_escape);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|err| describe(&err))?;
        let envs = fuel_tiers()
            .into_iter()
            .map(|fuel| {
                let mut env = env.clone();
                env.set_fuel(Some(fuel));
                (fuel, env)
            })
            .collect();
        let template = BodyTemplate {
            source: source.to_owned(),
            envs,
        };
        template.check_names()?;
        Ok(template)
    }

    /// Refuses a name the context does not have (`{{ recipent }}`): a misspelt name renders as
    /// nothing, and every message would go out with a blank where it stands.
    fn check_names(&self) -> Result<(), String> {
        let env = &self.envs[0].1;
        let template = env.get_template(NAME).map_err(|err| describe(&err))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| {
                !CONTEXT_NAMES.contains(&name.as_str())
                    && !env.globals().any(|(global, _)| global == name)
            })
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        Err(format!(
            "the template reads {}, which it does not have: it has {}",
            unknown
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", "),
            CONTEXT_NAMES.join(", ")
        ))
    }

    /// Renders the body of one delivery: in a child process when the program has asked for
    /// that (`render::isolate`, as the `provtrail` binary does), else here. Blocks until done.
    pub fn render(&self, delivery: &Delivery<'_>) -> Result<String, RenderError> {
        match super::render::pool() {
            Some(pool) => pool.render(&self.source, delivery),
            None => self.render_here(delivery).map_err(RenderError::of_template),
        }
    }

    /// Renders the body of one delivery in this process.
    pub(crate) fn render_here(&self, delivery: &Delivery<'_>) -> Result<String, String> {
        let needed =
            FUEL.saturating_add(FUEL_PER_EVENT_BYTE.saturating_mul(delivery.raw.len() as u64));
        let (fuel, env) = self
            .envs
            .iter()
            .find(|(fuel, _)| *fuel >= needed)
            .or(self.envs.last())
            .ok_or("no template")?;
        let template = env.get_template(NAME).map_err(|err| describe(&err))?;
        let context = context(delivery);
        let _memory = RENDERING.reserve(fuel.saturating_mul(BYTES_PER_FUEL));
        template.render(context).map_err(|err| describe(&err))
    }
}

/// Why a rendering gave no body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// What went wrong, for the delivery's error.
    pub message: String,
    /// True when the template was not rendered at all (no process to render it in could be
    /// started): trying again later may render it. False when the template failed on this
    /// event, which it would do again.
    pub retry: bool,
}

impl RenderError {
    pub(crate) fn of_template(message: String) -> Self {
        RenderError {
            message,
            retry: false,
        }
    }
}

fn describe(err: &minijinja::Error) -> String {
    if err.kind() == minijinja::ErrorKind::OutOfFuel {
        return format!(
            "template error: the rendering ran out of fuel{}: it did more steps or made more text \
             than an event of this size allows (a loop over the event's values in a loop over \
             them, or text built on itself)",
            err.line()
                .map(|line| format!(" on line {line}"))
                .unwrap_or_default()
        );
    }
    match err.line() {
        Some(line) => format!("template error on line {line}: {err}"),
        None => format!("template error: {err}"),
    }
}

/// The inside of a JSON string holding `value`: a string escaped, a member the event lacks (or
/// `null`) as nothing, as `{{ … }}` renders it without the filter, and anything else as its
/// JSON text (`3`, `true`, `["a",1]`). A missing member must not fail the rendering: every
/// delivery of events without it would go to the dead letters.
fn json_escape(value: Value) -> String {
    if value.is_undefined() || value.is_none() {
        return String::new();
    }
    let quoted = serde_json::Value::String(filter_text(&value)).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A value as the text a filter escapes: a string as it is, a member the event lacks (or
/// `null`) as nothing, anything else as its JSON text.
fn filter_text(value: &Value) -> String {
    if value.is_undefined() || value.is_none() {
        return String::new();
    }
    match value.as_str() {
        Some(text) => text.to_owned(),
        None => serde_json::to_string(value).unwrap_or_else(|_| value.to_string()),
    }
}

/// Text for Slack's `text` and `mrkdwn`: the three characters Slack reads as markup (mentions
/// such as `<!channel>`, links such as `<https://…|text>`) as the entities it documents.
fn slack_escape(value: Value) -> String {
    let text = filter_text(&value);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Text for Markdown (Teams cards): a backslash before each of Markdown's punctuation
/// characters, so that `[text](https://…)` is no link and `**` no emphasis.
fn markdown_escape(value: Value) -> String {
    let text = filter_text(&value);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_{}[]()<>#+-.!|~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The first key that an object of `json` (valid JSON) holds twice, as the receiver would read
/// it (escapes read: `"a"` and `"\u0061"` are one key).
pub(crate) fn repeated_key(json: &str) -> Option<String> {
    enum Frame {
        Object {
            keys: std::collections::HashSet<String>,
            expects_key: bool,
        },
        Array,
    }
    let bytes = json.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'{' => stack.push(Frame::Object {
                keys: std::collections::HashSet::new(),
                expects_key: true,
            }),
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Object { expects_key, .. }) = stack.last_mut() {
                    *expects_key = true;
                }
            }
            b'"' => {
                let start = at;
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object { keys, expects_key }) = stack.last_mut() {
                    if *expects_key {
                        *expects_key = false;
                        let written = json.get(start..=at)?;
                        // A key that names half a UTF-16 pair (`"\ud800"`) decodes to no Rust
                        // string: it stands for itself, as written.
                        let key: String =
                            serde_json::from_str(written).unwrap_or_else(|_| written.to_owned());
                        if !keys.insert(key.clone()) {
                            return Some(key);
                        }
                    }
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// What the template sees (see the module documentation).
pub fn context(delivery: &Delivery<'_>) -> Value {
    let received_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(delivery.received_at)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let derived = match crate::ingest::read_stored(delivery.raw) {
        Ok(event) => {
            let failed: Vec<serde_json::Value> = event
                .failed_account_requests()
                .map(|request| {
                    json!({
                        "source": request.source.name,
                        "account_id": request.account_id.as_deref(),
                        "operation": request.account_operation,
                        "target": request.provisioning_target,
                        "ticket_id": request.ticket_id.as_deref(),
                    })
                })
                .collect();
            let mut sources: Vec<&str> = Vec::new();
            for request in &event.account_requests {
                if !sources.contains(&request.source.name.as_ref()) {
                    sources.push(&request.source.name);
                }
            }
            json!({
                "outcome": event.outcome().as_str(),
                "failed": failed,
                "sources": sources,
                "errors": event.error_messages(),
                "warnings": event.warning_messages(),
                "ticket_ids": event.ticket_ids(),
                "recipient": event.recipient.name,
                "requester": event.requester.as_option().map(|r| r.name.as_ref()).unwrap_or(""),
                "tracking_number": event.tracking_number,
                "action": event.action.as_deref(),
            })
        }
        Err(_) => json!({}),
    };
    let mut context = match derived {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    context.insert("event_id".into(), json!(delivery.event_id));
    context.insert("received_at".into(), json!(received_at));
    context.insert("route".into(), json!(delivery.route));
    context.insert("delivery_key".into(), json!(delivery.key));
    context.insert("attempt".into(), json!(delivery.attempt));
    context.insert("event".into(), delivery.event.clone());
    template_value(&serde_json::Value::Object(context))
}

/// A JSON value as MiniJinja's own value. Not through serde: serde_json (with the
/// `arbitrary_precision` that the event model turns on) serializes a number as a one-entry map
/// under a private key, which a template would show as a map.
fn template_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(flag) => Value::from(*flag),
        serde_json::Value::Number(number) => template_number(number),
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(template_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from_object(
            map.iter()
                .map(|(key, value)| (key.clone(), template_value(value)))
                .collect::<std::collections::BTreeMap<String, Value>>(),
        ),
    }
}

/// A number as an integer when it is one (128 bits at most), else as a double.
fn template_number(number: &serde_json::Number) -> Value {
    if let Some(integer) = number.as_i64() {
        return Value::from(integer);
    }
    if let Some(integer) = number.as_u64() {
        return Value::from(integer);
    }
    let text = number.to_string();
    if let Ok(integer) = text.parse::<i128>() {
        return Value::from(integer);
    }
    if let Ok(integer) = text.parse::<u128>() {
        return Value::from(integer);
    }
    match number.as_f64() {
        Some(double) => Value::from(double),
        // Past a double's range (`1e400`): the number as written, rather than infinity.
        None => Value::from(text),
    }
}

/// Whether a `${env:…}` or `${file:…}` reference stands inside the template's code: in a
/// `{{ … }}` expression or a `{% … %}` statement (string literals in them included), rather than
/// in the text around them. Comments (`{# … #}`) are text that is never sent.
pub fn reference_in_code(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut at = 0;
    while at + 1 < bytes.len() {
        let close: &[u8] = match &bytes[at..at + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => {
                at = find(bytes, at + 2, b"#}").map_or(bytes.len(), |end| end + 2);
                continue;
            }
            _ => {
                at += 1;
                continue;
            }
        };
        // The tag's end, past any string literal that holds the closing characters.
        let mut quote = None;
        let mut end = at + 2;
        while end < bytes.len() {
            let byte = bytes[end];
            match quote {
                Some(_) if byte == b'\\' => end += 1,
                Some(q) if byte == q => quote = None,
                Some(_) => {}
                None if byte == b'"' || byte == b'\'' => quote = Some(byte),
                None if bytes[end..].starts_with(close) => break,
                None => {}
            }
            end += 1;
        }
        let code = &source[at..end.min(source.len())];
        // `$${` is a literal `${`, not a reference.
        let reference = ["${env:", "${file:"].iter().any(|opening| {
            code.match_indices(opening)
                .any(|(start, _)| start == 0 || code.as_bytes()[start - 1] != b'$')
        });
        if reference {
            return true;
        }
        at = end + close.len();
    }
    false
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|position| from + position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, serde_json::Value) {
        let raw = br#"{"trackingNumber":"tn-1","sources":"AD","recipient":{"type":"IDENTITY","id":"i1","name":"Jane \"JD\" Doe"},
          "accountRequests":[{"source":{"id":"s1","type":"SOURCE","name":"Corp AD"},"accountOperation":"Create",
          "provisioningResult":"FAILED","provisioningTarget":"Corp AD","ticketId":"T-9"}],
          "errors":["connector timeout"],"_metadata":{"invocationId":"inv-1"}}"#
            .to_vec();
        let value = serde_json::from_slice(&raw).unwrap();
        (raw, value)
    }

    fn delivery<'a>(raw: &'a [u8], value: &'a serde_json::Value) -> Delivery<'a> {
        Delivery {
            delivery_id: 1,
            route: "r",
            event_id: 42,
            event_key: "inv-1",
            key: "pt-x",
            attempt: 1,
            received_at: 0,
            raw,
            event: value,
        }
    }

    fn render(source: &str) -> Result<String, String> {
        let (raw, value) = sample();
        BodyTemplate::compile(source)?
            .render(&delivery(&raw, &value))
            .map_err(|err| err.message)
    }

    #[test]
    fn a_name_the_template_does_not_have_is_an_error_and_its_own_are_not() {
        let err = BodyTemplate::compile(r#"{"text": "{{ recipent }} {{ evnt.x }}"}"#).unwrap_err();
        assert!(
            err.contains("`evnt`") && err.contains("`recipent`") && err.contains("recipient"),
            "{err}"
        );
        // Loop and set variables, the context's names and MiniJinja's own functions are known.
        let body = render(
            r#"{% set who = recipient %}{% for f in failed %}{{ f.source }} {{ loop.index }}{% endfor %} {{ who }} {{ range(2) | list | length }} {{ event.nope }}"#,
        )
        .unwrap();
        assert_eq!(body, "Corp AD 1 Jane \"JD\" Doe 2 ");
    }

    #[test]
    fn slack_style_template_renders_valid_json_with_escaping() {
        let body = render(
            r#"{"text": {{ ("Provisioning " ~ outcome ~ " for " ~ recipient ~ " on " ~ sources|join(", ")) | tojson }}}"#,
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed["text"],
            "Provisioning failed for Jane \"JD\" Doe on Corp AD"
        );
    }

    #[test]
    fn numbers_of_the_event_render_as_numbers() {
        let (raw, _) = sample();
        let value: serde_json::Value = serde_json::from_str(
            r#"{"small": 7, "wide": 123456789012345678901234567890, "half": 0.5, "huge": 1e400}"#,
        )
        .unwrap();
        let delivery = delivery(&raw, &value);
        let body = BodyTemplate::compile(
            "{{ event.small + 1 }} {{ event.wide }} {{ event.half * 2 }} {{ event.wide | tojson }} \
             {{ event.huge }}",
        )
        .unwrap()
        .render(&delivery)
        .unwrap();
        assert_eq!(
            body,
            "8 123456789012345678901234567890 1.0 123456789012345678901234567890 1e+400"
        );
    }

    #[test]
    fn event_fields_derived_fields_and_json_escape() {
        let body = render(
            r#"{"t":"{{ event.trackingNumber }}","who":"{{ event.recipient.name | json_escape }}","n":{{ failed|length }},"ticket":"{{ failed[0].ticket_id }}","id":{{ event_id }},"missing":"{{ event.requester.name }}"}"#,
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["t"], "tn-1");
        assert_eq!(parsed["who"], "Jane \"JD\" Doe");
        assert_eq!(parsed["n"], 1);
        assert_eq!(parsed["ticket"], "T-9");
        assert_eq!(parsed["id"], 42);
        assert_eq!(parsed["missing"], "");
    }

    #[test]
    fn json_escape_renders_a_missing_member_or_null_as_nothing_and_other_values_as_text() {
        let body = render(
            r#"{"gone":"{{ event.accountRequests[0].noSuchMember | json_escape }}","deeper":"{{ event.nothing.here | json_escape }}","n":"{{ failed | length | json_escape }}","null":"{{ none | json_escape }}","yes":"{{ true | json_escape }}","list":"{{ [1, 'a'] | json_escape }}"}"#,
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["gone"], "");
        assert_eq!(parsed["deeper"], "");
        assert_eq!(parsed["n"], "1");
        assert_eq!(parsed["null"], "");
        assert_eq!(parsed["yes"], "true");
        assert_eq!(parsed["list"], r#"[1,"a"]"#);
    }

    /// Every template shown in docs/routes.md renders valid JSON for a failed event.
    #[test]
    fn the_documented_templates_render_valid_json() {
        let docs = include_str!("../../../../docs/routes.md");
        let mut found = 0;
        for block in docs.split("```jinja\n").skip(1) {
            let source = block.split("```").next().unwrap();
            let body = render(source).unwrap_or_else(|err| panic!("{err}\n{source}"));
            let parsed: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|err| panic!("not JSON ({err}):\n{body}"));
            assert!(parsed.is_object());
            assert!(
                body.contains("Corp AD") || body.contains("failed"),
                "{body}"
            );
            found += 1;
        }
        assert_eq!(found, 4);
    }

    /// The documented templates deliver the largest events ISC sends (a body of about 1 MB):
    /// the text is cut to what the chat services take, within the rendering's fuel.
    #[test]
    fn the_documented_templates_render_events_with_very_long_text() {
        let value = serde_json::json!({
            "trackingNumber": "tn-long",
            "sources": "AD",
            "recipient": {"type": "IDENTITY", "id": "i1", "name": "N".repeat(900_000)},
            "accountRequests": (0..50).map(|n| serde_json::json!({
                "source": {"id": "s1", "type": "SOURCE", "name": format!("Source {n} {}", "s".repeat(3_000))},
                "accountOperation": "Create",
                "provisioningResult": "FAILED",
                "provisioningTarget": "Corp AD",
                "accountId": "a".repeat(3_000),
            })).collect::<Vec<_>>(),
            "errors": (0..100).map(|n| format!("error {n} {}", "e".repeat(3_000))).collect::<Vec<_>>(),
            "_metadata": {"invocationId": "inv-long"},
        });
        let raw = serde_json::to_vec(&value).unwrap();
        let docs = include_str!("../../../../docs/routes.md");
        for block in docs.split("```jinja\n").skip(1) {
            let source = block.split("```").next().unwrap();
            let body = BodyTemplate::compile(source)
                .unwrap()
                .render(&delivery(&raw, &value))
                .unwrap_or_else(|err| panic!("{err}\n{source}"));
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(parsed.is_object());
            assert!(body.len() < 40_000, "{} bytes from\n{source}", body.len());
        }
        // A template that sends the whole event gets the fuel its size needs.
        let body = BodyTemplate::compile(
            r#"{"route": {{ route | tojson }}, "event": {{ event | tojson }}}"#,
        )
        .unwrap()
        .render(&delivery(&raw, &value))
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["event"], value);
    }

    /// The documented chat templates, given an event whose text holds chat markup: mentions
    /// that would page a channel and links, none of which may reach the message as markup.
    #[test]
    fn the_documented_templates_keep_an_events_markup_out_of_the_message() {
        let raw = br#"{"trackingNumber":"tn <!everyone>","sources":"AD","recipient":{"type":"IDENTITY","id":"i1","name":"Bob <!channel> <@U123> <https://evil.example|click> [link](https://evil.example) & co"},
          "accountRequests":[{"source":{"id":"s1","type":"SOURCE","name":"Src <!here> [x](https://evil.example)"},"accountOperation":"Create",
          "provisioningResult":"FAILED","provisioningTarget":"Corp AD","accountId":"<https://evil.example|login>"}],
          "errors":["err <!here> [y](https://evil.example)"],"_metadata":{"invocationId":"inv-1"}}"#
            .to_vec();
        let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let docs = include_str!("../../../../docs/routes.md");
        for block in docs.split("```jinja\n").skip(1) {
            let source = block.split("```").next().unwrap();
            let body = BodyTemplate::compile(source)
                .unwrap()
                .render(&delivery(&raw, &value))
                .unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
            // Every string of the message, as the chat service reads it.
            let mut texts = Vec::new();
            let mut stack = vec![&parsed];
            while let Some(value) = stack.pop() {
                match value {
                    serde_json::Value::String(text) => texts.push(text.as_str()),
                    serde_json::Value::Array(items) => stack.extend(items),
                    serde_json::Value::Object(members) => stack.extend(members.values()),
                    _ => {}
                }
            }
            // What each service reads as markup: Slack's mentions and links, Markdown's links.
            let markups: &[&str] = if source.contains("Card") {
                &["](https"]
            } else {
                &["<!", "<@", "<https"]
            };
            for text in texts {
                for markup in markups {
                    assert!(!text.contains(markup), "{markup} in {text:?} of\n{source}");
                }
            }
        }
    }

    #[test]
    fn a_key_given_twice_in_one_object_is_found_as_the_receiver_reads_keys() {
        for (json, repeated) in [
            (
                r#"{"text": "a", "channel": "x", "text": "b"}"#,
                Some("text"),
            ),
            (r#"{"a": {"b": 1, "b": 2}}"#, Some("b")),
            (r#"{"a": 1, "\u0061": 2}"#, Some("a")),
            (
                r#"{"a": [{"k": 1}, {"k": 2}], "b": {"k": "\"k\": 1"}}"#,
                None,
            ),
            (r#"[{"a": 1}, {"a": 1}]"#, None),
            (r#"{"a": "x\\", "b": 1}"#, None),
            // Half a UTF-16 pair as a key does not hide the key given twice after it.
            (
                r#"{"text": "x", "\ud800": 1, "text": "evil"}"#,
                Some("text"),
            ),
        ] {
            assert_eq!(repeated_key(json).as_deref(), repeated, "{json}");
        }
    }

    #[test]
    fn slack_and_markdown_escapes() {
        assert_eq!(
            render(r#"{{ "a <!channel> & <b|c>" | slack_escape }}"#).unwrap(),
            "a &lt;!channel&gt; &amp; &lt;b|c&gt;"
        );
        assert_eq!(
            render(r#"{{ "[x](https://e.example) **b**" | markdown_escape }}"#).unwrap(),
            "\\[x\\]\\(https://e\\.example\\) \\*\\*b\\*\\*"
        );
        // A member the event lacks is nothing, as with `json_escape`.
        assert_eq!(
            render("{{ event.nope | slack_escape | json_escape }}").unwrap(),
            ""
        );
    }

    #[test]
    fn syntax_errors_and_runaway_loops_are_errors() {
        assert!(BodyTemplate::compile("{{ unclosed").is_err());
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(err.contains("fuel") || err.contains("range"), "{err}");
    }

    #[test]
    fn references_in_template_code_are_found_and_those_in_text_are_not() {
        for code in [
            r#"{{ "${env:KEY}" }}"#,
            r#"{"k": "{{ '${file:/k}' ~ event_id }}"}"#,
            r#"{% if "${env:A}" %}x{% endif %}"#,
            r#"{{ "}}" ~ "${env:K}" }}"#,
            r#"{{ 'it\'s }}' ~ "${env:K}" }}"#,
            r#"{{ "$${env:A}" ~ "${env:K}" }}"#,
        ] {
            assert!(reference_in_code(code), "{code}");
        }
        for text in [
            r#"{"routing_key": "${env:KEY}", "id": {{ event_id }}}"#,
            r#"{# "${env:KEY}" #}{{ event_id }}"#,
            r#"${file:/k} {% if true %}yes{% endif %} ${env:B}"#,
            "no references {{ event_id }}",
            "{{ unterminated",
            "{",
            r#"{{ "$${env:LITERAL}" }}"#,
        ] {
            assert!(!reference_in_code(text), "{text}");
        }
    }
}
