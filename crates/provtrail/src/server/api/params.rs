//! Query parameters: what each endpoint accepts (documented once, with `IntoParams`, and checked
//! against that same list), and how values are read, with an error that names the parameter and
//! says what is accepted.
//!
//! Parameters are parsed by hand rather than with serde so that every failure has that message,
//! a parameter given twice or one that does not exist is refused instead of silently ignored, and
//! an empty text, time or cursor (`?source=`, as an HTML form sends it) is the same as leaving it
//! out. An empty number or choice is refused: the document types them, and `""` is neither.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use crate::store::Millis;

/// Longest value of a text parameter.
pub const MAX_TEXT: usize = 1_000;
/// Longest filter.
pub const MAX_FILTER: usize = 10_000;
/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 1_000;

/// What a time parameter accepts, for error messages and documentation.
pub const TIME_FORMS: &str = "RFC 3339 (2026-11-01T10:00:00Z), a date (2026-11-01, midnight UTC), or a span back from now \
     (90m, 24h, 7d)";

/// Reads a time: RFC 3339, a date (midnight UTC), or a span back from `now` (`24h`, `7d`, `90m`).
pub fn parse_time_at(text: &str, now: Millis) -> Result<Millis, String> {
    let text = text.trim();
    let time = parse_any_time(text, now)
        .ok_or_else(|| format!("{text:?} is not a time: use {TIME_FORMS}"))?;
    // Times are answered in RFC 3339, which has four-digit years: one outside them (a span of
    // millions of years) could not be written back, nor bucketed.
    if !(EARLIEST_TIME..=LATEST_TIME).contains(&time) {
        return Err(format!(
            "{text:?} is outside the years 0000 to 9999: use {TIME_FORMS}"
        ));
    }
    Ok(time)
}

use crate::store::{EARLIEST_TIME, LATEST_TIME};

fn parse_any_time(text: &str, now: Millis) -> Option<Millis> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        // Receipts are kept to the millisecond, and a bound finer than that is rounded up: the
        // receipts at or after it (`since`), and those before it (`until`), are exactly those
        // at or after, or before, the next whole millisecond. Rounding down would take in an
        // event received just before a `since` and leave out one received just before an `until`.
        // (In the last millisecond that can be written, there is no next one to round to.)
        let millis = time.timestamp_millis();
        let finer = time.timestamp_subsec_nanos() % 1_000_000 != 0 && millis < LATEST_TIME;
        return Some(millis + i64::from(finer));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Some(midnight.and_utc().timestamp_millis());
        }
    }
    // humantime reads spans like "1h30m" but also bare numbers' errors; only a span that starts
    // with a digit is taken, so that "now-ish" text gets the general message.
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        if let Ok(span) = humantime::parse_duration(text) {
            let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
            return Some(now.saturating_sub(span));
        }
    }
    None
}

/// [`parse_time_at`] from the current time.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    parse_time_at(text, Utc::now().timestamp_millis())
}

/// What a cursor points into; a cursor of one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// `GET /events`.
    Events,
    /// `GET /deliveries`.
    Deliveries,
    /// `GET /quarantine`.
    Quarantine,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Events => "ev",
            CursorKind::Deliveries => "dl",
            CursorKind::Quarantine => "qr",
        }
    }
}

/// The opaque cursor that continues a list below `id`.
pub fn encode_cursor(kind: CursorKind, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.tag()))
}

/// The id a cursor continues below, when it is one this API issued for `kind`.
pub fn decode_cursor(kind: CursorKind, cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (tag, digits) = text.split_once(':')?;
    let id: i64 = digits.parse().ok()?;
    // Only the exact form issued: no sign, no leading zeros.
    (tag == kind.tag() && id > 0 && id.to_string() == digits).then_some(id)
}

/// An account request's `provisioningResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ResultValue {
    /// `SUCCESS`.
    Success,
    /// `PENDING`.
    Pending,
    /// `FAILED`.
    Failed,
}

