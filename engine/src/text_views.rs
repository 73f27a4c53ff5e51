//! Text columns are stored as Arrow `Utf8` and scanned as string views (`Utf8View`).
//!
//! A string view is 16 bytes per value (short strings inline, longer ones pointing into
//! shared buffers), so operators that copy rows — joins, sorts, repartitioning, `take` —
//! copy views, not bytes. With `Utf8`, a join whose rows carry a 64 kB text built 8,192
//! copies a batch (half a gigabyte outside the memory pool), and scans decoded every text
//! into a fresh contiguous buffer; reading views, the analyst queries spent 9–28 % less
//! (benches/RESULTS.md). Files and the catalog keep `Utf8`, the type every reader of the
//! Parquet files knows; the scan schema is derived from it, and writes cast back.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;

/// The schema scans of a table stored as `stored` produce: top-level `Utf8` as views.
/// (`LargeUtf8`, which `string_agg` returns, is scanned as it is: a view of it would not
/// cast back to its stored type on write.)
pub fn scan_schema(stored: &SchemaRef) -> SchemaRef {
    map_fields(stored, |f| match f.data_type() {
        DataType::Utf8 => f.clone().with_data_type(DataType::Utf8View),
        _ => f.clone(),
    })
}

/// `schema` with each field mapped by `f`, its metadata kept.
fn map_fields(schema: &SchemaRef, f: impl Fn(&Field) -> Field) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(|field| f(field)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The type a column of `t` is stored as: views (also inside lists and structs, which a
/// query over scanned text can produce) become their contiguous forms.
pub fn stored_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(stored_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(stored_field(f))),
        DataType::ListView(f) | DataType::LargeListView(f) => {
            DataType::List(Arc::new(stored_field(f)))
        }
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(stored_field(f)), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| stored_field(f)).collect())
        }
        other => other.clone(),
    }
}

/// `schema` as a new table stores it (see [`stored_type`]).
pub fn stored_schema(schema: &SchemaRef) -> SchemaRef {
    map_fields(schema, stored_field)
}

fn stored_field(f: &Field) -> Field {
    f.clone().with_data_type(stored_type(f.data_type()))
}

/// A column of a batch being written, as the stored field wants it: a view cast to its
/// stored form; anything else as it is (the caller checks the types).
pub fn to_stored(column: &ArrayRef, field: &Field) -> Result<ArrayRef> {
    if column.data_type() != field.data_type()
        && &stored_type(column.data_type()) == field.data_type()
    {
        return Ok(cast(column, field.data_type())?);
    }
    Ok(column.clone())
}

/// `batch` with its text views cast to `stored`'s types (see [`to_stored`]).
pub fn batch_to_stored(batch: &RecordBatch, stored: &SchemaRef) -> Result<Vec<ArrayRef>> {
    stored
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| to_stored(c, f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array, StringViewArray};

    #[test]
    fn text_is_scanned_as_views_and_stored_contiguous() -> Result<()> {
        let stored: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
        ]));
        let scan = scan_schema(&stored);
        assert_eq!(scan.field(1).data_type(), &DataType::Utf8View);
        assert!(scan.field(1).is_nullable());
        assert_eq!(scan.field(2).data_type(), stored.field(2).data_type());
        assert_eq!(
            stored_type(&DataType::new_list(DataType::Utf8View, true)),
            DataType::new_list(DataType::Utf8, true)
        );

        let views: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("a long enough string to live in a buffer"),
            None,
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let tags: ArrayRef =
            datafusion::arrow::array::new_null_array(stored.field(2).data_type(), 2);
        let batch = RecordBatch::try_new(scan, vec![ids, views, tags])?;
        let columns = batch_to_stored(&batch, &stored)?;
        let text = columns[1].as_string::<i32>();
        assert_eq!(text.value(0), "a long enough string to live in a buffer");
        assert!(text.is_null(1));
        Ok(())
    }
}

#[cfg(test)]
mod through_the_engine {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use crate::Output;

    /// Every write path (INSERT, CTAS, UPDATE) stores text as `Utf8` while scans and joins
    /// see views, and the values survive the round trip; a `LargeUtf8` column (a CTAS of
    /// `string_agg`) still takes INSERTs.
    #[tokio::test]
    async fn writes_store_text_and_scans_read_views() {
        let (_dir, engine) = crate::test_support::engine().await;
        let session = engine.new_session().expect("session");
        for sql in [
            "CREATE TABLE t (id BIGINT, s TEXT NOT NULL)",
            "INSERT INTO t VALUES (1, 'short'), (2, repeat('long text ', 10))",
            "CREATE TABLE c AS SELECT a.id, a.s, b.s AS other FROM t a JOIN t b ON a.id <> b.id",
            "UPDATE c SET other = upper(other) WHERE id = 1",
            "INSERT INTO c SELECT id + 10, s, s AS other FROM t",
            "CREATE TABLE joined AS SELECT string_agg(s, ',') AS all_s FROM t",
            "INSERT INTO joined SELECT s FROM t",
        ] {
            session
                .sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let m = session.manifest();
        for name in ["t", "c"] {
            let def = m.table("public", name).expect("table");
            assert!(
                def.columns.iter().all(|c| c.data_type != "Utf8View"),
                "{name}: {:?}",
                def.columns
            );
            for file in &def.files {
                let path = engine.store().table_dir(def.id).join(file);
                let reader = ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(&path).expect("file"),
                )
                .expect("parquet");
                let text = reader
                    .schema()
                    .field_with_name("s")
                    .expect("s")
                    .data_type()
                    .clone();
                assert_eq!(text, DataType::Utf8, "{name}/{file}");
            }
        }
        let Output::Rows(df) = session
            .sql("SELECT id, s, other FROM c ORDER BY id")
            .await
            .expect("query")
        else {
            panic!("no rows");
        };
        let batches = df.collect().await.expect("runs");
        let batch = &batches[0];
        assert_eq!(batch.schema().field(1).data_type(), &DataType::Utf8View);
        let other = batch.column(2).as_string_view();
        let got: Vec<_> = (0..batch.num_rows())
            .map(|i| other.value(i).to_string())
            .collect();
        let long = "long text ".repeat(10);
        assert_eq!(
            got,
            [long.to_uppercase(), "short".into(), "short".into(), long]
        );
        assert!(!batch.column(1).is_null(0));
        let def = session.manifest();
        let joined = def.table("public", "joined").expect("table");
        assert_eq!(joined.columns[0].data_type, "LargeUtf8");
        assert_eq!(joined.rows, 3);
    }
}
