//! Functions PostgreSQL clients expect that neither DataFusion nor `datafusion-pg-catalog`
//! provide: `version()`, `current_setting`, `pg_size_pretty`, descriptions, …

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, Int64Builder, ListBuilder, StringArray,
    StringBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::settings::Settings;

/// The PostgreSQL version flashsql speaks.
pub const PG_VERSION: &str = "16.6";

/// `server_version` as reported to clients: parses as PostgreSQL 16.
pub fn server_version() -> String {
    format!("{PG_VERSION} (flashsql {})", env!("CARGO_PKG_VERSION"))
}

/// `version()`: the first words match `PostgreSQL \d+\.\d+` as drivers expect.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (flashsql {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

pub(crate) type Body = Arc<dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync>;

/// A scalar function given as a closure over whole arrays.
struct CompatFn {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    body: Body,
}

impl fmt::Debug for CompatFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompatFn({})", self.name)
    }
}

impl PartialEq for CompatFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CompatFn {}

impl Hash for CompatFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for CompatFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { n };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let out = (self.body)(&arrays, rows)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// A scalar function over whole arrays (scalars arrive as one-row arrays and leave as
/// scalars).
pub(crate) fn udf(
    name: &'static str,
    sigs: Vec<TypeSignature>,
    ret: DataType,
    vol: Volatility,
    body: Body,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(CompatFn {
        name,
        signature: Signature::one_of(sigs, vol),
        ret,
        body,
    })
}

fn null_text(rows: usize) -> Result<ArrayRef> {
    Ok(Arc::new(StringArray::from(vec![None::<&str>; rows])))
}

/// PostgreSQL's `pg_size_pretty` (the integer algorithm of `dbsize.c`): a unit is used
/// until the value reaches 10240 of it, and halves are rounded away from zero.
pub fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    let units = ["kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes >> 9; // half-kilobytes
    let mut unit = 0;
    while size.abs() >= LIMIT2 && unit < units.len() - 1 {
        size >>= 10;
        unit += 1;
    }
    format!("{} {}", half_rounded(size), units[unit])
}

