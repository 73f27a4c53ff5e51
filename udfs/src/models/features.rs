//! Arrow columns → the model's inputs, shared by training and scoring so that a model reads
//! its inputs the same way in both.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type};
use datafusion::error::Result;
use flashsql_gpu::GpuError;
use flashsql_gpu::purchase::{PurchaseConfig, Rows, pad_sequence};
use flashsql_gpu::scorer::window_hash;
use hashbrown::HashTable;

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

/// A list column as a list of `item`s, or an error saying what the argument must be.
fn list_of(function: &str, a: &ArrayRef, item: DataType, must: &str) -> Result<ArrayRef> {
    let target = DataType::List(std::sync::Arc::new(Field::new_list_field(item, true)));
    cast(a, &target).map_err(|_| user_error(format!("{function}: {must}, got {}", a.data_type())))
}

/// The distinct token windows of a `seq` column: each padded to `len` tokens once, with
/// its [`window_hash`], and the window of each row.
pub struct Windows {
    pub tokens: Vec<u32>,
    pub hashes: Vec<u64>,
    pub of_row: Vec<u32>,
}

/// Behaviour sequences (lists of tokens from `behavior_sequence`) cut and padded to
/// `len`, each distinct one stored once. A NULL sequence is a user without history (all
/// padding).
pub fn sequences(function: &str, a: &ArrayRef, len: usize, vocab: usize) -> Result<Windows> {
    // behavior_sequence gives int4 lists, which this reads without a copy.
    let lists = list_of(
        function,
        a,
        DataType::Int32,
        "seq must be a token list from behavior_sequence(...)",
    )?;
    let lists = lists.as_list::<i32>();
    let values = lists.values().as_primitive::<Int32Type>();
    // The same bits as u32 (a negative token is then ≥ vocab, and refused below).
    let raw = ScalarBuffer::<u32>::from(values.values().inner().clone());
    let offsets = lists.value_offsets();
    let has_nulls = values.null_count() > 0;
    // Each distinct window (the last `len` tokens, without left padding) once, straight
    // from the Arrow buffer: a user scored against many offers is checked, padded and
    // encoded once, and the hash that finds it here also finds it in the model's cache.
    let mut seen: HashTable<u32> = HashTable::with_capacity(lists.len().min(1 << 16));
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut out = Windows {
        tokens: Vec::new(),
        hashes: Vec::new(),
        of_row: Vec::with_capacity(lists.len()),
    };
    for r in 0..lists.len() {
        let (mut start, end) = if lists.is_valid(r) {
            let end = offsets[r + 1] as usize;
            ((offsets[r] as usize).max(end.saturating_sub(len)), end)
        } else {
            (0, 0)
        };
        while start < end && raw[start] == 0 && values.is_valid(start) {
            start += 1;
        }
        let window = &raw[start..end];
        // Every token of the window is in the vocabulary and not NULL.
        let check = |only_nulls: bool| -> Result<()> {
            for (i, &t) in (start..end).zip(window) {
                if values.is_null(i) || (!only_nulls && t as usize >= vocab) {
                    return Err(row_error(format!(
                        "{function}: row {}: token {} is outside the vocabulary 0..{vocab} (build seq with behavior_sequence)",
                        r + 1,
                        if values.is_null(i) {
                            "NULL".to_string()
                        } else {
                            values.value(i).to_string()
                        }
                    )));
                }
            }
            Ok(())
        };
        let hash = window_hash(window);
        let k = match seen.entry(
            hash,
            |&k| {
                let (s, e) = spans[k as usize];
                raw[s..e] == *window
            },
            |&k| out.hashes[k as usize],
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => {
                // The same values as a window already checked; a NULL's hidden value can
                // match a real token, so where there are NULLs, look again.
                if has_nulls {
                    check(true)?;
                }
                *e.get()
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                check(false)?;
                pad_sequence(window, len, &mut out.tokens);
                out.hashes.push(hash);
                spans.push((start, end));
                *e.insert(spans.len() as u32 - 1).get()
            }
        };
        out.of_row.push(k);
    }
    Ok(out)
}

/// The scoring inputs of one call; rows with a NULL feature are left out and reported in
/// `kept` (their probability is NULL).
pub struct Scored {
    pub rows: Rows,
    pub kept: Vec<usize>,
}

/// The arguments a model's scoring function takes after the model name, in order.
pub fn scoring_arguments(config: &PurchaseConfig) -> Vec<&'static str> {
    let mut names = vec!["seq"];
    if config.has_offer() {
        names.extend(["category_id", "price", "discount"]);
        if config.time_left {
            names.push("time_left");
        }
        if config.hour {
            names.push("hour");
        }
    }
    if !config.features.is_empty() {
        names.push("features");
    }
    names
}

