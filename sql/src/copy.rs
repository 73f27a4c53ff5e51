//! `COPY … FROM STDIN` and `COPY … TO STDOUT` in PostgreSQL's text and CSV formats.
//!
//! Input is parsed completely and every value converted to its column's type before
//! anything is written, so a malformed line fails the whole COPY (SQLSTATE 22P02 with the
//! line number) and loads nothing.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::messages::copy::CopyData;

use crate::errors::SqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Text,
    Csv,
}

/// The options of one COPY statement.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    pub kind: CopyKind,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    /// Reads the options in both the modern (`WITH (FORMAT csv, …)`) and the legacy
    /// (`CSV HEADER`) syntax.
    pub fn from_options(
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<Self, SqlError> {
        let mut kind = CopyKind::Text;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = b'"';
        let mut escape = None;
        let byte = |c: char, what: &str| -> Result<u8, SqlError> {
            if c.is_ascii() {
                Ok(c as u8)
            } else {
                Err(SqlError::coded(
                    "0A000",
                    format!("COPY {what} must be a single one-byte character"),
                ))
            }
        };
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    kind = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyKind::Text,
                        "csv" => CopyKind::Csv,
                        "binary" => {
                            return Err(SqlError::not_supported(
                                "COPY in binary format: use FORMAT text or csv",
                            ));
                        }
                        other => {
                            return Err(SqlError::coded(
                                "22023",
                                format!("COPY format \"{other}\" not recognized"),
                            ));
                        }
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = byte(*c, "quote")?,
                CopyOption::Escape(c) => escape = Some(byte(*c, "escape")?),
                CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
                other => {
                    return Err(SqlError::not_supported(format!("COPY option {other}")));
                }
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(opts) => {
                    kind = CopyKind::Csv;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = byte(*q, "quote")?,
                            CopyLegacyCsvOption::Escape(e) => escape = Some(byte(*e, "escape")?),
                            other => {
                                return Err(SqlError::not_supported(format!(
                                    "COPY option {other}"
                                )));
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Binary => {
                    return Err(SqlError::not_supported(
                        "COPY in binary format: use FORMAT text or csv",
                    ));
                }
                other => return Err(SqlError::not_supported(format!("COPY option {other}"))),
            }
        }
        if header && kind == CopyKind::Text {
            return Err(SqlError::coded(
                "0A000",
                "COPY HEADER is available only in CSV mode",
            ));
        }
        let (default_delim, default_null) = match kind {
            CopyKind::Text => (b'\t', "\\N"),
            CopyKind::Csv => (b',', ""),
        };
        Ok(CopyFormat {
            kind,
            delimiter: delimiter.unwrap_or(default_delim),
            null: null.unwrap_or_else(|| default_null.to_string()),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

/// One input record: its first line number and its fields (`None` = NULL).
struct Record {
    line: usize,
    fields: Vec<Option<String>>,
}

fn bad_format(line: usize, message: impl Into<String>) -> SqlError {
    SqlError::coded("22P04", format!("{}, line {line}", message.into()))
}

fn text_records(data: &str, fmt: &CopyFormat) -> Result<Vec<Record>, SqlError> {
    let mut out = Vec::new();
    let n_lines = data.split('\n').count();
    for (i, raw) in data.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line == "\\." {
            break;
        }
        if line.is_empty() && i + 1 == n_lines {
            continue; // the newline that ends the last line
        }
        let mut fields = Vec::new();
        for raw_field in line.split(fmt.delimiter as char) {
            if raw_field == fmt.null {
                fields.push(None);
                continue;
            }
            fields.push(Some(
                unescape_text(raw_field).map_err(|m| bad_format(i + 1, m))?,
            ));
        }
        out.push(Record {
            line: i + 1,
            fields,
        });
    }
    Ok(out)
}

/// Undoes the backslash escapes of PostgreSQL's text format.
fn unescape_text(s: &str) -> Result<String, String> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut buf: Vec<u8> = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' || i + 1 == bytes.len() {
            buf.push(b);
            i += 1;
            continue;
        }
        let n = bytes[i + 1];
        i += 2;
        match n {
            b'b' => buf.push(8),
            b'f' => buf.push(12),
            b'n' => buf.push(b'\n'),
            b'r' => buf.push(b'\r'),
            b't' => buf.push(b'\t'),
            b'v' => buf.push(11),
            b'0'..=b'7' => {
                let mut v = (n - b'0') as u32;
                let mut k = 0;
                while k < 2 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    v = v * 8 + (bytes[i] - b'0') as u32;
                    i += 1;
                    k += 1;
                }
                buf.push((v & 0xFF) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 2 && i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                    v = v * 16 + (bytes[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    k += 1;
                }
                buf.push(v as u8);
            }
            other => buf.push(other),
        }
    }
    out.push_str(
        &String::from_utf8(buf)
            .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())?,
    );
    Ok(out)
}

