//! Times on the wire: ISO-8601 strings or integer nanoseconds since the epoch (UTC).
//!
//! A [`proto::Time`] keeps the form the caller wrote; [`proto::Time::to_nanos`] turns
//! either into the `i64` nanoseconds the server compares, with [`parse_time`] for the
//! strings. For an item ordered on an integer column the "time" is the integer itself.
//!
//! ```text
//! "2024-01-01"            ──┐
//! "2024-01-01T00:00:00Z"  ──┼── parse_time ──> 1704067200000000000 ── format_time ──> "2024-01-01T00:00:00+00:00"
//! 1704067200000000000     ──┘
//! ```

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::proto::{self, time};

/// Parse a time: ISO-8601 / RFC 3339 (a string without a zone means UTC; a date alone is
/// its midnight), or a plain integer string of nanoseconds since the epoch.
///
/// # Errors
///
/// [`Error::InvalidTime`] for any other string, [`Error::TimeOutOfRange`] for a time
/// outside 1677..2262 (what `i64` nanoseconds hold).
///
/// # Example
///
/// ```
/// use flightstore_client::time::parse_time;
/// assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
/// assert_eq!(parse_time("1970-01-01T01:00:01+01:00").unwrap(), 1_000_000_000);
/// assert_eq!(parse_time("42").unwrap(), 42);
/// ```
pub fn parse_time(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let to_ns = |dt: DateTime<Utc>| {
        dt.timestamp_nanos_opt()
            .ok_or_else(|| Error::TimeOutOfRange {
                input: s.to_string(),
            })
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return to_ns(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return to_ns(naive.and_utc());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return to_ns(dt.with_timezone(&Utc));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        // Midnight exists on every date (a NaiveDate has no zone, so no DST gap).
        return to_ns(
            date.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc(),
        );
    }
    Err(Error::InvalidTime {
        input: s.to_string(),
    })
}

/// Format nanoseconds since the epoch as RFC 3339 in UTC (for logs, messages and
/// display), e.g. `"2024-02-29T00:00:00+00:00"`; [`parse_time`] reads it back exactly.
pub fn format_time(ns: i64) -> String {
    Utc.timestamp_nanos(ns).to_rfc3339()
}

impl proto::Time {
    /// Nanoseconds since the epoch: integer nanoseconds as they are, an ISO-8601 string
    /// parsed with [`parse_time`].
    ///
    /// # Errors
    ///
    /// Those of [`parse_time`], and [`Error::EmptyTime`] if neither form is set.
    pub fn to_nanos(&self) -> Result<i64> {
        match &self.value {
            Some(time::Value::Nanos(ns)) => Ok(*ns),
            Some(time::Value::Iso(s)) => parse_time(s),
            None => Err(Error::EmptyTime),
        }
    }
}

impl From<i64> for proto::Time {
    /// The integer-nanoseconds form (what the server puts in the tickets it issues).
    fn from(ns: i64) -> Self {
        Self {
            value: Some(time::Value::Nanos(ns)),
        }
    }
}

impl From<&str> for proto::Time {
    /// The ISO-8601 form (`"2024-01-02"`, `"2024-01-02T09:30:00Z"`), parsed by the server.
    fn from(iso: &str) -> Self {
        Self {
            value: Some(time::Value::Iso(iso.into())),
        }
    }
}

impl From<String> for proto::Time {
    /// The ISO-8601 form, parsed by the server.
    fn from(iso: String) -> Self {
        Self {
            value: Some(time::Value::Iso(iso)),
        }
    }
}

/// An optional time field (`start`, `end`) in nanoseconds.
///
/// # Errors
///
/// Those of [`proto::Time::to_nanos`].
pub fn optional_time(t: Option<&proto::Time>) -> Result<Option<i64>> {
    t.map(proto::Time::to_nanos).transpose()
}

/// A required time field in nanoseconds; `field` names it in the error.
///
/// # Errors
///
/// [`Error::MissingTime`] if the field is absent (or holds neither form), else those of
/// [`parse_time`].
pub fn required_time(t: Option<&proto::Time>, field: &'static str) -> Result<i64> {
    match t {
        Some(t) if t.value.is_some() => t.to_nanos(),
        _ => Err(Error::MissingTime { field }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS_PER_DAY: i64 = 86_400_000_000_000;

    #[test]
    fn times_parse_in_utc() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:01").unwrap(), 1_000_000_000);
        assert_eq!(
            parse_time("1970-01-01T01:00:01+01:00").unwrap(),
            1_000_000_000
        );
        assert_eq!(parse_time("1970-01-02").unwrap(), NS_PER_DAY);
        assert_eq!(parse_time("42").unwrap(), 42);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn other_accepted_forms() {
        let second = 1_000_000_000;
        assert_eq!(
            parse_time(" 1970-01-01 00:00:01.5 ").unwrap(),
            3 * second / 2
        );
        assert_eq!(parse_time("1970-01-01T00:01").unwrap(), 60 * second);
        assert_eq!(parse_time("1970-01-01 01:00:01+0100").unwrap(), second);
        assert_eq!(parse_time("-5").unwrap(), -5);
    }

    #[test]
    fn bad_and_out_of_range_times_are_told_apart() {
        assert!(matches!(
            parse_time(" yesterday "),
            Err(Error::InvalidTime { input }) if input == "yesterday"
        ));
        assert!(matches!(
            parse_time("3000-01-01"),
            Err(Error::TimeOutOfRange { input }) if input == "3000-01-01"
        ));
    }

    #[test]
    fn formatted_times_parse_back() {
        for ns in [0, 1, -1, 1_704_067_200_123_456_789, i64::MIN, i64::MAX] {
            assert_eq!(parse_time(&format_time(ns)).unwrap(), ns, "{ns}");
        }
        assert_eq!(format_time(NS_PER_DAY), "1970-01-02T00:00:00+00:00");
    }

    #[test]
    fn time_messages_convert_to_nanoseconds() {
        let iso = proto::Time {
            value: Some(time::Value::Iso("1970-01-02".into())),
        };
        assert_eq!(iso.to_nanos().unwrap(), NS_PER_DAY);
        assert_eq!(proto::Time::from(7).to_nanos().unwrap(), 7);
        assert!(matches!(
            proto::Time::default().to_nanos(),
            Err(Error::EmptyTime)
        ));

        assert_eq!(optional_time(None).unwrap(), None);
        assert_eq!(optional_time(Some(&iso)).unwrap(), Some(NS_PER_DAY));
        assert_eq!(required_time(Some(&iso), "start").unwrap(), NS_PER_DAY);
        for absent in [None, Some(&proto::Time::default())] {
            assert!(matches!(
                required_time(absent, "start"),
                Err(Error::MissingTime { field: "start" })
            ));
        }
    }
}
