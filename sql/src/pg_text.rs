//! Times in PostgreSQL's text form: seconds carry a fraction only when there is one, without
//! trailing zeros (`12:00:01`, `12:00:01.5`), where the protocol library always writes six
//! digits (`12:00:01.000000`). psql, BI tools and text-format drivers show what arrives.
//!
//! The library encodes rows as [`DataRow`]s; this rewrites the values of time columns sent as
//! text in place, once per row, and leaves every other value's bytes as they are.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

/// Which columns of a result hold times sent as text, or `None` when none does.
pub fn time_columns(fields: &[FieldInfo]) -> Option<Vec<bool>> {
    let columns: Vec<bool> = fields
        .iter()
        .map(|f| {
            f.format() == FieldFormat::Text
                && matches!(
                    *f.datatype(),
                    Type::TIME
                        | Type::TIMETZ
                        | Type::TIMESTAMP
                        | Type::TIMESTAMPTZ
                        | Type::TIME_ARRAY
                        | Type::TIMESTAMP_ARRAY
                        | Type::TIMESTAMPTZ_ARRAY
                )
        })
        .collect();
    columns.contains(&true).then_some(columns)
}

/// `row` with the fractions of its time values trimmed (see the module's text).
pub fn trim_time_fractions(columns: &[bool], row: DataRow) -> DataRow {
    let data = &row.data;
    let mut out = BytesMut::with_capacity(data.len());
    let mut at = 0;
    for &time in columns {
        let Some(len) = data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_be_bytes)
        else {
            return row;
        };
        at += 4;
        if len < 0 {
            out.put_i32(len);
            continue;
        }
        let Some(value) = data.get(at..at + len as usize) else {
            return row;
        };
        at += len as usize;
        if time {
            let trimmed = trim(value);
            out.put_i32(trimmed.len() as i32);
            out.put_slice(&trimmed);
        } else {
            out.put_i32(len);
            out.put_slice(value);
        }
    }
    if at != data.len() {
        return row;
    }
    DataRow::new(out, row.field_count)
}

/// Every `HH:MM:SS.ffffff` in `value` with its fraction's trailing zeros (and a dot left
/// alone) removed.
fn trim(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let fraction = i >= 8
            && value[i] == b'.'
            && value[i - 3] == b':'
            && value[i - 1].is_ascii_digit()
            && value[i - 2].is_ascii_digit();
        if fraction {
            let digits = value[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let kept = value[i + 1..i + 1 + digits]
                .iter()
                .rposition(|&b| b != b'0')
                .map_or(0, |p| p + 1);
            if kept > 0 {
                out.extend_from_slice(&value[i..i + 1 + kept]);
            }
            i += 1 + digits;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> DataRow {
        let mut data = BytesMut::new();
        for v in values {
            match v {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        DataRow::new(data, values.len() as i16)
    }

    #[test]
    fn fractions_are_written_as_postgresql_writes_them() {
        let trimmed = |s: &str| String::from_utf8(trim(s.as_bytes())).expect("utf-8");
        assert_eq!(trimmed("12:00:01.000000"), "12:00:01");
        assert_eq!(trimmed("12:00:01.500000"), "12:00:01.5");
        assert_eq!(trimmed("2018-01-01 12:00:00.000000"), "2018-01-01 12:00:00");
        assert_eq!(
            trimmed("2026-12-01 10:57:08.727877+00"),
            "2026-12-01 10:57:08.727877+00"
        );
        assert_eq!(
            trimmed("2026-12-01 10:57:08.120000+05:30"),
            "2026-12-01 10:57:08.12+05:30"
        );
        assert_eq!(
            trimmed("Mon Jan 01 12:00:00.000000 2018"),
            "Mon Jan 01 12:00:00 2018"
        );
        assert_eq!(
            trimmed("{\"2018-01-01 12:00:00.000000\",\"2018-01-01 12:00:00.250000\"}"),
            "{\"2018-01-01 12:00:00\",\"2018-01-01 12:00:00.25\"}"
        );
        assert_eq!(trimmed("1.000000"), "1.000000", "not a time");
    }

    #[test]
    fn only_time_columns_change_and_nulls_stay() {
        let r = row(&[Some("1.000000"), Some("12:00:01.000000"), None]);
        let out = trim_time_fractions(&[false, true, true], r);
        assert_eq!(out, row(&[Some("1.000000"), Some("12:00:01"), None]));
        // A row that does not parse is passed on unchanged.
        let short = row(&[Some("12:00:01.000000")]);
        assert_eq!(trim_time_fractions(&[true, true], short.clone()), short);
    }
}