fn csv_records(data: &str, fmt: &CopyFormat) -> Result<Vec<Record>, SqlError> {
    let mut out = Vec::new();
    let bytes = data.as_bytes();
    let mut i = 0;
    let mut line = 1;
    while i < bytes.len() {
        let start_line = line;
        // End-of-data marker on its own line.
        if bytes[i..].starts_with(b"\\.") {
            let rest = &bytes[i + 2..];
            if rest.is_empty() || rest[0] == b'\n' || rest.starts_with(b"\r\n") {
                break;
            }
        }
        let mut fields = Vec::new();
        let mut field: Vec<u8> = Vec::new();
        let mut quoted = false;
        let mut in_quotes = false;
        loop {
            if i >= bytes.len() {
                if in_quotes {
                    return Err(bad_format(start_line, "unterminated CSV quoted field"));
                }
                break;
            }
            let b = bytes[i];
            if in_quotes {
                if b == fmt.escape
                    && i + 1 < bytes.len()
                    && bytes[i + 1] == fmt.quote
                    && fmt.escape != fmt.quote
                {
                    field.push(fmt.quote);
                    i += 2;
                } else if b == fmt.quote {
                    if fmt.escape == fmt.quote && i + 1 < bytes.len() && bytes[i + 1] == fmt.quote {
                        field.push(fmt.quote);
                        i += 2;
                    } else {
                        in_quotes = false;
                        i += 1;
                    }
                } else {
                    if b == b'\n' {
                        line += 1;
                    }
                    field.push(b);
                    i += 1;
                }
                continue;
            }
            if b == fmt.quote {
                in_quotes = true;
                quoted = true;
                i += 1;
            } else if b == fmt.delimiter {
                fields.push(finish_csv_field(&mut field, quoted, fmt, start_line)?);
                quoted = false;
                i += 1;
            } else if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                i += if b == b'\r' { 2 } else { 1 };
                line += 1;
                break;
            } else {
                field.push(b);
                i += 1;
            }
        }
        fields.push(finish_csv_field(&mut field, quoted, fmt, start_line)?);
        out.push(Record {
            line: start_line,
            fields,
        });
    }
    Ok(out)
}

fn finish_csv_field(
    field: &mut Vec<u8>,
    quoted: bool,
    fmt: &CopyFormat,
    line: usize,
) -> Result<Option<String>, SqlError> {
    let raw = std::mem::take(field);
    let s = String::from_utf8(raw)
        .map_err(|_| bad_format(line, "invalid byte sequence for encoding \"UTF8\""))?;
    // An unquoted value equal to the NULL string is NULL; a quoted one never is.
    if !quoted && s == fmt.null {
        Ok(None)
    } else {
        Ok(Some(s))
    }
}

