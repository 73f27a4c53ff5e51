//! Vector functions over embeddings (`float4[]`): `fuse(v1, w1, v2, w2, …)`, the weighted sum
//! that combines feature vectors, and `cosine_similarity(a, b)`. Vectors may be any list
//! of numbers (`float4[]`, `float8[]`, fixed-size lists); arithmetic is in f64, and `fuse`
//! returns `float4[]` like the embeddings it combines. A NULL vector or weight gives NULL;
//! vectors of different lengths in one row are an error (SQLSTATE 22000).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, ListArray, ListBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{row_error, user_error};

/// The vector functions.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(Fuse {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::from(Cosine {
            signature: Signature::any(2, Volatility::Immutable),
        }),
    ]
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    )
}

fn f64_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// A vector argument as lists of f64. A constant (`ARRAY[…]` in the query) is cast once and
/// read for every row, not copied to each.
struct Vectors {
    list: ListArray,
    constant: bool,
}

impl Vectors {
    fn new(arg: &ColumnarValue) -> Result<Vectors> {
        let (a, constant) = match arg {
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
            ColumnarValue::Array(a) => (a.clone(), false),
        };
        Ok(Vectors {
            list: cast(&a, &f64_list())?.as_list::<i32>().clone(),
            constant,
        })
    }

    /// Row `r`'s vector (see [`row`]).
    fn row(&self, r: usize, name: &str) -> Result<Option<&[f64]>> {
        row(&self.list, if self.constant { 0 } else { r }, name)
    }
}

fn numbers(arg: &ColumnarValue, rows: usize) -> Result<Float64Array> {
    let a = arg.to_array(rows)?;
    Ok(cast(&a, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// Row `r` of a list array as a slice, or `None` when the row is NULL. Elements that are NULL
/// count as an error, not as zero.
fn row<'a>(list: &'a ListArray, r: usize, name: &str) -> Result<Option<&'a [f64]>> {
    if list.is_null(r) {
        return Ok(None);
    }
    let offsets = list.value_offsets();
    let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
    let values = list.values().as_primitive::<Float64Type>();
    if values.null_count() > 0 && (start..end).any(|i| values.is_null(i)) {
        return Err(row_error(format!("{name}: a vector has a NULL element")));
    }
    Ok(Some(&values.values()[start..end]))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Fuse {
    signature: Signature,
}

const FUSE_USAGE: &str = "fuse(v1, w1, v2, w2, …): vectors each followed by a numeric weight";

impl ScalarUDFImpl for Fuse {
    fn name(&self) -> &str {
        "fuse"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() < 2 || !arg_types.len().is_multiple_of(2) {
            return Err(user_error(format!(
                "{FUSE_USAGE}; got {} arguments",
                arg_types.len()
            )));
        }
        for (i, pair) in arg_types.chunks(2).enumerate() {
            if !is_list(&pair[0]) || !pair[1].is_numeric() && pair[1] != DataType::Null {
                return Err(user_error(format!(
                    "{FUSE_USAGE}; argument pair {} is ({}, {})",
                    i + 1,
                    pair[0],
                    pair[1]
                )));
            }
        }
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Float32,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut pairs = Vec::with_capacity(args.args.len() / 2);
        for pair in args.args.chunks(2) {
            pairs.push((Vectors::new(&pair[0])?, numbers(&pair[1], rows)?));
        }
        let mut out = ListBuilder::new(Float32Builder::new());
        let mut acc: Vec<f64> = Vec::new();
        'rows: for r in 0..rows {
            acc.clear();
            for (i, (vs, ws)) in pairs.iter().enumerate() {
                let Some(v) = vs.row(r, "fuse")? else {
                    out.append_null();
                    continue 'rows;
                };
                if ws.is_null(r) {
                    out.append_null();
                    continue 'rows;
                }
                if i == 0 {
                    acc.resize(v.len(), 0.0);
                } else if v.len() != acc.len() {
                    return Err(row_error(format!(
                        "fuse: vectors of different lengths in one row ({} and {})",
                        acc.len(),
                        v.len()
                    )));
                }
                let w = ws.value(r);
                for (a, x) in acc.iter_mut().zip(v) {
                    *a += w * x;
                }
            }
            out.values().extend(acc.iter().map(|&a| Some(a as f32)));
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Cosine {
    signature: Signature,
}

impl ScalarUDFImpl for Cosine {
    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !arg_types.iter().all(|t| is_list(t) || *t == DataType::Null) {
            return Err(user_error(format!(
                "cosine_similarity(a, b) takes two vectors (arrays of numbers); got ({}, {})",
                arg_types[0], arg_types[1]
            )));
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (a, b) = (Vectors::new(&args.args[0])?, Vectors::new(&args.args[1])?);
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let (Some(x), Some(y)) = (
                a.row(r, "cosine_similarity")?,
                b.row(r, "cosine_similarity")?,
            ) else {
                out.push(None);
                continue;
            };
            if x.len() != y.len() {
                return Err(row_error(format!(
                    "cosine_similarity: vectors of different lengths ({} and {})",
                    x.len(),
                    y.len()
                )));
            }
            let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx: f64 = x.iter().map(|p| p * p).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
            // Undefined for a zero vector: NULL rather than NaN.
            out.push((nx > 0.0 && ny > 0.0).then(|| dot / (nx * ny)));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