/// Registers the compatibility functions on a session.
pub fn register(ctx: &SessionContext, settings: Arc<Settings>) {
    ctx.register_udf(udf(
        "version",
        vec![TypeSignature::Nullary],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_, rows| Ok(Arc::new(StringArray::from(vec![version_string(); rows])))),
    ));
    let s = settings.clone();
    ctx.register_udf(udf(
        "current_setting",
        vec![
            TypeSignature::Exact(vec![DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
        ],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args, rows| {
            let names = args[0].as_string::<i32>();
            let missing_ok = args
                .get(1)
                .map(|a| a.as_boolean().clone())
                .unwrap_or_else(|| BooleanArray::from(vec![false; rows]));
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                if names.is_null(i) {
                    out.push(None);
                    continue;
                }
                match s.get(names.value(i)) {
                    Some(v) => out.push(Some(v)),
                    None if missing_ok.value(i) => out.push(None),
                    None => {
                        return Err(DataFusionError::External(Box::new(
                            crate::errors::SqlError::coded(
                                "42704",
                                format!(
                                    "unrecognized configuration parameter \"{}\"",
                                    names.value(i)
                                ),
                            ),
                        )));
                    }
                }
            }
            Ok(Arc::new(StringArray::from(out)))
        }),
    ));
    ctx.register_udf(udf(
        "pg_size_pretty",
        vec![TypeSignature::Exact(vec![DataType::Int64])],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args, _| {
            let a = args[0].as_primitive::<Int64Type>();
            Ok(Arc::new(
                a.iter()
                    .map(|v| v.map(size_pretty))
                    .collect::<StringArray>(),
            ))
        }),
    ));
    // Sizes of relations: not tracked per OID, reported as unknown rather than invented.
    for name in ["pg_table_size", "pg_indexes_size", "pg_database_size"] {
        ctx.register_udf(udf(
            name,
            vec![TypeSignature::Any(1)],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|_, rows| Ok(Arc::new(Int64Array::from(vec![None::<i64>; rows])))),
        ));
    }
    // Texts flashsql does not keep: descriptions; the signatures of catalogued functions
    // (psql's `\df`: the static pg_proc holds PostgreSQL's own built-ins only); and the
    // sequence a column owns (there are no serial columns; SQLAlchemy's get_columns asks);
    // index definitions (flashsql tables have no indexes; pgjdbc's getIndexInfo asks).
    for (name, arity) in [
        ("obj_description", vec![1, 2]),
        ("col_description", vec![2]),
        ("shobj_description", vec![2]),
        ("pg_get_function_result", vec![1]),
        ("pg_get_function_arguments", vec![1]),
        ("pg_get_function_identity_arguments", vec![1]),
        ("pg_get_function_sqlbody", vec![1]),
        ("pg_get_serial_sequence", vec![2]),
        ("pg_get_indexdef", vec![1, 3]),
        // There are no triggers, tablespaces or user functions with a body to show, and no
        // object depends on an extension (psql's `\dx+`).
        ("pg_describe_object", vec![3]),
        ("pg_get_triggerdef", vec![1, 2]),
        ("pg_tablespace_location", vec![1]),
        ("pg_get_functiondef", vec![1]),
    ] {
        ctx.register_udf(udf(
            name,
            arity.into_iter().map(TypeSignature::Any).collect(),
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|_, rows| null_text(rows)),
        ));
    }
    // A single server: never in recovery, so WAL replay is never paused (pgAdmin asks).
    for name in ["pg_is_in_recovery", "pg_is_wal_replay_paused"] {
        ctx.register_udf(udf(
            name,
            vec![TypeSignature::Nullary],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_, rows| Ok(Arc::new(BooleanArray::from(vec![false; rows])))),
        ));
    }
    ctx.register_udf(udf(
        "getdatabaseencoding",
        vec![TypeSignature::Nullary],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_, rows| Ok(Arc::new(StringArray::from(vec!["UTF8"; rows])))),
    ));
    // The one encoding the server speaks (psql's `\dO` lists conversions by it).
    ctx.register_udf(udf(
        "pg_char_to_encoding",
        vec![TypeSignature::Exact(vec![DataType::Utf8])],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args, _| {
            let names = args[0].as_string::<i32>();
            Ok(Arc::new(
                names
                    .iter()
                    .map(|n| {
                        n.map(
                            |n| match n.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
                                "UTF8" | "UNICODE" => 6,
                                "SQLASCII" => 0,
                                _ => -1,
                            },
                        )
                    })
                    .collect::<datafusion::arrow::array::Int32Array>(),
            ))
        }),
    ));
    ctx.register_udf(udf(
        "pg_is_other_temp_schema",
        vec![TypeSignature::Any(1)],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_, rows| Ok(Arc::new(BooleanArray::from(vec![false; rows])))),
    ));
    // Every function, type, collation and operator is on the search path (psql's `\df`,
    // `\dT`, `\do`, `\dc`, `\dF` filter by it; SQLAlchemy's column reflection asks of
    // collations).
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_conversion_is_visible",
        "pg_statistics_obj_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
    ] {
        ctx.register_udf(udf(
            name,
            vec![TypeSignature::Any(1)],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args, rows| {
                Ok(Arc::new(
                    (0..rows)
                        .map(|i| (!args[0].is_null(i)).then_some(true))
                        .collect::<BooleanArray>(),
                ))
            }),
        ));
    }
    ctx.register_udf(udf(
        "regexp_split_to_array",
        vec![
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
        ],
        DataType::new_list(DataType::Utf8, true),
        Volatility::Immutable,
        Arc::new(split_rows),
    ));
    ctx.register_udf(udf(
        "format",
        vec![TypeSignature::VariadicAny],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(format_rows),
    ));
    let s = settings.clone();
    ctx.register_udf(udf(
        "set_config",
        vec![TypeSignature::Exact(vec![
            DataType::Utf8,
            DataType::Utf8,
            DataType::Boolean,
        ])],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args, rows| {
            let (names, values) = (args[0].as_string::<i32>(), args[1].as_string::<i32>());
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                if names.is_null(i) {
                    return Err(coded(
                        "22004",
                        "set_config: the parameter name is NULL".into(),
                    ));
                }
                let (name, value) = (names.value(i), values.value(i));
                if s.get(name).is_none() && !name.contains('.') {
                    return Err(coded(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
                if name.starts_with("datafusion.") {
                    return Err(coded(
                        "0A000",
                        format!("set_config of \"{name}\": use SET {name} = …"),
                    ));
                }
                s.set(name, value);
                out.push(Some(value.to_string()));
            }
            Ok(Arc::new(StringArray::from(out)))
        }),
    ));
    ctx.register_udf(udf(
        "json_build_object",
        vec![TypeSignature::VariadicAny, TypeSignature::Nullary],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(json_build_object),
    ));
    ctx.register_udf(udf(
        EXPANDARRAY,
        vec![TypeSignature::Any(1)],
        expandarray_type(),
        Volatility::Immutable,
        Arc::new(|args, _| expand_array(&args[0])),
    ));
    ctx.register_udf(udf(
        "pg_get_viewdef",
        vec![TypeSignature::Any(1), TypeSignature::Any(2)],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_, rows| null_text(rows)),
    ));
}

