//! Behaviour sequences: `behavior_sequence(event_type, category_id, ts [, max_len [, as_of]])`,
//! an aggregate that turns a user's events into the token list the sequence encoder reads —
//! the most recent `max_len` (default 64) events, oldest first.
//!
//! One token per event, combining what happened, where, and how long after the previous
//! event: `token = 1 + ((gap · EVENTS + event) · CATEGORY_BUCKETS + category mod 64)`, with 0
//! left for padding. Event types: view (also `pv`), search, fav, cart, purchase (also `buy`).
//! Gap buckets (time since the user's previous event in the list): < 1 min, < 10 min, < 1 h,
//! < 6 h, < 1 day, < 7 days, ≥ 7 days, and "first event".
//!
//! The as-of form measures each event's **age** at `as_of` instead (the same buckets), and
//! leaves out events at or after `as_of`: the sequence as it stood just before that moment,
//! which tells a model how recent the behaviour is, not only its order.
//!
//! Point in time: a training row for an offer shown at t must only see events before t. As an
//! aggregate this is a join condition — `JOIN events e ON e.user_id = x.user_id AND e.ts <
//! x.shown_ts` grouped by the offer — so the purchase that the offer itself caused (and
//! everything later) never enters the row. `docs/functions.md` has the full pattern.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Builder, ListBuilder, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::aggregate_state::{constant_arg, list_state, list_states};
use crate::error::{row_error, user_error};

/// Event types in token order.
pub const EVENT_TYPES: [&str; 5] = ["view", "search", "fav", "cart", "purchase"];
pub const CATEGORY_BUCKETS: i64 = 64;
/// Upper ends (seconds) of the gap buckets; beyond the last is bucket 6, the first event 7.
const GAP_LIMITS: [i64; 6] = [60, 600, 3_600, 21_600, 86_400, 604_800];
/// The gap buckets below each limit, as the names of the tabular models' count horizons.
pub const HORIZONS: [&str; 6] = ["1min", "10min", "1h", "6h", "1d", "7d"];
pub const GAP_BUCKETS: i64 = 8;
/// Tokens run from 1 to VOCABULARY − 1; 0 is padding.
pub const VOCABULARY: i64 = 1 + GAP_BUCKETS * EVENT_TYPES.len() as i64 * CATEGORY_BUCKETS;
pub const DEFAULT_MAX_LEN: usize = 64;

/// The token layout above, for models that read what a user did in an offer's category.
pub const TOKEN_LAYOUT: flashsql_gpu::affinity::TokenLayout = flashsql_gpu::affinity::TokenLayout {
    category_buckets: CATEGORY_BUCKETS as u32,
    events: EVENT_TYPES.len() as u32,
    purchase: 4,
};

/// Other names logs use for an event type (Taobao's `pv` and `buy`).
const ALIASES: [(&str, &str); 2] = [("pv", "view"), ("buy", "purchase")];

/// The event's index in [`EVENT_TYPES`], case-insensitive and without allocating (it runs
/// once per event).
fn event_index(name: &str) -> Option<i64> {
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |&(_, e)| e);
    EVENT_TYPES
        .iter()
        .position(|e| e.eq_ignore_ascii_case(canonical))
        .map(|i| i as i64)
}

fn gap_bucket(gap_us: Option<i64>) -> i64 {
    match gap_us {
        None => GAP_BUCKETS - 1,
        Some(us) => {
            let s = us / 1_000_000;
            GAP_LIMITS
                .iter()
                .position(|&l| s < l)
                .unwrap_or(GAP_LIMITS.len()) as i64
        }
    }
}

/// The token of one event.
pub fn token(event: i64, category: i64, gap_us: Option<i64>) -> i32 {
    let t = 1
        + ((gap_bucket(gap_us) * EVENT_TYPES.len() as i64 + event) * CATEGORY_BUCKETS
            + category.rem_euclid(CATEGORY_BUCKETS));
    t as i32
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BehaviorSequence {
    signature: Signature,
}

pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(BehaviorSequence {
        signature: Signature::one_of(
            vec![
                TypeSignature::Any(3),
                TypeSignature::Any(4),
                TypeSignature::Any(5),
            ],
            Volatility::Immutable,
        ),
    })
}

fn token_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