/// A delivery's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOutcome {
    /// Kept as a new event.
    Accepted,
    /// An event kept before.
    Duplicate,
    /// Kept in quarantine.
    Quarantined,
    /// Refused; nothing kept.
    Rejected,
}

/// Why a document is in quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReasonValue {
    /// JSON, but not a valid event.
    InvalidEvent,
    /// Not JSON, or not UTF-8.
    NotJson,
    /// A content type that is not JSON, or a content encoding that is not decoded.
    UnsupportedMediaType,
    /// Posted to a channel whose name is not allowed.
    BadChannel,
}

/// Size of the time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketValue {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

/// Parameters of `GET /api/v1/events`. Every filter given must hold. Empty texts and times are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// `trackingNumber`: the whole value, ignoring case and surrounding spaces (as every value
    /// filter here).
    #[param(max_length = 1000)]
    pub tracking_number: Option<String>,
    /// `_metadata.invocationId`.
    #[param(max_length = 1000)]
    pub invocation_id: Option<String>,
    /// The recipient or the requester, by id or by name (case does not matter).
    #[param(max_length = 1000)]
    pub identity: Option<String>,
    /// A source of an account request, by id or by name. With `result`, the same account request
    /// has both.
    #[param(max_length = 1000)]
    pub source: Option<String>,
    /// An account request's `accountId`.
    #[param(max_length = 1000)]
    pub account_id: Option<String>,
    /// An account request's `ticketId`.
    #[param(max_length = 1000)]
    pub ticket_id: Option<String>,
    /// An account request's `accountOperation` (e.g. `Create`, `Modify`, `Disable`).
    #[param(max_length = 1000)]
    pub operation: Option<String>,
    /// Events with at least one account request with this `provisioningResult`, as the schema
    /// spells it (an unknown `success` sent by ISC is not `SUCCESS`).
    #[param(inline)]
    pub result: Option<ResultValue>,
    /// The event's `action`.
    #[param(max_length = 1000)]
    pub action: Option<String>,
    /// The channel the event was posted to.
    #[param(max_length = 1000)]
    pub channel: Option<String>,
    /// Words that must all appear in the event's errors, warnings, names, account ids or
    /// attribute values (case does not matter); a trailing `*` matches a prefix.
    #[param(max_length = 1000)]
    pub q: Option<String>,
    /// Received at or after: RFC 3339, a date (midnight UTC), or a span back from now (`24h`).
    #[param(max_length = 100)]
    pub since: Option<String>,
    /// Received before: RFC 3339, a date (midnight UTC), or a span back from now (`1h`).
    #[param(max_length = 100)]
    pub until: Option<String>,
    /// A Jayway JsonPath filter, evaluated on each candidate event as ISC evaluates a
    /// subscription filter, e.g. `$[?($.accountRequests[*].provisioningResult contains 'FAILED')]`.
    /// A filtered search reads at most a budget of candidates per request: when it runs out
    /// the answer has `complete: false` and a cursor to continue.
    #[param(max_length = 10000)]
    pub filter: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 100)]
    pub cursor: Option<String>,
    /// Most events to return (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<i64>,
}

/// Parameters of `GET /api/v1/stats`. Empty texts and times are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// From (rounded down to the hour): RFC 3339, a date, or a span back from now. Default:
    /// 30 days before `until`.
    #[param(max_length = 100)]
    pub since: Option<String>,
    /// Until (rounded up to the hour): RFC 3339, a date, or a span back from now. Default: now.
    #[param(max_length = 100)]
    pub until: Option<String>,
    /// Size of the time buckets of the series (default `day`). At most 20000 buckets.
    #[param(inline)]
    pub bucket: Option<BucketValue>,
    /// Only this source's account requests (by name; case does not matter). Event counts and
    /// top errors are not narrowed by source.
    #[param(max_length = 1000)]
    pub source: Option<String>,
    /// Only events posted to this channel.
    #[param(max_length = 1000)]
    pub channel: Option<String>,
    /// How many of the most frequent error messages (0 to 100; default 10).
    #[param(minimum = 0, maximum = 100, default = 10)]
    pub top: Option<i64>,
    /// Break each time bucket down by source too (default false).
    pub by_source: Option<bool>,
}

