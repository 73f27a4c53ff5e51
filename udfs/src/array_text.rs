//! PostgreSQL's array literals (`{1.5,2.5}`, `{"a b",c,NULL}`, `{}`) read into Arrow lists:
//! as COPY receives them in a text or CSV field — what COPY TO, psql and every PostgreSQL
//! client write for an array column — and wherever SQL casts text to an array
//! (`CAST('{1,2}' AS INT[])`, `INSERT … VALUES ('{1.5,2.5}')` into an array column), which
//! [`ArrayLiterals`] turns into [`ArrayIn`] calls.
//!
//! Arrow's string-to-list cast reads a whole string as a single element, so without this a
//! `double precision[]` column would take `{1.5,2.5}` as `{NULL}` in COPY — a load that
//! reports success and has lost its values — and SQL's cast fails ("Cannot cast string").
//!
//! The grammar is PostgreSQL's `array_in` for the comma delimiter: elements separated by
//! commas, blanks around them ignored, an unquoted `NULL` (any case) is NULL, double quotes
//! protect commas, braces and blanks, a backslash takes the next character literally, and a
//! nested `{…}` is an element of a list of lists. Dimension decorations (`[1:2]={…}`) are
//! refused as malformed.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::FunctionError;
use crate::pg_types::pg_type_name;
use crate::plan_expressions::rewrite_expressions;

/// Rewrites every cast of text to a list into [`ArrayIn`] (see the module notes), keeping
/// the expression's name.
#[derive(Debug, Default)]
pub struct ArrayLiterals;

impl AnalyzerRule for ArrayLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            rewrite_expressions(node, |expr, schema| {
                expr.transform_up(|e| match e {
                    Expr::Cast(Cast { expr, field })
                        if matches!(field.data_type(), DataType::List(_))
                            && matches!(
                                expr.get_type(schema),
                                Ok(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                            ) =>
                    {
                        let udf = ScalarUDF::new_from_impl(ArrayIn::new(field.data_type().clone()));
                        Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(udf), vec![*expr]),
                        )))
                    }
                    e => Ok(Transformed::no(e)),
                })
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "flashsql_array_literals"
    }
}

/// Text read as array literals into lists of `target` (PostgreSQL's `array_in`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayIn {
    target: DataType,
    signature: Signature,
}

impl ArrayIn {
    pub fn new(target: DataType) -> Self {
        ArrayIn {
            target,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArrayIn {
    fn name(&self) -> &str {
        "array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let text = args.args[0].to_array(args.number_rows)?;
        let text = cast(&text, &DataType::Utf8)?;
        let strings = text.as_string::<i32>();
        let lists = read_column(strings, &self.target)
            .map_err(|bad| FunctionError::InvalidText(bad.reason))?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&lists, 0)?)
        } else {
            ColumnarValue::Array(lists)
        })
    }
}

/// A value that does not read as the column's type: which input value, and PostgreSQL's
/// message for it (`invalid input syntax for type integer: "x"`, `malformed array
/// literal: …`).
#[derive(Debug, Clone, PartialEq)]
pub struct BadValue {
    /// The value's index in the column that was read.
    pub index: usize,
    pub reason: String,
}

/// `strings` read as `target`: lists from array literals (at any depth), anything else by
/// Arrow's cast. A NULL string is a NULL value; a string that does not read is an error
/// naming it, never a NULL.
pub fn read_column(strings: &StringArray, target: &DataType) -> Result<ArrayRef, BadValue> {
    match target {
        DataType::List(item) => {
            let mut offsets = Vec::with_capacity(strings.len() + 1);
            offsets.push(0i32);
            let mut items: Vec<Option<String>> = Vec::new();
            for (index, value) in strings.iter().enumerate() {
                if let Some(text) = value {
                    items.extend(elements(text).map_err(|reason| BadValue { index, reason })?);
                }
                let end = i32::try_from(items.len()).map_err(|_| BadValue {
                    index,
                    reason: "too many array elements in one COPY batch".into(),
                })?;
                offsets.push(end);
            }
            let values =
                read_column(&StringArray::from(items), item.data_type()).map_err(|bad| {
                    BadValue {
                        // The list holding the bad element.
                        index: offsets.partition_point(|&o| o as usize <= bad.index) - 1,
                        reason: bad.reason,
                    }
                })?;
            let nulls = NullBuffer::from_iter(strings.iter().map(|v| v.is_some()));
            ListArray::try_new(
                item.clone(),
                OffsetBuffer::new(offsets.into()),
                values,
                Some(nulls),
            )
            .map(|list| Arc::new(list) as ArrayRef)
            .map_err(|e| BadValue {
                index: 0,
                reason: e.to_string(),
            })
        }
        DataType::Utf8 => Ok(Arc::new(strings.clone())),
        _ => {
            let strict = CastOptions {
                safe: true,
                format_options: FormatOptions::default(),
            };
            let cast = cast_with_options(strings, target, &strict).map_err(|e| BadValue {
                index: 0,
                reason: e.to_string(),
            })?;
            // A value that was present but did not convert is an error, not a NULL.
            match (0..strings.len()).find(|&i| strings.is_valid(i) && cast.is_null(i)) {
                Some(index) => Err(BadValue {
                    index,
                    reason: format!(
                        "invalid input syntax for type {}: \"{}\"",
                        pg_type_name(target),
                        strings.value(index)
                    ),
                }),
                None => Ok(cast),
            }
        }
    }
}