impl AggregateUDFImpl for BehaviorSequence {
    fn name(&self) -> &str {
        "behavior_sequence"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let ok = matches!(
            arg_types[0],
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) && arg_types[1].is_integer()
            && matches!(arg_types[2], DataType::Timestamp(_, _))
            && arg_types.get(3).is_none_or(|t| t.is_integer())
            && arg_types
                .get(4)
                .is_none_or(|t| matches!(t, DataType::Timestamp(_, _)));
        if !ok {
            return Err(user_error(format!(
                "behavior_sequence(event_type text, category_id bigint, ts timestamp [, max_len integer [, as_of timestamp]]); got ({})",
                arg_types
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(token_list())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let max_len = match constant_arg(&args, 3, "behavior_sequence", "max_len")? {
            None => DEFAULT_MAX_LEN,
            Some(v) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) if (1..=100_000).contains(&n) => n as usize,
                _ => {
                    return Err(user_error(format!(
                        "behavior_sequence: max_len must be between 1 and 100000, got {v}"
                    )));
                }
            },
        };
        Ok(Box::new(SequenceAccumulator {
            max_len,
            events: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[events]", args.name),
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        ))])
    }
}

/// The most recent events so far as (ts µs, event, category, age µs at as_of or −1 without
/// as_of); trimmed to `max_len` as it goes.
#[derive(Debug)]
struct SequenceAccumulator {
    max_len: usize,
    events: Vec<(i64, i64, i64, i64)>,
}

/// A timestamp column as microseconds.
fn micros(a: &ArrayRef) -> Result<ArrayRef> {
    let ts = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(cast(&ts, &DataType::Int64)?)
}

impl SequenceAccumulator {
    /// Keeps the `max_len` most recent events once the buffer is twice that.
    fn trim(&mut self, force: bool) {
        let keep = self.max_len;
        if self.events.len() > 2 * keep || (force && self.events.len() > keep) {
            self.events.sort_unstable();
            let drop = self.events.len() - keep;
            self.events.drain(..drop);
        }
    }
}

impl Accumulator for SequenceAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let types = cast(&values[0], &DataType::Utf8)?;
        let types: &StringArray = types.as_string::<i32>();
        let cats = cast(&values[1], &DataType::Int64)?;
        let cats = cats.as_primitive::<Int64Type>();
        let ts = micros(&values[2])?;
        let ts = ts.as_primitive::<Int64Type>();
        let as_of = values.get(4).map(micros).transpose()?;
        let as_of = as_of.as_ref().map(|a| a.as_primitive::<Int64Type>());
        for r in 0..types.len() {
            if types.is_null(r) || cats.is_null(r) || ts.is_null(r) {
                continue;
            }
            let age = match as_of {
                None => -1,
                Some(a) if a.is_null(r) => continue,
                // Only what had happened before as_of.
                Some(a) if ts.value(r) >= a.value(r) => continue,
                Some(a) => a.value(r) - ts.value(r),
            };
            let name = types.value(r);
            let event = event_index(name).ok_or_else(|| {
                row_error(format!(
                    "behavior_sequence: unknown event type '{name}'; known: view (pv), search, fav, cart, purchase (buy)"
                ))
            })?;
            self.events.push((ts.value(r), event, cats.value(r), age));
        }
        self.trim(false);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.trim(true);
        self.events.sort_unstable();
        let mut b = ListBuilder::new(Int32Builder::new());
        let mut prev = None;
        for &(ts, event, cat, age) in &self.events {
            let gap = if age >= 0 {
                Some(age)
            } else {
                prev.map(|p: i64| ts - p)
            };
            b.values().append_value(token(event, cat, gap));
            prev = Some(ts);
        }
        b.append(true);
        Ok(ScalarValue::List(Arc::new(b.finish())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.events.capacity() * 32
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.trim(true);
        let flat = self
            .events
            .iter()
            .flat_map(|&(ts, e, c, age)| [ts, e, c, age])
            .collect();
        Ok(vec![list_state::<Int64Type>(flat)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for part in list_states::<Int64Type>(&states[0]) {
            self.events.extend(
                part.values()
                    .chunks_exact(4)
                    .map(|c| (c[0], c[1], c[2], c[3])),
            );
            self.trim(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_combine_event_category_and_gap() {
        // First event: gap bucket 7; view = 0; category 5.
        assert_eq!(token(0, 5, None), 1 + (7 * 5) * 64 + 5);
        // Cart 30 minutes later: gap bucket 2 (< 1 h).
        assert_eq!(
            token(3, 5, Some(30 * 60 * 1_000_000)),
            1 + (2 * 5 + 3) * 64 + 5
        );
        // Negative ids still land in a bucket; every token is inside the vocabulary.
        assert!((1..VOCABULARY).contains(&i64::from(token(4, -3, Some(i64::MAX)))));
        assert_eq!(event_index("PV"), Some(0));
        assert_eq!(event_index("buy"), Some(4));
        assert_eq!(event_index("click"), None);
    }

    /// The layout models read category affinity with is this module's: the same buckets,
    /// the purchase event where `token` puts it.
    #[test]
    fn token_layout_reads_these_tokens() {
        assert!(TOKEN_LAYOUT.check(VOCABULARY as usize).is_ok());
        assert_eq!(EVENT_TYPES[TOKEN_LAYOUT.purchase as usize], "purchase");
        let purchase = event_index("purchase").unwrap();
        let window: Vec<u32> = [
            token(0, 70, None),
            token(purchase, 70, Some(1)),
            token(purchase, 6, Some(1)),
            token(2, 3, Some(10 * 86_400_000_000)),
        ]
        .iter()
        .map(|&t| t as u32)
        .collect();
        let mut out = [0.0f32; 3];
        // Category 70 shares bucket 6 with category 6.
        TOKEN_LAYOUT.inputs(&window, TOKEN_LAYOUT.bucket(70), &mut out);
        assert_eq!(out, [0.75, 3.0f32.ln_1p(), 2.0f32.ln_1p()]);
        TOKEN_LAYOUT.inputs(&window, TOKEN_LAYOUT.bucket(3), &mut out);
        assert_eq!(out, [0.25, 1.0f32.ln_1p(), 0.0]);
    }

    /// The as-of form: each event's token carries its age at as_of, and events at or after
    /// as_of are left out.
    #[test]
    fn as_of_gives_ages_and_leaves_out_later_events() {
        use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
        let min = 60 * 1_000_000;
        let as_of = 120 * min;
        let rows: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["view", "cart", "purchase", "fav"])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                0,
                115 * min,
                as_of,
                as_of + min,
            ])),
            Arc::new(Int64Array::from(vec![64; 4])),
            Arc::new(TimestampMicrosecondArray::from(vec![as_of; 4])),
        ];
        let mut acc = SequenceAccumulator {
            max_len: 64,
            events: Vec::new(),
        };
        acc.update_batch(&rows).unwrap();
        let ScalarValue::List(list) = acc.evaluate().unwrap() else {
            panic!("not a list")
        };
        let tokens = list.value(0);
        let tokens: Vec<i32> = tokens
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
            .values()
            .to_vec();
        // The view is 2 h old (< 6 h: bucket 3), the cart 5 minutes (< 10 min: bucket 1);
        // the purchase at as_of and the later fav are not in the sequence.
        assert_eq!(
            tokens,
            vec![token(0, 1, Some(120 * min)), token(3, 2, Some(5 * min))]
        );
        assert_eq!(tokens[0], 1 + (3 * 5) * 64 + 1);
        assert_eq!(tokens[1], 1 + (5 + 3) * 64 + 2);
    }

    /// Partial states merged (one from a partition with no rows) give the sequence one pass
    /// gives, cut to max_len from the most recent end.
    #[test]
    fn partial_states_merge_to_the_same_sequence() {
        use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
        let kinds = ["view", "cart", "search", "view", "purchase", "fav", "view"];
        let rows = |range: std::ops::Range<usize>| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from_iter_values(
                    range.clone().map(|i| kinds[i]),
                )),
                Arc::new(Int64Array::from_iter_values(
                    range.clone().map(|i| i as i64 * 3),
                )),
                // Out of time order on purpose: the sequence is ordered by ts, not arrival.
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    range.map(|i| ((i * 7) % 5) as i64 * 60_000_000 + i as i64),
                )),
            ]
        };
        let fresh = || SequenceAccumulator {
            max_len: 4,
            events: Vec::new(),
        };
        let mut whole = fresh();
        whole.update_batch(&rows(0..7)).unwrap();
        let mut merged = fresh();
        for part in [0..3, 3..3, 3..7] {
            let mut acc = fresh();
            acc.update_batch(&rows(part)).unwrap();
            let state = acc.state().unwrap();
            merged.merge_batch(&[state[0].to_array().unwrap()]).unwrap();
        }
        let (a, b) = (whole.evaluate().unwrap(), merged.evaluate().unwrap());
        assert_eq!(a, b);
        let ScalarValue::List(list) = a else {
            panic!("not a list")
        };
        assert_eq!(list.value(0).len(), 4);
    }
}
