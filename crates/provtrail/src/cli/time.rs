//! Reading times given on the command line: RFC 3339, a date, or a span back from now.

use chrono::{DateTime, Utc};

/// Milliseconds since the epoch for `2026-11-01T10:00:00Z`, `2026-11-01` (midnight UTC), or a span
/// back from now such as `24h`, `7d` or `90m`: the forms the read API takes, read by the same
/// function.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    provtrail::server::api::params::parse_time(text).map_err(anyhow::Error::msg)
}

/// RFC 3339 text for milliseconds since the epoch.
pub fn format_time(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("2026-11-01").unwrap(), 1_793_491_200_000);
        assert_eq!(
            parse_time("2026-11-01T00:00:00Z").unwrap(),
            1_793_491_200_000
        );
        let day_ago = parse_time("24h").unwrap();
        let now = Utc::now().timestamp_millis();
        assert!((now - day_ago - 86_400_000).abs() < 5_000);
        assert!(parse_time("yesterday-ish").is_err());
        // Finer than a millisecond: rounded up to the next one, so that a receipt at .015 is
        // before a bound at .015999 (and not at or after it).
        assert_eq!(
            parse_time("2026-11-01T00:00:00.015999Z").unwrap(),
            1_793_491_200_016
        );
        assert_eq!(
            parse_time("2026-11-01T00:00:00.015Z").unwrap(),
            1_793_491_200_015
        );
        assert_eq!(
            parse_time("1969-12-31T23:59:59.9995Z").unwrap(),
            0,
            "before the epoch too"
        );
        assert_eq!(
            parse_time("9999-12-31T23:59:59.9999Z").unwrap(),
            253_402_300_799_999,
            "the last writable millisecond has no next"
        );
        assert_eq!(format_time(1_793_491_200_000), "2026-11-01T00:00:00.000Z");
    }
}