/// Parameters of `GET /api/v1/deliveries`. Empty texts and times are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// Received at or after: RFC 3339, a date, or a span back from now.
    #[param(max_length = 100)]
    pub since: Option<String>,
    /// Received before: RFC 3339, a date, or a span back from now.
    #[param(max_length = 100)]
    pub until: Option<String>,
    /// Only requests with this outcome.
    #[param(inline)]
    pub outcome: Option<DeliveryOutcome>,
    /// Only requests answered with this HTTP status.
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<i64>,
    /// Only requests posted to this channel.
    #[param(max_length = 1000)]
    pub channel: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 100)]
    pub cursor: Option<String>,
    /// Most records to return (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<i64>,
}

/// Parameters of `GET /api/v1/quarantine`. Empty texts and times are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineParams {
    /// Received at or after: RFC 3339, a date, or a span back from now.
    #[param(max_length = 100)]
    pub since: Option<String>,
    /// Received before: RFC 3339, a date, or a span back from now.
    #[param(max_length = 100)]
    pub until: Option<String>,
    /// Only entries kept for this reason.
    #[param(inline)]
    pub reason: Option<QuarantineReasonValue>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 100)]
    pub cursor: Option<String>,
    /// Most entries to return (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<i64>,
}

/// Parameters of `GET /api/v1/route-deliveries`. Empty texts are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteDeliveriesParams {
    /// Only this route's deliveries.
    #[param(max_length = 1000)]
    pub route: Option<String>,
    /// Only deliveries in this state.
    #[param(inline)]
    pub state: Option<super::routes::DeliveryStateValue>,
    /// Only deliveries of this event.
    #[param(minimum = 1)]
    pub event_id: Option<i64>,
    /// The `next_cursor` of the previous page: deliveries with a lower id.
    #[param(minimum = 1)]
    pub before_id: Option<i64>,
    /// Most deliveries to return (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<i64>,
}

/// Parameters of `GET /api/v1/deadletters`. Empty texts are ignored.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersParams {
    /// Only this route's dead letters.
    #[param(max_length = 1000)]
    pub route: Option<String>,
    /// Only dead letters of this event.
    #[param(minimum = 1)]
    pub event_id: Option<i64>,
    /// The `next_cursor` of the previous page: dead letters with a lower id.
    #[param(minimum = 1)]
    pub before_id: Option<i64>,
    /// Most dead letters to return (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<i64>,
}

/// Parameters of `GET /api/v1/routes/{name}/test`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteTestParams {
    /// The stored event to test the route on.
    #[param(minimum = 1)]
    pub event_id: i64,
}

/// The names of an endpoint's documented parameters.
fn names<P: IntoParams>() -> Vec<String> {
    P::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|parameter| parameter.name)
        .collect()
}

macro_rules! accepted {
    ($name:ident, $params:ty) => {
        /// The parameter names this endpoint accepts: exactly those it documents.
        pub fn $name() -> &'static [String] {
            static NAMES: OnceLock<Vec<String>> = OnceLock::new();
            NAMES.get_or_init(names::<$params>)
        }
    };
}

accepted!(events_accepted, EventsParams);
accepted!(stats_accepted, StatsParams);
accepted!(deliveries_accepted, DeliveriesParams);
accepted!(quarantine_accepted, QuarantineParams);
accepted!(route_deliveries_accepted, RouteDeliveriesParams);
accepted!(dead_letters_accepted, DeadLettersParams);
accepted!(route_test_accepted, RouteTestParams);