/// Parses COPY input into a batch with `schema` (the target columns, in input order).
pub fn decode(
    data: &[u8],
    fmt: &CopyFormat,
    schema: &SchemaRef,
    table: &str,
) -> Result<RecordBatch, SqlError> {
    let text = std::str::from_utf8(data).map_err(|e| {
        SqlError::coded(
            "22021",
            format!(
                "invalid byte sequence for encoding \"UTF8\" at byte {}",
                e.valid_up_to()
            ),
        )
    })?;
    let mut records = match fmt.kind {
        CopyKind::Text => text_records(text, fmt)?,
        CopyKind::Csv => csv_records(text, fmt)?,
    };
    if fmt.header && !records.is_empty() {
        records.remove(0);
    }
    let n_cols = schema.fields().len();
    for r in &records {
        if r.fields.len() > n_cols {
            return Err(bad_format(
                r.line,
                format!("extra data after last expected column (COPY {table})"),
            ));
        }
        if r.fields.len() < n_cols {
            let missing = schema.field(r.fields.len()).name();
            return Err(bad_format(
                r.line,
                format!("missing data for column \"{missing}\" (COPY {table})"),
            ));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(n_cols);
    for (c, field) in schema.fields().iter().enumerate() {
        let strings = StringArray::from(
            records
                .iter()
                .map(|r| r.fields[c].as_deref())
                .collect::<Vec<_>>(),
        );
        let target = field.data_type();
        // A value that was present but did not convert is a malformed line.
        let converted =
            flashsql_udfs::array_text::read_column(&strings, target).map_err(|bad| {
                let line = records.get(bad.index).map_or(0, |r| r.line);
                SqlError::coded(
                    "22P02",
                    format!(
                        "{} (COPY {table}, line {line}, column {})",
                        bad.reason,
                        field.name()
                    ),
                )
            })?;
        for (row, r) in records.iter().enumerate() {
            if !field.is_nullable() && strings.is_null(row) {
                return Err(SqlError::coded(
                    "23502",
                    format!(
                        "null value in column \"{}\" violates not-null constraint (COPY {table}, line {})",
                        field.name(),
                        r.line
                    ),
                ));
            }
        }
        columns.push(converted);
    }
    if columns.is_empty() {
        return Err(SqlError::coded("42601", "COPY needs at least one column"));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// Widens a batch of some of a table's columns to all of them (the others NULL), in the
/// table's order.
pub fn widen(batch: &RecordBatch, table_schema: &SchemaRef) -> Result<RecordBatch, SqlError> {
    let cols = table_schema
        .fields()
        .iter()
        .map(|f| match batch.schema().index_of(f.name()) {
            Ok(i) => batch.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect::<Vec<_>>();
    Ok(RecordBatch::try_new(table_schema.clone(), cols)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// Encodes result batches as COPY data rows.
pub struct CopyOutEncoder {
    fields: Arc<Vec<FieldInfo>>,
    encoder: CopyEncoder,
    header: Option<Bytes>,
}

impl CopyOutEncoder {
    pub fn new(fields: Arc<Vec<FieldInfo>>, fmt: &CopyFormat) -> Self {
        let delimiter = (fmt.delimiter as char).to_string();
        let encoder = match fmt.kind {
            CopyKind::Text => CopyEncoder::new_text(
                fields.clone(),
                CopyTextOptions {
                    delimiter: delimiter.as_str().into(),
                    null_string: fmt.null.as_str().into(),
                },
            ),
            CopyKind::Csv => {
                let opts = CopyCsvOptions {
                    delimiter: delimiter.as_str().into(),
                    null_string: fmt.null.as_str().into(),
                    quote: (fmt.quote as char).to_string().as_str().into(),
                    escape: (fmt.escape as char).to_string().as_str().into(),
                    ..Default::default()
                };
                CopyEncoder::new_csv(fields.clone(), opts)
            }
        };
        let header = (fmt.header && fmt.kind == CopyKind::Csv).then(|| {
            let names: Vec<String> = fields
                .iter()
                .map(|f| csv_quote_if_needed(f.name(), fmt))
                .collect();
            Bytes::from(format!("{}\n", names.join(&delimiter)))
        });
        Self {
            fields,
            encoder,
            header,
        }
    }

    /// The header line, if the format has one and it has not been taken yet.
    pub fn take_header(&mut self) -> Option<CopyData> {
        self.header.take().map(CopyData::new)
    }

    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<CopyData>, SqlError> {
        let schema = batch.schema();
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for (c, col) in batch.columns().iter().enumerate() {
                arrow_pg::encoder::encode_value(
                    &mut self.encoder,
                    col,
                    row,
                    schema.field(c),
                    &self.fields[c],
                )?;
            }
            let mut data = self.encoder.take_copy();
            if let Some(h) = self.header.take() {
                let mut joined = h.to_vec();
                joined.extend_from_slice(&data.data);
                data = CopyData::new(Bytes::from(joined));
            }
            out.push(data);
        }
        Ok(out)
    }
}

fn csv_quote_if_needed(s: &str, fmt: &CopyFormat) -> String {
    let q = fmt.quote as char;
    if s.contains(fmt.delimiter as char) || s.contains(q) || s.contains('\n') || s.contains('\r') {
        format!("{q}{}{q}", s.replace(q, &format!("{q}{q}")))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn fmt(kind: CopyKind, header: bool) -> CopyFormat {
        CopyFormat {
            kind,
            delimiter: if kind == CopyKind::Csv { b',' } else { b'\t' },
            null: if kind == CopyKind::Csv {
                String::new()
            } else {
                "\\N".into()
            },
            header,
            quote: b'"',
            escape: b'"',
        }
    }

    #[test]
    fn text_format_with_escapes_and_nulls() {
        let b = decode(
            b"1\ta\\tb\n2\t\\N\n\\.\n",
            &fmt(CopyKind::Text, false),
            &schema(),
            "t",
        )
        .unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 2])
        );
        let names = b.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a\tb");
        assert!(names.is_null(1));
    }

    #[test]
    fn csv_quoting_header_and_null_vs_empty() {
        let data = b"id,name\n1,\"x, \"\"y\"\"\"\n2,\n3,\"\"\n4,\"multi\nline\"\n";
        let b = decode(data, &fmt(CopyKind::Csv, true), &schema(), "t").unwrap();
        assert_eq!(b.num_rows(), 4);
        let names = b.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "x, \"y\"");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "");
        assert_eq!(names.value(3), "multi\nline");
    }

    #[test]
    fn malformed_value_names_the_line() {
        let e = decode(b"1\ta\nx\tb\n", &fmt(CopyKind::Text, false), &schema(), "t").unwrap_err();
        let cl = crate::errors::classify_sql(&e);
        assert_eq!(cl.code, "22P02");
        assert!(cl.message.contains("line 2"), "{}", cl.message);
        let e = decode(
            b"1\ta\textra\n",
            &fmt(CopyKind::Text, false),
            &schema(),
            "t",
        )
        .unwrap_err();
        assert_eq!(crate::errors::classify_sql(&e).code, "22P04");
    }
}
