//! Market-data presets (dccd's `ParquetStore`): the schema, key, checks and legacy column
//! map of OHLC bars, trades and order books.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::Validation;
use crate::storage::error::{Error, Result};

/// The ordering column of every preset.
pub(super) const ORDERED_ON: &str = "ts";

/// A market-data preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Bars: open, high, low, close, volume, quote_volume, trades.
    Ohlc,
    /// Trades: price, amount, side, trade_id.
    Trades,
    /// Order book levels: side, price, amount, count, is_snapshot.
    Orderbook,
}

impl Preset {
    /// Parse a preset name.
    pub fn parse(name: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            Error::invalid(format!(
                "unknown preset {name:?}: use ohlc, trades or orderbook"
            ))
        })
    }

    /// The preset's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ohlc => "ohlc",
            Self::Trades => "trades",
            Self::Orderbook => "orderbook",
        }
    }

    /// The schema: `ts` timestamp[ns, UTC] (not null), then the preset's columns
    /// (nullable: a missing one is filled with nulls).
    pub fn schema(&self) -> SchemaRef {
        use DataType::{Boolean, Float64, Int64, Utf8};
        let columns: &[(&str, DataType)] = match self {
            Self::Ohlc => &[
                ("open", Float64),
                ("high", Float64),
                ("low", Float64),
                ("close", Float64),
                ("volume", Float64),
                ("quote_volume", Float64),
                ("trades", Int64),
            ],
            Self::Trades => &[
                ("price", Float64),
                ("amount", Float64),
                ("side", Utf8),
                ("trade_id", Utf8),
            ],
            Self::Orderbook => &[
                ("side", Utf8),
                ("price", Float64),
                ("amount", Float64),
                ("count", Int64),
                ("is_snapshot", Boolean),
            ],
        };
        let ts = Field::new(ORDERED_ON, timestamp_ns_utc(), false);
        let fields = std::iter::once(ts)
            .chain(columns.iter().map(|(n, t)| Field::new(*n, t.clone(), true)))
            .collect::<Vec<_>>();
        Arc::new(Schema::new(fields))
    }

    /// The de-duplication key (keep last).
    pub fn dedup_on(&self) -> Vec<String> {
        let key: &[&str] = match self {
            Self::Ohlc => &["ts"],
            Self::Trades => &["ts", "trade_id"],
            Self::Orderbook => &["ts", "side", "price"],
        };
        key.iter().map(|s| s.to_string()).collect()
    }

    /// The checks.
    pub(super) fn validation(&self) -> Validation {
        let checks = match self {
            Self::Ohlc => vec!["low <= high".to_string()],
            Self::Trades | Self::Orderbook => Vec::new(),
        };
        Validation {
            checks,
            ..Validation::default()
        }
    }

    /// dccd's legacy (v2) column names.
    pub(super) fn rename(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::from([("TS".to_string(), ORDERED_ON.to_string())]);
        if *self == Self::Ohlc {
            map.insert("quoteVolume".into(), "quote_volume".into());
        }
        map
    }

    /// dccd's legacy (v2) columns that are not kept.
    pub(super) fn drop(&self) -> Vec<String> {
        match self {
            Self::Ohlc => vec!["weightedAverage".into()],
            Self::Trades | Self::Orderbook => Vec::new(),
        }
    }

    /// `fields` (renamed, filled) as `target` (the preset's schema or the stored item's):
    /// every column must be one of the target's, of its type or one converted without
    /// loss of meaning: any timestamp or int64 nanoseconds to the timestamp, any string
    /// type to a string.
    pub(super) fn conform(&self, fields: &[Field], target: &SchemaRef) -> Result<SchemaRef> {
        for f in fields {
            let Ok(want) = target.field_with_name(f.name()) else {
                return Err(Error::invalid(format!(
                    "column {:?} is not in the schema of preset {} ({}): drop or rename it",
                    f.name(),
                    self.name(),
                    names(target)
                )));
            };
            if !converts(f.data_type(), want.data_type()) {
                return Err(Error::invalid(format!(
                    "column {:?} has type {}, but preset {} stores it as {}",
                    f.name(),
                    f.data_type(),
                    self.name(),
                    want.data_type()
                )));
            }
        }
        Ok(Arc::clone(target))
    }
}

fn timestamp_ns_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn names(schema: &SchemaRef) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}

/// Whether a column of type `from` is stored as `to` by a preset.
fn converts(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(
            (from, to),
            (Timestamp(..) | Int64, Timestamp(..)) | (Utf8 | LargeUtf8 | Utf8View, Utf8)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_by_name_and_key_on_ts() {
        for p in [Preset::Ohlc, Preset::Trades, Preset::Orderbook] {
            assert_eq!(Preset::parse(p.name()).unwrap(), p);
            assert_eq!(p.dedup_on()[0], ORDERED_ON);
            let schema = p.schema();
            assert!(!schema.field(0).is_nullable());
            for k in p.dedup_on() {
                assert!(schema.field_with_name(&k).is_ok(), "{k}");
            }
        }
        assert!(Preset::parse("ohlcv").is_err());
    }
}
