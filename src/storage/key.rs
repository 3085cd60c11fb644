//! Ordering keys, key ranges and periods.
//!
//! Every item is ordered on one column. Internally its values become `i64` *ordering keys*:
//! nanoseconds since the epoch (UTC) for timestamp and date columns, the value itself for
//! integer columns. Ranges, manifests and statistics all compare keys, so a `timestamp[s,
//! Europe/Paris]` column and a `timestamp[ns, UTC]` one answer the same `[start, end)`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{Datelike, Months, TimeZone, Utc};

use super::error::{Error, Result};

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// The factor that turns a value of an ordering column of type `dt` into its key,
/// or `None` if `dt` cannot order an item.
pub fn key_scale(dt: &DataType) -> Option<i64> {
    match dt {
        DataType::Timestamp(unit, _) => Some(match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        }),
        DataType::Date32 => Some(NS_PER_DAY),
        DataType::Date64 => Some(1_000_000),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => Some(1),
        _ => None,
    }
}

/// The ordering keys of `array` (which must be free of nulls).
pub(crate) fn order_keys(column: &str, array: &dyn Array) -> Result<ScalarBuffer<i64>> {
    let err = |message: String| Error::OrderingColumn {
        column: column.to_string(),
        message,
    };
    let scale = key_scale(array.data_type()).ok_or_else(|| {
        err(format!(
            "type {} cannot order an item (use a timestamp, date or integer column)",
            array.data_type()
        ))
    })?;
    if array.null_count() > 0 {
        return Err(err(format!(
            "holds {} null value(s); every row needs an ordering value",
            array.null_count()
        )));
    }
    let values = if array.data_type() == &DataType::Int64 {
        array.as_primitive::<Int64Type>().values().clone()
    } else if let DataType::Timestamp(_, _) = array.data_type() {
        // Reinterpret: timestamps are i64 underneath.
        let data = array.to_data();
        ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len())
    } else {
        let as_i64 = cast(array, &DataType::Int64)?;
        as_i64.as_primitive::<Int64Type>().values().clone()
    };
    if scale == 1 {
        return Ok(values);
    }
    values
        .iter()
        .map(|v| {
            v.checked_mul(scale)
                .ok_or_else(|| err(format!("value {v} is outside the range of i64 nanoseconds")))
        })
        .collect::<Result<Vec<i64>>>()
        .map(ScalarBuffer::from)
}

/// Convert an array of statistics (same type as the ordering column, possibly with nulls)
/// into optional keys.
pub(crate) fn stat_keys(array: &ArrayRef) -> Vec<Option<i64>> {
    let scale = key_scale(array.data_type());
    let Some(scale) = scale else {
        return vec![None; array.len()];
    };
    let Ok(as_i64) = cast(array, &DataType::Int64) else {
        return vec![None; array.len()];
    };
    as_i64
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.and_then(|v| v.checked_mul(scale)))
        .collect()
}

/// A period: a fixed duration, or a number of calendar months (`M`, `Y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A fixed number of nanoseconds (`ns` .. `W`).
    Fixed(i64),
    /// A number of calendar months (`M`; `Y` is 12 months).
    Months(u32),
}

impl Period {
    /// Parse `"1min"`, `"30s"`, `"1D"`, `"2W"`, `"1M"`, `"1Y"` (a count and a unit).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "bad period {s:?}: expected a count and a unit (ns, us, ms, s, min, h, D, W, M, Y), e.g. \"1D\""
            ))
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (count, unit) = s.split_at(split);
        let count: i64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad())?
        };
        if count <= 0 {
            return Err(bad());
        }
        let fixed = |ns: i64| count.checked_mul(ns).map(Period::Fixed).ok_or_else(bad);
        match unit {
            "ns" => fixed(1),
            "us" => fixed(1_000),
            "ms" => fixed(1_000_000),
            "s" => fixed(1_000_000_000),
            "min" => fixed(60_000_000_000),
            "h" => fixed(3_600_000_000_000),
            "D" => fixed(NS_PER_DAY),
            "W" => fixed(7 * NS_PER_DAY),
            "M" => u32::try_from(count).map(Period::Months).map_err(|_| bad()),
            "Y" => u32::try_from(count)
                .ok()
                .and_then(|c| c.checked_mul(12))
                .map(Period::Months)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    /// `t + k * self`, in nanoseconds; `None` on overflow.
    pub fn add(&self, t: i64, k: i64) -> Option<i64> {
        match *self {
            Period::Fixed(ns) => k.checked_mul(ns).and_then(|d| t.checked_add(d)),
            Period::Months(m) => {
                let dt = Utc.timestamp_nanos(t);
                let months = k.checked_mul(i64::from(m))?;
                let shifted = if months >= 0 {
                    dt.checked_add_months(Months::new(u32::try_from(months).ok()?))?
                } else {
                    dt.checked_sub_months(Months::new(u32::try_from(-months).ok()?))?
                };
                shifted.timestamp_nanos_opt()
            }
        }
    }

    /// The slot `k` with `origin + k*self <= t < origin + (k+1)*self`.
    pub fn slot(&self, origin: i64, t: i64) -> i64 {
        match *self {
            Period::Fixed(ns) => (t as i128 - origin as i128).div_euclid(ns as i128) as i64,
            Period::Months(m) => {
                let (a, b) = (Utc.timestamp_nanos(origin), Utc.timestamp_nanos(t));
                let months =
                    (b.year() as i64 - a.year() as i64) * 12 + b.month() as i64 - a.month() as i64;
                let mut k = months.div_euclid(i64::from(m));
                // Calendar arithmetic: step back/forward until the slot brackets t.
                while self.add(origin, k).is_some_and(|s| s > t) {
                    k -= 1;
                }
                while self.add(origin, k + 1).is_some_and(|s| s <= t) {
                    k += 1;
                }
                k
            }
        }
    }

    /// The calendar-aligned bucket of `t` (slots counted from the epoch), used to cut row
    /// groups at period boundaries.
    pub fn bucket(&self, t: i64) -> i64 {
        self.slot(0, t)
    }
}