/// The elements of one array literal, as text (a nested array's as its own literal).
fn elements(literal: &str) -> Result<Vec<Option<String>>, String> {
    let malformed = |why: &str| format!("malformed array literal: \"{literal}\" ({why})");
    let body = literal
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| malformed("an array value must start with \"{\" and end with \"}\""))?;
    let mut out = Vec::new();
    if body.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = body.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            Some('"') => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => text.push(
                            chars
                                .next()
                                .ok_or_else(|| malformed("unexpected end of input"))?,
                        ),
                        Some(c) => text.push(c),
                        None => return Err(malformed("unterminated quoted element")),
                    }
                }
                out.push(Some(text));
            }
            Some('{') => {
                let mut text = String::new();
                let (mut depth, mut quoted) = (0usize, false);
                loop {
                    let c = chars.next().ok_or_else(|| malformed("unbalanced braces"))?;
                    text.push(c);
                    match c {
                        '\\' => text.push(
                            chars
                                .next()
                                .ok_or_else(|| malformed("unexpected end of input"))?,
                        ),
                        '"' => quoted = !quoted,
                        '{' if !quoted => depth += 1,
                        '}' if !quoted => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                out.push(Some(text));
            }
            Some(',') | None => return Err(malformed("unexpected \",\" or missing element")),
            Some(_) => {
                let mut text = String::new();
                let mut escaped = false;
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    chars.next();
                    match c {
                        '\\' => {
                            text.push(
                                chars
                                    .next()
                                    .ok_or_else(|| malformed("unexpected end of input"))?,
                            );
                            escaped = true;
                        }
                        '"' | '{' | '}' => {
                            return Err(malformed("unexpected character in an unquoted element"));
                        }
                        c => text.push(c),
                    }
                }
                let text = text.trim_end().to_string();
                if !escaped && text.eq_ignore_ascii_case("NULL") {
                    out.push(None);
                } else {
                    out.push(Some(text));
                }
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(_) => return Err(malformed("junk after an element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int32Array};
    use datafusion::arrow::datatypes::{Field, Float64Type, Int32Type};

    use super::*;

    fn list_of(item: DataType) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(item, true)))
    }

    #[test]
    fn literals_split_as_postgresql_splits_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(elements("{1.5,2.5}").unwrap(), [s("1.5"), s("2.5")]);
        assert_eq!(
            elements(" { 1 , NULL ,null, 3 } ").unwrap(),
            [s("1"), None, None, s("3")]
        );
        assert_eq!(elements("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(elements("{  }").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(
            elements(r#"{"a b","c,d","NULL",\NULL,"q\"x",e\,f}"#).unwrap(),
            [
                s("a b"),
                s("c,d"),
                s("NULL"),
                s("NULL"),
                s("q\"x"),
                s("e,f")
            ]
        );
        assert_eq!(elements("{{1,2},{3}}").unwrap(), [s("{1,2}"), s("{3}")]);
        assert_eq!(elements(r#"{{"}",2}}"#).unwrap(), [s(r#"{"}",2}"#)]);
        for bad in [
            "1,2",
            "{1,2",
            "[1:2]={1,2}",
            "{1,,2}",
            "{,}",
            "{1,}",
            "{\"a}",
            "{a\"b}",
            "{{1}",
        ] {
            assert!(elements(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn columns_read_into_lists_with_nulls_where_postgresql_has_them() {
        let strings = StringArray::from(vec![
            Some("{1.5,2.5}"),
            None,
            Some("{}"),
            Some("{NULL,-3e2}"),
        ]);
        let read = read_column(&strings, &list_of(DataType::Float64)).unwrap();
        let list = read.as_list::<i32>();
        assert_eq!(list.len(), 4);
        assert!(list.is_null(1) && !list.is_null(2));
        assert_eq!(list.value(2).len(), 0);
        let first = list.value(0);
        assert_eq!(
            first.as_primitive::<Float64Type>(),
            &Float64Array::from(vec![1.5, 2.5])
        );
        assert_eq!(
            list.value(3).as_primitive::<Float64Type>(),
            &Float64Array::from(vec![None, Some(-300.0)])
        );
        // Lists of lists.
        let nested = read_column(
            &StringArray::from(vec!["{{1,2},{},{NULL}}"]),
            &list_of(list_of(DataType::Int32)),
        )
        .unwrap();
        let outer = nested.as_list::<i32>().value(0);
        let outer = outer.as_list::<i32>();
        assert_eq!(outer.len(), 3);
        assert_eq!(
            outer.value(0).as_primitive::<Int32Type>(),
            &Int32Array::from(vec![1, 2])
        );
        assert_eq!(
            outer.value(2).as_primitive::<Int32Type>(),
            &Int32Array::from(vec![None])
        );
    }

    #[test]
    fn a_bad_element_names_its_list() {
        let strings = StringArray::from(vec![Some("{1,2}"), None, Some("{3,x}"), Some("{4}")]);
        let bad = read_column(&strings, &list_of(DataType::Int32)).unwrap_err();
        assert_eq!(bad.index, 2, "{bad:?}");
        assert_eq!(bad.reason, "invalid input syntax for type integer: \"x\"");
        let bad = read_column(&strings.slice(0, 1), &list_of(DataType::Int32));
        assert!(bad.is_ok());
        let bad = read_column(
            &StringArray::from(vec!["{1}", "1"]),
            &list_of(DataType::Int32),
        )
        .unwrap_err();
        assert_eq!(bad.index, 1);
        assert!(bad.reason.contains("malformed array literal"), "{bad:?}");
        let bad = read_column(&StringArray::from(vec!["7", "x"]), &DataType::Int64).unwrap_err();
        assert_eq!(
            bad,
            BadValue {
                index: 1,
                reason: "invalid input syntax for type bigint: \"x\"".into()
            }
        );
    }
}
