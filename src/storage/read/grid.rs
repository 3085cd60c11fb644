//! Dense grid reads (holcstore's dense series): exactly one row per slot
//! `start + k*freq` of `[start, end)`, holding the row stored at that instant (the last of
//! several), or nulls / the previous slot's values where none is stored.
//!
//! The read streams: the rows of `[start, end)` (and, for `previous`, the one row before
//! `start`) are walked once beside the slots; each output batch picks its values with
//! `interleave` from at most four sources (a row of nulls, the value carried from the
//! previous input batch, the slot's row carried likewise, the current input batch), so
//! memory stays one input batch plus one output batch, however long the grid.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, PrimitiveArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
use arrow::compute::interleave;
use arrow::datatypes::{
    ArrowTimestampType, DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use futures::stream;
use futures::{StreamExt, TryStreamExt};

use super::{ReadPlan, ReadStream};
use crate::storage::error::{Error, Result};
use crate::storage::key::{key_scale, order_keys, Period};
use crate::storage::Engine;

/// Slots per output batch.
const GRID_BATCH_SLOTS: usize = 64 * 1024;

/// Most slots one grid read may have.
pub const MAX_GRID_SLOTS: u64 = 1_000_000_000;

/// What an empty slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Nulls (the ordering column holds the slot's time).
    Null,
    /// The previous slot's values; before the first slot, the last row before `start`.
    Previous,
}

impl Fill {
    /// Parse `"null"` or `"previous"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "null" => Ok(Self::Null),
            "previous" => Ok(Self::Previous),
            other => Err(Error::invalid(format!(
                "unknown grid fill {other:?}: use \"null\" or \"previous\""
            ))),
        }
    }
}

/// A dense grid over a read's `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Slot width.
    pub freq: Period,
    /// What an empty slot holds.
    pub fill: Fill,
}

/// The slots of a grid: `start + k*freq` before `end`.
#[derive(Debug, Clone, Copy)]
struct Slots {
    start: i64,
    end: i64,
    freq: Period,
}

impl Slots {
    /// Slot `k`'s time, or `None` past the end.
    #[inline]
    fn at(&self, k: i64) -> Option<i64> {
        let t = match self.freq {
            Period::Fixed(ns) => k.checked_mul(ns).and_then(|d| self.start.checked_add(d)),
            Period::Months(_) => self.freq.add(self.start, k),
        };
        t.filter(|&t| t < self.end)
    }

    /// How many slots there are.
    fn count(&self) -> u64 {
        let last = self.freq.slot(self.start, self.end - 1);
        (last + 1).max(0) as u64
    }
}

impl ReadPlan {
    /// The slots of `grid` over this plan's range, checked: `start` and `end` given, no
    /// `n_prev`, `limit` or `last`, a timestamp ordering column whose unit holds every
    /// slot, at most [`MAX_GRID_SLOTS`].
    pub fn grid_slots(&self, grid: &Grid) -> Result<u64> {
        self.slots(grid).map(|(slots, _)| slots.count())
    }

    /// The schema of a grid read: the plan's, every column but the ordering one nullable
    /// (an empty slot holds nulls).
    pub fn grid_schema(&self) -> SchemaRef {
        let on = self.ordered_on();
        let fields: Vec<Field> = self
            .schema()
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_nullable(f.is_nullable() || f.name() != on)
            })
            .collect();
        Arc::new(Schema::new_with_metadata(
            fields,
            self.schema().metadata().clone(),
        ))
    }

    fn slots(&self, grid: &Grid) -> Result<(Slots, i64)> {
        let o = self.options();
        let (Some(start), Some(end)) = (o.range.start, o.range.end) else {
            return Err(Error::invalid("a grid read needs both start and end"));
        };
        if start >= end {
            return Err(Error::invalid("a grid read needs start < end"));
        }
        if o.n_prev > 0 || o.limit.is_some() || o.last.is_some() {
            return Err(Error::invalid(
                "a grid read takes no n_prev, limit or last: narrow start and end instead",
            ));
        }
        let on = self.ordered_on();
        let field = self.item_schema().field_with_name(on)?;
        let scale = match field.data_type() {
            DataType::Timestamp(..) => key_scale(field.data_type()).unwrap_or(1),
            other => {
                return Err(Error::invalid(format!(
                    "a grid read needs a timestamp ordering column; {on:?} is {other}"
                )))
            }
        };
        let whole_units = |t: i64| t % scale == 0;
        let step_fits = match grid.freq {
            Period::Fixed(ns) => whole_units(ns),
            Period::Months(_) => true,
        };
        if !whole_units(start) || !step_fits {
            return Err(Error::invalid(format!(
                "the grid's slots do not fall on whole units of {on:?} ({})",
                field.data_type()
            )));
        }
        let slots = Slots {
            start,
            end,
            freq: grid.freq,
        };
        let count = slots.count();
        if count > MAX_GRID_SLOTS {
            return Err(Error::invalid(format!(
                "the grid has {count} slots, more than {MAX_GRID_SLOTS}: use a wider freq or a shorter range"
            )));
        }
        Ok((slots, scale))
    }
}