/// The name under which `information_schema._pg_expandarray` is planned (see
/// `rewrite::client_expressions`).
pub const EXPANDARRAY: &str = "_pg_expandarray";

/// `_pg_expandarray`'s rows, as one list per input row: each element with its 1-based
/// position, the `(x, n)` records PostgreSQL's set-returning function yields.
fn expandarray_type() -> DataType {
    DataType::new_list(DataType::Struct(expandarray_fields()), true)
}

fn expandarray_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int64, false),
    ])
}

/// An array given as a list or, for `int2vector` columns (`pg_index.indkey`), as the text
/// PostgreSQL prints for it (`"1 2"`).
fn expand_array(input: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::compute::cast;
    let (text, list) = match input.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (Some(cast(input, &DataType::Utf8)?), None)
        }
        DataType::List(_) | DataType::LargeList(_) => (
            None,
            Some(cast(input, &DataType::new_list(DataType::Int64, true))?),
        ),
        other => {
            return Err(DataFusionError::Plan(format!(
                "function {EXPANDARRAY}({other}) does not exist"
            )));
        }
    };
    let elements = |i: usize| -> Result<Option<Vec<Option<i64>>>> {
        if input.is_null(i) {
            return Ok(None);
        }
        if let Some(list) = &list {
            let values = list.as_list::<i32>().value(i);
            return Ok(Some(values.as_primitive::<Int64Type>().iter().collect()));
        }
        let text = text
            .as_ref()
            .map(|t| t.as_string::<i32>().value(i))
            .unwrap_or_default();
        text.split_whitespace()
            .map(|t| {
                t.parse::<i64>().map(Some).map_err(|_| {
                    DataFusionError::Execution(format!(
                        "invalid input syntax for type int2vector: \"{text}\""
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    };
    let mut builder =
        ListBuilder::new(StructBuilder::from_fields(expandarray_fields(), 0)).with_field(Arc::new(
            Field::new_list_field(DataType::Struct(expandarray_fields()), true),
        ));
    for i in 0..input.len() {
        match elements(i)? {
            None => builder.append(false),
            Some(values) => {
                let record = builder.values();
                for (n, x) in values.into_iter().enumerate() {
                    record
                        .field_builder::<Int64Builder>(0)
                        .ok_or_else(|| DataFusionError::Internal("x builder".into()))?
                        .append_option(x);
                    record
                        .field_builder::<Int64Builder>(1)
                        .ok_or_else(|| DataFusionError::Internal("n builder".into()))?
                        .append_value(n as i64 + 1);
                    record.append(true);
                }
                builder.append(true);
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// PostgreSQL's `json_build_object(key, value, …)`, as text in PostgreSQL's layout
/// (`{"a" : 1, "b" : "x"}`). SQLAlchemy's column reflection builds one per column.
fn json_build_object(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    if !args.len().is_multiple_of(2) {
        return Err(DataFusionError::External(Box::new(
            crate::errors::SqlError::coded(
                "22023",
                "argument list must have even number of elements",
            ),
        )));
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut members = Vec::with_capacity(args.len() / 2);
        for pair in args.chunks(2) {
            let key = ScalarValue::try_from_array(&pair[0], row)?;
            if key.is_null() {
                return Err(DataFusionError::External(Box::new(
                    crate::errors::SqlError::coded(
                        "22004",
                        "null value not allowed for object key",
                    ),
                )));
            }
            let key = scalar_text(&key);
            let value = json_value(&ScalarValue::try_from_array(&pair[1], row)?);
            members.push(format!("{} : {value}", serde_json::Value::String(key)));
        }
        out.push(format!("{{{}}}", members.join(", ")));
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// A value as text, without the quotes `ScalarValue`'s display puts on strings.
/// `regexp_split_to_array(text, pattern [, flags])` row by row (see [`regexp_split`]).
fn split_rows(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let text = args[0].as_string::<i32>();
    let patterns = args[1].as_string::<i32>();
    let flags = args.get(2).map(|a| a.as_string::<i32>());
    let mut out = ListBuilder::new(StringBuilder::new());
    let mut compiled: Option<(String, String, regex::Regex)> = None;
    for i in 0..rows {
        let flag = flags.map(|f| if f.is_null(i) { "" } else { f.value(i) });
        if text.is_null(i) || patterns.is_null(i) || flags.is_some_and(|f| f.is_null(i)) {
            out.append_null();
            continue;
        }
        let (pattern, flag) = (patterns.value(i), flag.unwrap_or(""));
        let reuse = compiled
            .as_ref()
            .is_some_and(|(p, f, _)| p == pattern && f == flag);
        if !reuse {
            compiled = Some((
                pattern.to_string(),
                flag.to_string(),
                split_regex(pattern, flag)?,
            ));
        }
        let Some((_, _, re)) = &compiled else {
            continue;
        };
        for piece in regexp_split(re, text.value(i)) {
            out.values().append_value(piece);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// The pattern with PostgreSQL's flags `i` (case-insensitive) and `c` (case-sensitive, the
/// default); `g` is refused, as PostgreSQL does for a split.
fn split_regex(pattern: &str, flags: &str) -> Result<regex::Regex> {
    let mut builder = regex::RegexBuilder::new(pattern);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'c' => builder.case_insensitive(false),
            other => {
                return Err(coded(
                    "22023",
                    format!("invalid regular expression option: \"{other}\""),
                ));
            }
        };
    }
    builder
        .build()
        .map_err(|e| coded("2201B", format!("invalid regular expression: {e}")))
}

/// The pieces of `text` between the matches of `re`, as PostgreSQL splits: an empty match
/// at the start, at the end or right after the previous match does not split.
fn regexp_split<'a>(re: &regex::Regex, text: &'a str) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous_end = None;
    for m in re.find_iter(text) {
        let empty = m.start() == m.end();
        if empty && (m.start() == 0 || m.start() == text.len() || previous_end == Some(m.start())) {
            continue;
        }
        pieces.push(&text[start..m.start()]);
        start = m.end();
        previous_end = Some(m.end());
    }
    pieces.push(&text[start..]);
    pieces
}

fn coded(code: &'static str, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(crate::errors::SqlError::coded(code, message)))
}

/// PostgreSQL's `format(fmt, args…)`: `%s` (the value as text, NULL as nothing), `%I`
/// (quoted as an identifier where needed), `%L` (as a literal, NULL as `NULL`), `%%`, and
/// positions (`%2$s`). Metabase builds names with it.
fn format_rows(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let fmt = ScalarValue::try_from_array(&args[0], row)?;
        if fmt.is_null() {
            out.push(None);
            continue;
        }
        let values = args[1..]
            .iter()
            .map(|a| ScalarValue::try_from_array(a, row))
            .collect::<Result<Vec<_>>>()?;
        out.push(Some(format_one(&scalar_text(&fmt), &values)?));
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn format_one(fmt: &str, values: &[ScalarValue]) -> Result<String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if digits.is_empty() {
            None
        } else if chars.next_if_eq(&'$').is_some() {
            Some(digits.parse::<usize>().unwrap_or(0))
        } else {
            return Err(coded("0A000", "format(): widths are not supported".into()));
        };
        let kind = chars
            .next()
            .ok_or_else(|| coded("22023", "unterminated format() type specifier".into()))?;
        if kind == '%' && index.is_none() {
            out.push('%');
            continue;
        }
        let i = match index {
            Some(0) => return Err(coded("22023", "format specifies argument 0".into())),
            Some(n) => n - 1,
            None => next,
        };
        next = i + 1;
        let value = values
            .get(i)
            .ok_or_else(|| coded("22023", "too few arguments for format()".into()))?;
        match kind {
            's' => {
                if !value.is_null() {
                    out.push_str(&scalar_text(value));
                }
            }
            'I' => {
                if value.is_null() {
                    return Err(coded(
                        "22004",
                        "null values cannot be formatted as an SQL identifier".into(),
                    ));
                }
                out.push_str(&quote_ident(&scalar_text(value)));
            }
            'L' => {
                if value.is_null() {
                    out.push_str("NULL");
                } else {
                    out.push('\'');
                    out.push_str(&scalar_text(value).replace('\'', "''"));
                    out.push('\'');
                }
            }
            other => {
                return Err(coded(
                    "22023",
                    format!("unrecognized format() type specifier \"{other}\""),
                ));
            }
        }
    }
    Ok(out)
}

/// An identifier as PostgreSQL's `quote_ident` writes it: bare if it is lower case letters,
/// digits and underscores not starting with a digit, quoted otherwise.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

/// A value as JSON: numbers and booleans as themselves, NULL as null, the rest as strings.
fn json_value(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Float32(Some(f)) if f.is_finite() => v.to_string(),
        ScalarValue::Float64(Some(f)) if f.is_finite() => v.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..) => v.to_string(),
        other => serde_json::Value::String(scalar_text(other)).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_pg_expandarray` yields each element with its 1-based position, from an `int2vector`'s
    /// text or from a list; NULL stays NULL.
    #[test]
    fn expand_array_numbers_elements() {
        use datafusion::arrow::array::ListArray;
        use datafusion::arrow::datatypes::Int16Type;
        let pairs = |out: ArrayRef, row: usize| -> Option<Vec<(Option<i64>, i64)>> {
            let lists = out.as_list::<i32>();
            if lists.is_null(row) {
                return None;
            }
            let records = lists.value(row);
            let records = records.as_struct();
            let x = records.column(0).as_primitive::<Int64Type>();
            let n = records.column(1).as_primitive::<Int64Type>();
            Some(
                (0..records.len())
                    .map(|i| (x.iter().nth(i).flatten(), n.value(i)))
                    .collect(),
            )
        };
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("3 1"), None, Some("")]));
        let out = expand_array(&text).expect("expands text");
        assert_eq!(
            pairs(out.clone(), 0),
            Some(vec![(Some(3), 1), (Some(1), 2)])
        );
        assert_eq!(pairs(out.clone(), 1), None);
        assert_eq!(pairs(out, 2), Some(vec![]));
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int16Type, _, _>(vec![
            Some(vec![Some(5), None]),
        ]));
        let out = expand_array(&list).expect("expands a list");
        assert_eq!(pairs(out, 0), Some(vec![(Some(5), 1), (None, 2)]));
        assert!(expand_array(&(Arc::new(StringArray::from(vec!["1 x"])) as ArrayRef)).is_err());
    }

    #[test]
    fn json_build_object_matches_postgres_layout() {
        use datafusion::arrow::array::{Float64Array, Int64Array};
        let args: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "a"])),
            Arc::new(Int64Array::from(vec![Some(1), None])),
            Arc::new(StringArray::from(vec!["b\"q", "b\"q"])),
            Arc::new(StringArray::from(vec![Some("x"), Some("y\n")])),
            Arc::new(StringArray::from(vec!["c", "c"])),
            Arc::new(Float64Array::from(vec![0.5, f64::NAN])),
        ];
        let out = json_build_object(&args, 2).expect("builds");
        let out = out.as_string::<i32>();
        // psql: SELECT json_build_object('a', 1, 'b"q', 'x', 'c', 0.5::float8);
        assert_eq!(out.value(0), r#"{"a" : 1, "b\"q" : "x", "c" : 0.5}"#);
        assert_eq!(out.value(1), r#"{"a" : null, "b\"q" : "y\n", "c" : "NaN"}"#);
        assert!(json_build_object(&args[..3], 2).is_err());
    }

    /// Splits as PostgreSQL 15 returns them (`regexp_split_to_array`).
    #[test]
    fn splits_match_postgres() {
        let split = |text: &str, pattern: &str| {
            regexp_split(&split_regex(pattern, "").expect("compiles"), text)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            split("hello world  again", r"\s+"),
            ["hello", "world", "again"]
        );
        assert_eq!(split("abc", ""), ["a", "b", "c"]);
        assert_eq!(split(",a,,b,", ","), ["", "a", "", "b", ""]);
        assert_eq!(split("", ","), [""]);
        assert_eq!(split("a1b22c", r"\d*"), ["a", "b", "c"]);
        assert_eq!(
            regexp_split(&split_regex("X", "i").expect("compiles"), "axbXc"),
            ["a", "b", "c"]
        );
        assert!(split_regex("x", "g").is_err());
    }

    #[test]
    fn format_matches_postgres() {
        // Expected strings from PostgreSQL 15's format().
        let v = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
        let args = [v("public"), v("Items"), ScalarValue::Utf8(None), v("it's")];
        assert_eq!(
            format_one("%I.%I %s|%L %%", &args).expect("formats"),
            "public.\"Items\" |'it''s' %"
        );
        assert_eq!(
            format_one("%L", &[ScalarValue::Utf8(None)]).expect("formats"),
            "NULL"
        );
        assert_eq!(
            format_one("%2$s-%1$s", &args).expect("formats"),
            "Items-public"
        );
        assert!(
            format_one("%s %s %s %s %s", &args).is_err(),
            "too few arguments"
        );
        assert!(format_one("%I", &[ScalarValue::Utf8(None)]).is_err());
    }

    #[test]
    fn size_pretty_matches_postgres() {
        // Outputs of PostgreSQL's algorithm at its unit boundaries.
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10_239), "10239 bytes");
        assert_eq!(size_pretty(10_240), "10 kB");
        assert_eq!(size_pretty(1_048_576), "1024 kB");
        assert_eq!(size_pretty(10_485_760), "10 MB");
        assert_eq!(size_pretty(5_368_709_120), "5120 MB");
    }

    #[test]
    fn version_parses_as_postgres_16() {
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 16."), "{v}");
        assert!(v.contains("flashsql"), "{v}");
        assert!(server_version().starts_with("16."));
    }
}