/// Reads scoring arguments, [`scoring_arguments`] of the model (the caller has checked
/// their number).
pub fn scoring_rows(
    function: &str,
    config: &PurchaseConfig,
    args: &[ArrayRef],
    n: usize,
) -> Result<Scored> {
    let windows = sequences(function, &args[0], config.seq_len, config.encoder.vocab)?;
    // Each argument by name, read once for the whole batch.
    let names = scoring_arguments(config);
    let arg = |name: &str| names.iter().position(|n| *n == name).map(|k| &args[k]);
    let number = |name: &str| arg(name).map(|a| floats(function, name, a)).transpose();
    let category = arg("category_id")
        .map(|a| ints(function, "category_id", a))
        .transpose()?;
    let (price, discount) = (number("price")?, number("discount")?);
    let (time_left, hour) = (number("time_left")?, number("hour")?);
    let features = arg("features")
        .map(|a| feature_matrix(function, a, Some(config.features.len())))
        .transpose()?;
    fn present<T>(v: &Option<Vec<Option<T>>>, r: usize) -> bool {
        v.as_ref().is_none_or(|v| v[r].is_some())
    }
    let mut rows = Rows {
        sequences: windows.tokens,
        sequence_hashes: windows.hashes,
        ..Rows::default()
    };
    let mut kept = Vec::with_capacity(n);
    let f = config.features.len();
    for r in 0..n {
        // A row with any NULL input has no probability.
        if !(present(&category, r)
            && present(&price, r)
            && present(&discount, r)
            && present(&time_left, r)
            && present(&hour, r))
            || features.as_ref().is_some_and(|f| !f.valid[r])
        {
            continue;
        }
        if let (Some(c), Some(p), Some(d)) = (&category, &price, &discount) {
            // Present (checked above); the defaults are never used.
            let (c, p, d) = (c[r].unwrap_or(0), p[r].unwrap_or(1.0), d[r].unwrap_or(0.0));
            check_offer(function, r, p, d)?;
            rows.category.push(config.category_index(c));
            if let Some(layout) = config.affinity_layout() {
                rows.category_bucket.push(layout.bucket(c));
            }
            rows.price.push(p as f32);
            rows.discount.push(d as f32);
        }
        if let Some(t) = &time_left {
            rows.time_left.push(t[r].unwrap_or(0.0) as f32);
        }
        if let Some(h) = &hour {
            rows.hour.push(h[r].unwrap_or(0.0) as f32);
        }
        if let Some(x) = &features {
            rows.features
                .extend_from_slice(&x.matrix[r * f..(r + 1) * f]);
        }
        rows.seq_of_row.push(windows.of_row[r]);
        kept.push(r);
    }
    Ok(Scored { rows, kept })
}

/// A `features` column — a list of numbers per row — as a row-major matrix of `width`
/// values per row, and whether each row has one (a NULL list has none; its slots are zero).
/// `width` is the model's when scoring; when training (`None`) it is the first list's length,
/// which every other row must then match.
pub struct Features {
    pub matrix: Vec<f32>,
    pub valid: Vec<bool>,
    pub width: usize,
}

pub fn feature_matrix(function: &str, a: &ArrayRef, width: Option<usize>) -> Result<Features> {
    let lists = list_of(
        function,
        a,
        DataType::Float64,
        "features must be a list of numbers (e.g. [recency, frequency])",
    )?;
    let lists = lists.as_list::<i32>();
    let values = lists.values().as_primitive::<Float64Type>();
    let offsets = lists.value_offsets();
    let (width, expected) = match width {
        Some(w) => (w, format!("the model takes {w}")),
        None => {
            let w = (0..lists.len())
                .find(|&r| lists.is_valid(r))
                .map_or(0, |r| lists.value_length(r) as usize);
            (w, format!("the first row has {w}"))
        }
    };
    let mut matrix = vec![0.0f32; lists.len() * width];
    let mut valid = vec![false; lists.len()];
    for r in 0..lists.len() {
        if lists.is_null(r) {
            continue;
        }
        let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
        if end - start != width {
            return Err(row_error(format!(
                "{function}: row {}: features has length {}; {expected}",
                r + 1,
                end - start
            )));
        }
        for (k, i) in (start..end).enumerate() {
            let x = values.value(i);
            if values.is_null(i) || !x.is_finite() {
                return Err(row_error(format!(
                    "{function}: row {}: features value {} is {}; every value must be a finite number",
                    r + 1,
                    k + 1,
                    if values.is_null(i) {
                        "NULL".to_string()
                    } else {
                        x.to_string()
                    }
                )));
            }
            matrix[r * width + k] = x as f32;
        }
        valid[r] = true;
    }
    Ok(Features {
        matrix,
        valid,
        width,
    })
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