/// A half-open range of ordering keys `[start, end)`; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub start: Option<i64>,
    /// Exclusive upper bound.
    pub end: Option<i64>,
}

impl KeyRange {
    /// Everything.
    pub const ALL: KeyRange = KeyRange {
        start: None,
        end: None,
    };

    /// `[start, end)`.
    pub fn new(start: Option<i64>, end: Option<i64>) -> Self {
        Self { start, end }
    }

    /// True if some key in `[min, max]` is inside the range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min < e)
    }

    /// True if every key of `[min, max]` is inside the range.
    pub fn covers(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| min >= s) && self.end.is_none_or(|e| max < e)
    }

    /// The keys in both ranges.
    pub fn intersect(self, other: KeyRange) -> KeyRange {
        let start = match (self.start, other.start) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let end = match (self.end, other.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        KeyRange::new(start, end)
    }

    /// True if the range holds no key at all.
    pub fn is_empty(&self) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s >= e)
    }

    /// The rows of sorted `keys` inside the range, as `offset..end`.
    pub(crate) fn slice_of(&self, keys: &[i64]) -> std::ops::Range<usize> {
        let lo = self.start.map_or(0, |s| keys.partition_point(|&k| k < s));
        let hi = self
            .end
            .map_or(keys.len(), |e| keys.partition_point(|&k| k < e));
        lo..hi.max(lo)
    }
}

/// Format a key of a time column as RFC 3339 (for logs and messages).
pub(crate) fn format_time(ns: i64) -> String {
    Utc.timestamp_nanos(ns).to_rfc3339()
}

/// A shared clock, injectable in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in nanoseconds since the epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
    }
}

/// The default clock.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int32Array, TimestampSecondArray};

    #[test]
    fn keys_are_nanoseconds_for_times() {
        let a = TimestampSecondArray::from(vec![1, 2]).with_timezone("Europe/Paris");
        assert_eq!(
            order_keys("ts", &a).unwrap().to_vec(),
            vec![1_000_000_000, 2_000_000_000]
        );
        let d = Date32Array::from(vec![1]);
        assert_eq!(order_keys("d", &d).unwrap().to_vec(), vec![NS_PER_DAY]);
        let i = Int32Array::from(vec![-3]);
        assert_eq!(order_keys("i", &i).unwrap().to_vec(), vec![-3]);
        let n = Int32Array::from(vec![Some(1), None]);
        assert!(matches!(
            order_keys("i", &n),
            Err(Error::OrderingColumn { .. })
        ));
    }

    #[test]
    fn periods_parse_and_step() {
        assert_eq!(
            Period::parse("1min").unwrap(),
            Period::Fixed(60_000_000_000)
        );
        assert_eq!(Period::parse("1Y").unwrap(), Period::Months(12));
        assert!(Period::parse("0D").is_err());
        assert!(Period::parse("1 day").is_err());
        let day = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        let jan31 = day(2024, 1, 31).timestamp_nanos_opt().unwrap();
        let m = Period::Months(1);
        assert_eq!(
            format_time(m.add(jan31, 1).unwrap()),
            "2024-02-29T00:00:00+00:00"
        );
        let jan1 = day(2024, 1, 1).timestamp_nanos_opt().unwrap();
        let mar15 = jan1 + (31 + 29 + 14) * NS_PER_DAY + NS_PER_DAY / 2;
        assert_eq!(m.slot(jan1, mar15), 2);
        assert_eq!(m.slot(jan1, jan1 - 1), -1);
        assert_eq!(Period::Fixed(10).slot(5, 4), -1);
    }
}