impl Engine {
    /// Run `plan` as a dense `grid` (see the module docs); batches in the plan's schema.
    pub async fn execute_grid(&self, plan: &ReadPlan, grid: Grid) -> Result<ReadStream> {
        let (slots, scale) = plan.slots(&grid)?;
        let out_schema = plan.grid_schema();
        let on = plan.ordered_on().to_string();
        // Read the ordering column (first) and the output columns, plus the row before
        // `start` that `previous` carries into the first slot.
        let mut columns = vec![on.clone()];
        columns.extend(
            out_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| *n != on),
        );
        let mut inner = plan.clone().with_columns(columns)?;
        if grid.fill == Fill::Previous {
            inner = inner.with_n_prev(1);
        }
        let input = self.execute(&inner, &inner.whole()).await?;
        let walk = Walk::new(&input.schema, slots, scale, grid.fill);
        let out = Arc::clone(&out_schema);
        let stream = stream::try_unfold((input.stream, walk), |(mut input, mut walk)| async move {
            loop {
                match walk.step()? {
                    Step::Output(batch) => return Ok(Some((batch, (input, walk)))),
                    Step::Done => return Ok(None),
                    Step::NeedInput => match input.try_next().await? {
                        Some(batch) => walk.feed(batch)?,
                        None => walk.input_done = true,
                    },
                }
            }
        })
        .map(move |b: Result<RecordBatch>| {
            let b = b?;
            let columns = out
                .fields()
                .iter()
                .map(|f| Ok(Arc::clone(b.column(b.schema().index_of(f.name())?))))
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(Arc::clone(&out), columns)?)
        })
        .boxed();
        Ok(ReadStream {
            schema: out_schema,
            version: plan.version(),
            stream,
        })
    }
}

/// Where a slot's values come from: `(source, row)` (see [`Walk::flush`]).
type Src = (usize, usize);
const NULL: Src = (0, 0);
const CARRY: Src = (1, 0);
const MATCHED: Src = (2, 0);
const CURRENT: usize = 3;

/// What the walk does next.
enum Step {
    Output(RecordBatch),
    NeedInput,
    Done,
}

/// The walk of the input rows beside the slots.
struct Walk {
    /// The input's schema: the ordering column first.
    schema: SchemaRef,
    slots: Slots,
    scale: i64,
    fill: Fill,
    /// The next slot and its time (`None` past the end).
    k: i64,
    slot: Option<i64>,
    /// One row of nulls.
    nulls: RecordBatch,
    /// The last emitted slot's value, kept from an earlier input batch.
    carry: Option<RecordBatch>,
    /// The next slot's row, kept from an earlier input batch.
    matched_row: Option<RecordBatch>,
    /// The current input batch, its keys and the next row.
    batch: Option<(RecordBatch, ScalarBuffer<i64>)>,
    row: usize,
    input_done: bool,
    /// The last emitted slot's value and the next slot's row, if any.
    last_value: Src,
    matched: Option<Src>,
    /// Slots emitted, not yet output.
    pending: Vec<Src>,
    times: Vec<i64>,
}

impl Walk {
    fn new(schema: &SchemaRef, slots: Slots, scale: i64, fill: Fill) -> Self {
        let nulls = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        let nullable: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let nulls = RecordBatch::try_new(Arc::new(Schema::new(nullable)), nulls)
            .expect("null columns of the schema's types");
        Self {
            schema: Arc::clone(schema),
            slot: slots.at(0),
            slots,
            scale,
            fill,
            k: 0,
            nulls,
            carry: None,
            matched_row: None,
            batch: None,
            row: 0,
            input_done: false,
            last_value: NULL,
            matched: None,
            pending: Vec::new(),
            times: Vec::new(),
        }
    }