/// The query parameters of one request, checked against what the endpoint accepts.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
    /// The time the request's relative times (`24h`) count back from: one for all of them, so
    /// that `since=500us` and the `until` of now make the same range at every request.
    now: Millis,
}

impl Params {
    /// Takes the decoded `(name, value)` pairs of a query string. Refuses unknown names and
    /// names given more than once.
    pub fn parse(pairs: Vec<(String, String)>, accepted: &[String]) -> Result<Params, ApiError> {
        let mut values = BTreeMap::new();
        let mut seen = Vec::new();
        for (name, value) in pairs {
            if !accepted.contains(&name) {
                return Err(ApiError::unknown(&name, accepted));
            }
            if seen.contains(&name) {
                return Err(ApiError::invalid(
                    &name,
                    format!("`{name}` is given more than once; give it at most once"),
                ));
            }
            seen.push(name.clone());
            values.insert(name, value);
        }
        Ok(Params {
            values,
            now: Utc::now().timestamp_millis(),
        })
    }

    /// A text value of at most [`MAX_TEXT`] characters.
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.text_up_to(name, MAX_TEXT)
    }

    /// A text value of at most `max` characters; a blank one is none.
    pub fn text_up_to(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) if value.chars().count() > max => Err(ApiError::invalid(
                name,
                format!("`{name}` is longer than {max} characters"),
            )),
            Some(value) if value.contains('\0') => Err(ApiError::invalid(
                name,
                format!("`{name}` contains a NUL character"),
            )),
            Some(value) if value.trim().is_empty() => Ok(None),
            Some(value) => Ok(Some(value.clone())),
        }
    }

    /// A time ([`TIME_FORMS`]); a blank one is none.
    pub fn time(&self, name: &str) -> Result<Option<Millis>, ApiError> {
        match self.text_up_to(name, 100)? {
            None => Ok(None),
            Some(value) => parse_time_at(&value, self.now)
                .map(Some)
                .map_err(|message| ApiError::invalid(name, format!("`{name}`: {message}"))),
        }
    }

    /// An integer in `min..=max`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) => match value.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::invalid(
                    name,
                    format!("`{name}` must be an integer from {min} to {max}, not {value:?}"),
                )),
            },
        }
    }

    /// `true` or `false` (also `1`/`0`).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.values.get(name).map(|value| value.trim()) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(value) => Err(ApiError::invalid(
                name,
                format!("`{name}` must be true or false, not {value:?}"),
            )),
        }
    }

    /// One of `choices` (case does not matter), as written in `choices`.
    pub fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) => choices
                .iter()
                .find(|choice| choice.eq_ignore_ascii_case(value.trim()))
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        format!(
                            "`{name}` must be one of {}, not {value:?}",
                            choices.join(", ")
                        ),
                    )
                }),
        }
    }

    /// A cursor this API issued for `kind`; a blank one is none.
    pub fn cursor(&self, kind: CursorKind) -> Result<Option<i64>, ApiError> {
        match self.text_up_to("cursor", 100)? {
            None => Ok(None),
            Some(value) => decode_cursor(kind, &value).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    "cursor",
                    "`cursor` is not one this endpoint issued: pass the `next_cursor` of the \
                     previous page unchanged",
                )
            }),
        }
    }

    /// The page size: [`DEFAULT_LIMIT`] when absent, at most [`MAX_LIMIT`].
    pub fn limit(&self) -> Result<usize, ApiError> {
        Ok(self
            .integer("limit", 1, MAX_LIMIT)?
            .unwrap_or(DEFAULT_LIMIT)
            .unsigned_abs() as usize)
    }

    /// The time the request's relative times count back from.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// `since` and `until`, checked to be in order.
    pub fn range(&self) -> Result<(Option<Millis>, Option<Millis>), ApiError> {
        let since = self.time("since")?;
        let until = self.time("until")?;
        if let (Some(since), Some(until)) = (since, until) {
            if since >= until {
                return Err(ApiError::invalid(
                    "until",
                    "`until` must be later than `since`",
                ));
            }
        }
        Ok((since, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time_at("2026-11-01", now), Ok(1_793_491_200_000));
        assert_eq!(
            parse_time_at("2026-11-01T01:00:00+01:00", now),
            Ok(1_793_491_200_000)
        );
        assert_eq!(parse_time_at("24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_time_at("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_time_at("1h 30m", now), Ok(now - 5_400_000));
        for bad in [
            "yesterday",
            "",
            "2026-13-01",
            "h",
            "-5h",
            "2026-11-01T10:00",
        ] {
            let err = parse_time_at(bad, now).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad:?}: {err}");
        }
        // Times that RFC 3339 cannot write back are refused, not wrapped or saturated.
        for far in ["5000000000y", "9223372036854775807s", "2000000y"] {
            let err = parse_time_at(far, now).unwrap_err();
            assert!(err.contains("0000 to 9999"), "{far:?}: {err}");
        }
        assert!(parse_time_at("10000-01-01", now).is_err());
        assert_eq!(
            parse_time_at("0000-01-01T00:00:00Z", now),
            Ok(EARLIEST_TIME)
        );
        assert!(parse_time_at("1900-01-01", now).is_ok());
    }

    #[test]
    fn cursors_round_trip_and_belong_to_one_list() {
        let cursor = encode_cursor(CursorKind::Events, 1234);
        assert_eq!(decode_cursor(CursorKind::Events, &cursor), Some(1234));
        assert_eq!(decode_cursor(CursorKind::Deliveries, &cursor), None);
        for bad in ["", "1234", "!!", &URL_SAFE_NO_PAD.encode("ev:-1")] {
            assert_eq!(decode_cursor(CursorKind::Events, bad), None, "{bad:?}");
        }
        assert_eq!(
            decode_cursor(CursorKind::Events, &URL_SAFE_NO_PAD.encode("ev:+5")),
            None
        );
    }

    #[test]
    fn unknown_repeated_and_empty_parameters() {
        let accepted = events_accepted();
        assert!(accepted.iter().any(|n| n == "tracking_number"));
        assert!(accepted.iter().any(|n| n == "limit"));
        let err = Params::parse(pairs(&[("tracking", "x")]), accepted).unwrap_err();
        assert_eq!((err.status, err.code), (400, "unknown_parameter"));
        assert!(err.message.contains("tracking_number"), "{}", err.message);
        let err = Params::parse(pairs(&[("q", "a"), ("q", "b")]), accepted).unwrap_err();
        assert_eq!(err.parameter.as_deref(), Some("q"));
        let params = Params::parse(
            pairs(&[
                ("source", " "),
                ("since", ""),
                ("cursor", ""),
                ("limit", ""),
            ]),
            accepted,
        )
        .unwrap();
        assert_eq!(params.text("source").unwrap(), None);
        assert_eq!(params.time("since").unwrap(), None);
        assert_eq!(params.cursor(CursorKind::Events).unwrap(), None);
        assert!(params.limit().is_err(), "an empty number is not a number");
        let long = " ".repeat(MAX_TEXT + 1);
        let params = Params::parse(pairs(&[("channel", &long)]), accepted).unwrap();
        assert!(
            params.text("channel").is_err(),
            "blank, but too long all the same"
        );
    }

    #[test]
    fn values_are_checked_with_messages_that_name_the_parameter() {
        let params = Params::parse(
            pairs(&[("limit", "0"), ("since", "soon"), ("result", "failed")]),
            events_accepted(),
        )
        .unwrap();
        let err = params.limit().unwrap_err();
        assert!(err.message.contains("from 1 to 1000"), "{}", err.message);
        let err = params.time("since").unwrap_err();
        assert_eq!(err.parameter.as_deref(), Some("since"));
        assert_eq!(
            params.choice("result", &["SUCCESS", "PENDING", "FAILED"]),
            Ok(Some("FAILED"))
        );
    }
}
