//! Arrow columns → the model's inputs, shared by training and scoring so that a model reads
//! its inputs the same way in both.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type};
use datafusion::error::Result;
use flashsql_gpu::GpuError;
use flashsql_gpu::purchase::{PurchaseConfig, Rows, pad_sequence};

use crate::error::{FunctionError, row_error, user_error};

/// The model layer's errors as SQL function errors.
pub fn model_error(function: &str, e: GpuError) -> datafusion::error::DataFusionError {
    let msg = format!("{function}: {e}");
    match e {
        GpuError::UnknownModel { .. } => FunctionError::UndefinedObject(msg).into(),
        GpuError::Io(_) => FunctionError::Storage(msg).into(),
        GpuError::Data(_) | GpuError::Shape(_) => FunctionError::InvalidRow(msg).into(),
        _ => FunctionError::InvalidOption(msg).into(),
    }
}

/// A column as f64 values (NULL → `None`).
pub fn floats(function: &str, name: &str, a: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let c = cast(a, &DataType::Float64).map_err(|_| {
        user_error(format!(
            "{function}: {name} must be a number, got {}",
            a.data_type()
        ))
    })?;
    Ok(c.as_primitive::<Float64Type>().iter().collect())
}

/// A column as i64 values (timestamps as their microseconds).
pub fn ints(function: &str, name: &str, a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let a = match a.data_type() {
        DataType::Timestamp(_, _) => cast(
            a,
            &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
        )?,
        _ => a.clone(),
    };
    let c = cast(&a, &DataType::Int64).map_err(|_| {
        user_error(format!(
            "{function}: {name} must be an integer, got {}",
            a.data_type()
        ))
    })?;
    Ok(c.as_primitive::<Int64Type>().iter().collect())
}

/// Behaviour sequences (lists of tokens from `behavior_sequence`) cut and padded to
/// `len`, each distinct one stored once: (sequences, sequence of each row). A NULL
/// sequence is a user without history (all padding).
pub fn sequences(
    function: &str,
    a: &ArrayRef,
    len: usize,
    vocab: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    // behavior_sequence gives int4 lists, which this reads without a copy.
    let target = DataType::List(std::sync::Arc::new(Field::new_list_field(
        DataType::Int32,
        true,
    )));
    let lists = cast(a, &target).map_err(|_| {
        user_error(format!(
            "{function}: seq must be a token list from behavior_sequence(...), got {}",
            a.data_type()
        ))
    })?;
    let lists = lists.as_list::<i32>();
    let values = lists.values().as_primitive::<Int32Type>();
    let (raw, offsets) = (values.values(), lists.value_offsets());
    // Each distinct window (the last `len` tokens) once, straight from the Arrow buffer: a
    // user scored against many offers is checked, padded and encoded once.
    let mut seen: HashMap<&[i32], u32, ahash::RandomState> = HashMap::default();
    let mut order = Vec::with_capacity(lists.len());
    let mut unique = Vec::new();
    let mut tokens = Vec::with_capacity(len);
    for r in 0..lists.len() {
        let (start, end) = if lists.is_valid(r) {
            let end = offsets[r + 1] as usize;
            ((offsets[r] as usize).max(end.saturating_sub(len)), end)
        } else {
            (0, 0)
        };
        let window = &raw[start..end];
        let next = seen.len() as u32;
        let k = match seen.entry(window) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                tokens.clear();
                for (i, &t) in (start..end).zip(window) {
                    if values.is_null(i) || t < 0 || t as usize >= vocab {
                        return Err(row_error(format!(
                            "{function}: row {}: token {} is outside the vocabulary 0..{vocab} (build seq with behavior_sequence)",
                            r + 1,
                            if values.is_null(i) {
                                "NULL".to_string()
                            } else {
                                t.to_string()
                            }
                        )));
                    }
                    tokens.push(t as u32);
                }
                pad_sequence(&tokens, len, &mut unique);
                *e.insert(next)
            }
        };
        order.push(k);
    }
    Ok((unique, order))
}

/// The scoring inputs of one call; rows with a NULL feature are left out and reported in
/// `kept` (their probability is NULL).
pub struct Scored {
    pub rows: Rows,
    pub kept: Vec<usize>,
}

/// Reads scoring arguments (seq, category_id, price, discount [, time_left, hour]).
pub fn scoring_rows(
    function: &str,
    config: &PurchaseConfig,
    args: &[ArrayRef],
    n: usize,
) -> Result<Scored> {
    let (sequences, seq_of_row) =
        sequences(function, &args[0], config.seq_len, config.encoder.vocab)?;
    let cats = ints(function, "category_id", &args[1])?;
    let price = floats(function, "price", &args[2])?;
    let discount = floats(function, "discount", &args[3])?;
    let time_left = match args.get(4) {
        Some(a) => Some(floats(function, "time_left", a)?),
        None => None,
    };
    let hour = match args.get(5) {
        Some(a) => Some(floats(function, "hour", a)?),
        None => None,
    };
    let mut rows = Rows {
        sequences,
        ..Rows::default()
    };
    let mut kept = Vec::with_capacity(n);
    for r in 0..n {
        let (Some(c), Some(p), Some(d)) = (cats[r], price[r], discount[r]) else {
            continue;
        };
        let t = time_left.as_ref().map(|v| v[r]);
        let h = hour.as_ref().map(|v| v[r]);
        if matches!(t, Some(None)) || matches!(h, Some(None)) {
            continue;
        }
        check_offer(function, r, p, d)?;
        rows.seq_of_row.push(seq_of_row[r]);
        rows.category.push(config.category_index(c));
        rows.price.push(p as f32);
        rows.discount.push(d as f32);
        if config.time_left {
            rows.time_left.push(t.flatten().unwrap_or(0.0) as f32);
        }
        if config.hour {
            rows.hour.push(h.flatten().unwrap_or(0.0) as f32);
        }
        kept.push(r);
    }
    Ok(Scored { rows, kept })
}

/// A price must be positive and a discount a fraction in [0, 1].
pub fn check_offer(function: &str, r: usize, price: f64, discount: f64) -> Result<()> {
    if !(price.is_finite() && price > 0.0) {
        return Err(row_error(format!(
            "{function}: row {}: price must be a positive number, got {price}",
            r + 1
        )));
    }
    if !(0.0..=1.0).contains(&discount) {
        return Err(row_error(format!(
            "{function}: row {}: discount must be a fraction between 0 and 1, got {discount}",
            r + 1
        )));
    }
    Ok(())
}