    fn feed(&mut self, batch: RecordBatch) -> Result<()> {
        let keys = order_keys(self.schema.field(0).name(), batch.column(0).as_ref())?;
        self.batch = Some((batch, keys));
        self.row = 0;
        Ok(())
    }

    fn step(&mut self) -> Result<Step> {
        loop {
            if self.pending.len() >= GRID_BATCH_SLOTS {
                return self.flush().map(Step::Output);
            }
            let Some(slot) = self.slot else {
                if self.pending.is_empty() {
                    return Ok(Step::Done);
                }
                return self.flush().map(Step::Output);
            };
            if let Some((_, keys)) = &self.batch {
                if let Some(&key) = keys.get(self.row) {
                    if key < slot {
                        // Before the first slot: the row `previous` starts from. Between
                        // slots: ignored.
                        if self.k == 0 {
                            self.last_value = (CURRENT, self.row);
                        }
                        self.row += 1;
                    } else if key == slot {
                        self.matched = Some((CURRENT, self.row)); // the last one wins
                        self.row += 1;
                    } else {
                        self.emit(slot);
                    }
                    continue;
                }
                // The batch is done: output what refers to it, keep the rows still needed.
                if !self.pending.is_empty() {
                    return self.flush().map(Step::Output);
                }
                self.release_batch();
            }
            if !self.input_done {
                return Ok(Step::NeedInput);
            }
            self.emit(slot);
        }
    }

    /// Emit slot `k` (at `slot`): its row, else the fill.
    fn emit(&mut self, slot: i64) {
        let src = self.matched.take().unwrap_or(match self.fill {
            Fill::Null => NULL,
            Fill::Previous => self.last_value,
        });
        self.pending.push(src);
        self.times.push(slot);
        self.last_value = src;
        self.k += 1;
        self.slot = self.slots.at(self.k);
    }

    /// Drop the current batch, keeping as 1-row batches the values still referred to.
    fn release_batch(&mut self) {
        let Some((batch, _)) = self.batch.take() else {
            return;
        };
        let row = |src: Src, kept: &Option<RecordBatch>| match src {
            (CURRENT, r) => Some(batch.slice(r, 1)),
            _ => kept.clone(),
        };
        let carry = match self.last_value {
            NULL => None,
            MATCHED => self.matched_row.clone(),
            src => row(src, &self.carry),
        };
        if let Some(src) = self.matched {
            self.matched_row = row(src, &self.matched_row);
            self.matched = Some(MATCHED);
        }
        self.last_value = if carry.is_some() { CARRY } else { NULL };
        self.carry = carry;
    }

    /// The pending slots as a batch of the input's schema.
    fn flush(&mut self) -> Result<RecordBatch> {
        let sources: Vec<&RecordBatch> = vec![
            &self.nulls,
            self.carry.as_ref().unwrap_or(&self.nulls),
            self.matched_row.as_ref().unwrap_or(&self.nulls),
            self.batch.as_ref().map_or(&self.nulls, |(b, _)| b),
        ];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let slots = std::mem::replace(&mut self.times, Vec::with_capacity(GRID_BATCH_SLOTS));
        columns.push(times(self.schema.field(0).data_type(), slots, self.scale)?);
        for c in 1..self.schema.fields().len() {
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&arrays, &self.pending)?);
        }
        self.pending.clear();
        let nullable = self.nulls.schema();
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == 0 {
                    f.as_ref().clone()
                } else {
                    nullable.field(i).clone()
                }
            })
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// Slot times (ns) as the ordering column's timestamp type.
fn times(data_type: &DataType, mut values: Vec<i64>, scale: i64) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, tz) = data_type else {
        return Err(Error::invalid("a grid needs a timestamp ordering column"));
    };
    if scale != 1 {
        values.iter_mut().for_each(|t| *t /= scale);
    }
    Ok(match unit {
        TimeUnit::Second => timestamps::<TimestampSecondType>(values, tz),
        TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(values, tz),
        TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(values, tz),
        TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(values, tz),
    })
}

fn timestamps<T: ArrowTimestampType>(values: Vec<i64>, tz: &Option<Arc<str>>) -> ArrayRef {
    let values = ScalarBuffer::from(values);
    Arc::new(PrimitiveArray::<T>::new(values, None).with_timezone_opt(tz.clone()))
}
