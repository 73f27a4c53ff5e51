//! PostgreSQL names of Arrow types, as `information_schema` and `format_type` show them.

use datafusion::arrow::datatypes::DataType;

/// The SQL-standard name PostgreSQL puts in `information_schema.columns.data_type`.
pub fn pg_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::UInt64 | DataType::Decimal32(..) | DataType::Decimal64(..) => "numeric",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_) | DataType::Duration(_) => "interval",
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => "ARRAY",
        DataType::Null => "unknown",
        DataType::Dictionary(_, v) => pg_type_name(v),
        _ => "USER-DEFINED",
    }
}

/// PostgreSQL's internal type name (`udt_name`): `int8`, `float8`, `_float4`, …
pub fn pg_udt_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "bool".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "int2".into(),
        DataType::Int32 | DataType::UInt16 => "int4".into(),
        DataType::Int64 | DataType::UInt32 => "int8".into(),
        DataType::Float16 | DataType::Float32 => "float4".into(),
        DataType::Float64 => "float8".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => format!("_{}", pg_udt_name(f.data_type())),
        DataType::Dictionary(_, v) => pg_udt_name(v),
        other => match pg_type_name(other) {
            "numeric" => "numeric".into(),
            "text" => "text".into(),
            "bytea" => "bytea".into(),
            "date" => "date".into(),
            "interval" => "interval".into(),
            n => n.into(),
        },
    }
}

/// `(numeric_precision, numeric_scale)` as PostgreSQL reports them.
pub fn pg_numeric_precision(t: &DataType) -> (Option<i32>, Option<i32>) {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (Some(16), Some(0)),
        DataType::Int32 | DataType::UInt16 => (Some(32), Some(0)),
        DataType::Int64 | DataType::UInt32 => (Some(64), Some(0)),
        DataType::Float16 | DataType::Float32 => (Some(24), None),
        DataType::Float64 => (Some(53), None),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (Some(*p as i32), Some(*s as i32))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn common_types_have_postgres_names() {
        assert_eq!(pg_type_name(&DataType::Int64), "bigint");
        assert_eq!(pg_type_name(&DataType::Float64), "double precision");
        assert_eq!(pg_type_name(&DataType::Utf8View), "text");
        assert_eq!(
            pg_type_name(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            "timestamp without time zone"
        );
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)));
        assert_eq!(pg_type_name(&list), "ARRAY");
        assert_eq!(pg_udt_name(&list), "_float4");
        assert_eq!(pg_udt_name(&DataType::Int64), "int8");
    }
}
