//! Lists of fixed-width numbers (`int[]`, `bigint[]`, `real[]`, `double precision[]`) are
//! stored packed: one Parquet byte array per row holding the row's values back to back.
//!
//! Why: a behaviour sequence is a list of up to 64 tokens, and a planning grid repeats one
//! user's sequence on every (item, discount) row. As a Parquet list, every token carries a
//! repetition and a definition level that the reader decodes one by one and turns into
//! offsets and validity bitmaps; on the small world's planning grid (2.1M rows) that was
//! most of the scan and more than half of scoring end to end (benches/RESULTS.md). Packed,
//! a row is one byte array: the reader copies bytes (and a dictionary page collapses the
//! repeated sequences), and the list comes back by reinterpreting the bytes as numbers.
//!
//! Only the files change: the catalog, scans and every query keep the list type. A row
//! whose list holds a NULL item cannot be packed; it goes, whole, to a companion column of
//! the original list type (`<name>.__overflow`, NULL on every other row, which costs a
//! run of definition levels), so nothing is lost. Readers of the files outside flashsql see
//! a binary column; `COPY … TO` exports through queries, which return lists.
//!
//! Writing: [`file_schema`] and [`pack_batch`] (used by the one file writer,
//! [`crate::storage::ParquetFileWriter`]). Reading: [`PackedListsAdapterFactory`], the
//! expression adapter of every scan of a table's files, which turns a packed column back
//! into its list with [`UnpackListExpr`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::ArrayData;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, GenericBinaryArray, ListArray,
    OffsetSizeTrait, RecordBatch, make_array,
};
use datafusion::arrow::buffer::{Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

/// Field metadata key naming a stored column's layout in a file.
const LAYOUT_KEY: &str = "flashsql.layout";
const PACKED: &str = "packed";
const OVERFLOW: &str = "overflow";

/// The companion column holding the rows of `name` that could not be packed.
fn overflow_name(name: &str) -> String {
    format!("{name}.__overflow")
}

/// Bytes per item of a list type that is stored packed; None for any other type.
fn item_width(t: &DataType) -> Option<usize> {
    let DataType::List(item) = t else {
        return None;
    };
    match item.data_type() {
        DataType::Int32 | DataType::Float32 => Some(4),
        DataType::Int64 | DataType::Float64 => Some(8),
        _ => None,
    }
}

fn with_layout(field: Field, layout: &str) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(LAYOUT_KEY.to_string(), layout.to_string());
    field.with_metadata(metadata)
}

/// The schema the files of a table stored as `stored` are written with: each packable
/// list as a binary column plus its overflow column. A schema read back from such a file
/// (its fields already marked) is returned as it is, so files can be copied batch by batch.
pub fn file_schema(stored: &SchemaRef) -> SchemaRef {
    let marked = stored
        .fields()
        .iter()
        .any(|f| f.metadata().contains_key(LAYOUT_KEY));
    let packable = |f: &Field| {
        item_width(f.data_type()).is_some() && stored.index_of(&overflow_name(f.name())).is_err()
    };
    if marked || !stored.fields().iter().any(|f| packable(f)) {
        return stored.clone();
    }
    let mut fields = Vec::with_capacity(stored.fields().len() + 1);
    for f in stored.fields() {
        if packable(f) {
            fields.push(with_layout(
                Field::new(f.name(), DataType::Binary, true),
                PACKED,
            ));
            fields.push(with_layout(
                Field::new(overflow_name(f.name()), f.data_type().clone(), true),
                OVERFLOW,
            ));
        } else {
            fields.push(f.as_ref().clone());
        }
    }
    Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
}

/// Whether a field of a file schema is a packed list or an overflow column: such columns
/// carry no statistics (min/max of packed bytes would mean nothing).
pub fn is_layout_column(field: &Field) -> bool {
    field.metadata().contains_key(LAYOUT_KEY)
}

/// `batch` (under the table's stored schema) as `file` (from [`file_schema`]) stores it.
pub fn pack_batch(batch: &RecordBatch, file: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == file.fields() {
        return Ok(batch.clone());
    }
    let mut columns = Vec::with_capacity(file.fields().len());
    let mut fields = file.fields().iter();
    for column in batch.columns() {
        let Some(field) = fields.next() else {
            return Err(layout_error("a batch has more columns than its file"));
        };
        if field.metadata().get(LAYOUT_KEY).map(String::as_str) == Some(PACKED) {
            let width = item_width(column.data_type())
                .ok_or_else(|| layout_error("a packed column is not a list of numbers"))?;
            let item = match fields.next().map(|f| f.data_type()) {
                Some(DataType::List(item)) => item.clone(),
                _ => return Err(layout_error("a packed column has no overflow column")),
            };
            let (packed, overflow) = pack(column.as_list::<i32>(), width, item)?;
            columns.push(packed);
            columns.push(overflow);
        } else {
            columns.push(column.clone());
        }
    }
    Ok(RecordBatch::try_new(file.clone(), columns)?)
}

fn layout_error(message: &str) -> DataFusionError {
    DataFusionError::Internal(format!("packed lists: {message}"))
}

/// A list column as its packed bytes (NULL where the list is NULL or holds a NULL item)
/// and its overflow column (the list where it holds a NULL item, NULL elsewhere), a list
/// of `item`.
fn pack(list: &ListArray, width: usize, item: FieldRef) -> Result<(ArrayRef, ArrayRef)> {
    let offsets = list.offsets();
    let first = offsets[0] as usize;
    let last = offsets[offsets.len() - 1] as usize;
    let bytes = (last - first) * width;
    if i32::try_from(bytes).is_err() {
        return Err(layout_error("a batch's lists exceed 2 GiB"));
    }
    let byte_offsets: ScalarBuffer<i32> = offsets
        .iter()
        .map(|&o| ((o as usize - first) * width) as i32)
        .collect();
    let values = list.values().to_data();
    let start = (values.offset() + first) * width;
    let data = values.buffers()[0].slice_with_length(start, bytes);
    // Rows holding a NULL item go to the overflow column.
    let with_null_items: Option<Vec<bool>> = list
        .values()
        .nulls()
        .filter(|n| n.null_count() > 0)
        .map(|items| {
            offsets
                .windows(2)
                .map(|w| {
                    let (a, b) = (w[0] as usize, w[1] as usize);
                    b > a && items.slice(a, b - a).null_count() > 0
                })
                .collect()
        });
    let packed_nulls = match &with_null_items {
        None => list.nulls().cloned(),
        Some(rows) => {
            let valid = rows
                .iter()
                .enumerate()
                .map(|(i, &overflow)| !overflow && list.is_valid(i));
            Some(NullBuffer::from_iter(valid))
        }
    };
    let packed = BinaryArray::try_new(OffsetBuffer::new(byte_offsets), data, packed_nulls)?;
    let overflow: ArrayRef = match with_null_items {
        None => Arc::new(ListArray::new_null(item, list.len())),
        Some(rows) => Arc::new(ListArray::try_new(
            item,
            offsets.clone(),
            list.values().clone(),
            Some(NullBuffer::from_iter(rows)),
        )?),
    };
    Ok((Arc::new(packed), overflow))
}

/// A packed column (`Binary`, `LargeBinary` or `BinaryView`, as the reader returns it) and
/// its overflow column, as the list type `out`.
pub fn unpack(packed: &ArrayRef, overflow: &ArrayRef, out: &DataType) -> Result<ArrayRef> {
    let (DataType::List(item), Some(width)) = (out, item_width(out)) else {
        return Err(layout_error(
            "unpacking into a type that is not a list of numbers",
        ));
    };
    let (offsets, values) = match packed.data_type() {
        DataType::Binary => contiguous(packed.as_binary::<i32>(), width)?,
        DataType::LargeBinary => contiguous(packed.as_binary::<i64>(), width)?,
        DataType::BinaryView => {
            let b = packed.as_binary_view();
            let valid = |i: usize| b.is_valid(i).then(|| b.value(i));
            let total: usize = (0..b.len()).filter_map(valid).map(<[u8]>::len).sum();
            let mut data = MutableBuffer::with_capacity(total);
            let mut ends = Vec::with_capacity(b.len() + 1);
            ends.push(0usize);
            for i in 0..b.len() {
                if let Some(bytes) = valid(i) {
                    data.extend_from_slice(bytes);
                }
                ends.push(data.len());
            }
            let data: Buffer = data.into();
            items(ends.into_iter(), 0, width, || data.clone())?
        }
        other => return Err(layout_error(&format!("a packed column read as {other}"))),
    };
    let values = make_array(
        ArrayData::builder(item.data_type().clone())
            .len(values.len() / width)
            .add_buffer(values)
            .build()?,
    );
    let list: ArrayRef = Arc::new(ListArray::try_new(
        item.clone(),
        offsets,
        values,
        packed.nulls().cloned(),
    )?);
    if overflow.null_count() == overflow.len() {
        return Ok(list);
    }
    let from_overflow = BooleanArray::new(
        overflow
            .nulls()
            .map(|n| n.inner().clone())
            .unwrap_or_else(|| NullBuffer::new_valid(overflow.len()).into_inner()),
        None,
    );
    let overflow = match overflow.data_type() == out {
        true => overflow.clone(),
        false => datafusion::arrow::compute::cast(overflow, out)?,
    };
    Ok(zip(&from_overflow, &overflow, &list)?)
}

/// Item offsets and bytes of a contiguous binary column (no copy unless misaligned).
fn contiguous<O: OffsetSizeTrait>(
    b: &GenericBinaryArray<O>,
    width: usize,
) -> Result<(OffsetBuffer<i32>, Buffer)> {
    let o = b.value_offsets();
    let (first, last) = (o[0].as_usize(), o[o.len() - 1].as_usize());
    items(o.iter().map(|x| x.as_usize()), first, width, || {
        b.values().slice_with_length(first, last - first)
    })
}

/// Item offsets from byte offsets (`ends`, starting at `first`), and the bytes themselves
/// (from `bytes`), aligned for the item type (copied if the reader's buffer is not).
fn items(
    ends: impl Iterator<Item = usize>,
    first: usize,
    width: usize,
    bytes: impl FnOnce() -> Buffer,
) -> Result<(OffsetBuffer<i32>, Buffer)> {
    let mut offsets = Vec::new();
    for end in ends {
        let n = end - first;
        if !n.is_multiple_of(width) {
            return Err(layout_error(
                "a packed value's length is not a whole number of items",
            ));
        }
        offsets.push(
            i32::try_from(n / width)
                .map_err(|_| layout_error("a batch's lists exceed 2^31 items"))?,
        );
    }
    let bytes = bytes();
    let bytes = match bytes.as_ptr().align_offset(width) {
        0 => bytes,
        _ => Buffer::from_slice_ref(bytes.as_slice()),
    };
    Ok((OffsetBuffer::new(ScalarBuffer::from(offsets)), bytes))
}

/// A packed list column read back as its list (see the module notes).
#[derive(Debug, Clone, Eq)]
pub struct UnpackListExpr {
    packed: Arc<dyn PhysicalExpr>,
    overflow: Arc<dyn PhysicalExpr>,
    field: FieldRef,
}

// Written out: a derive over `Arc<dyn PhysicalExpr>` fields does not compile
// (rust-lang/rust#78808), as DataFusion's own expressions note.
impl PartialEq for UnpackListExpr {
    fn eq(&self, other: &Self) -> bool {
        self.packed.eq(&other.packed)
            && self.overflow.eq(&other.overflow)
            && self.field == other.field
    }
}

impl Hash for UnpackListExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.packed.hash(state);
        self.overflow.hash(state);
        self.field.hash(state);
    }
}

impl fmt::Display for UnpackListExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unpack_list({}, {})", self.packed, self.overflow)
    }
}

impl PhysicalExpr for UnpackListExpr {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(self.field.data_type().clone())
    }

    fn nullable(&self, _input_schema: &Schema) -> Result<bool> {
        Ok(self.field.is_nullable())
    }

    fn return_field(&self, _input_schema: &Schema) -> Result<FieldRef> {
        Ok(self.field.clone())
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let packed = self.packed.evaluate(batch)?.into_array(rows)?;
        let overflow = self.overflow.evaluate(batch)?.into_array(rows)?;
        Ok(ColumnarValue::Array(unpack(
            &packed,
            &overflow,
            self.field.data_type(),
        )?))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.packed, &self.overflow]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [packed, overflow] = <[_; 2]>::try_from(children)
            .map_err(|_| layout_error("unpack_list takes two children"))?;
        Ok(Arc::new(Self {
            packed,
            overflow,
            field: self.field.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.field.name())
    }
}

/// The expression adapter of scans over a table's files: DataFusion's own (missing
/// columns, casts), and packed lists read back as lists.
#[derive(Debug, Default)]
pub struct PackedListsAdapterFactory;

impl PhysicalExprAdapterFactory for PackedListsAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        // Packed columns: (index in the file, index of the overflow column, list field).
        let mut packed = Vec::new();
        for (i, f) in physical_file_schema.fields().iter().enumerate() {
            let Ok(logical) = logical_file_schema.field_with_name(f.name()) else {
                continue;
            };
            let binary = matches!(
                f.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            );
            if !binary || item_width(logical.data_type()).is_none() {
                continue;
            }
            let Ok(overflow) = physical_file_schema.index_of(&overflow_name(f.name())) else {
                continue;
            };
            packed.push((i, overflow, Arc::new(logical.clone())));
        }
        let default = DefaultPhysicalExprAdapterFactory;
        if packed.is_empty() {
            return default.create(logical_file_schema, physical_file_schema);
        }
        // DataFusion's adapter sees the packed columns with their list types (so it leaves
        // them alone); they are unpacked after it.
        let mut seen_as_lists: Vec<Field> = physical_file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (i, _, field) in &packed {
            seen_as_lists[*i] = seen_as_lists[*i]
                .clone()
                .with_data_type(field.data_type().clone());
        }
        let seen_as_lists = Arc::new(Schema::new_with_metadata(
            seen_as_lists,
            physical_file_schema.metadata().clone(),
        ));
        Ok(Arc::new(PackedListsAdapter {
            inner: default.create(logical_file_schema, seen_as_lists)?,
            physical_file_schema,
            packed,
        }))
    }
}

#[derive(Debug)]
struct PackedListsAdapter {
    inner: Arc<dyn PhysicalExprAdapter>,
    physical_file_schema: SchemaRef,
    packed: Vec<(usize, usize, FieldRef)>,
}

impl PhysicalExprAdapter for PackedListsAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = self.inner.rewrite(expr)?;
        expr.transform_up(|e| {
            let Some(column) = e.downcast_ref::<Column>() else {
                return Ok(Transformed::no(e));
            };
            let Some((i, overflow, field)) =
                self.packed.iter().find(|(i, _, _)| *i == column.index())
            else {
                return Ok(Transformed::no(e));
            };
            let overflow_field = self.physical_file_schema.field(*overflow);
            Ok(Transformed::yes(Arc::new(UnpackListExpr {
                packed: Arc::new(Column::new(column.name(), *i)),
                overflow: Arc::new(Column::new(overflow_field.name(), *overflow)),
                field: field.clone(),
            }) as Arc<dyn PhysicalExpr>))
        })
        .data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Builder, Int64Array, ListBuilder};

    fn sequences() -> ListArray {
        let mut b = ListBuilder::new(Int32Builder::new());
        b.append_value([Some(1), Some(2), Some(3)]);
        b.append_null();
        b.append_value([]);
        b.append_value([Some(7), None, Some(9)]);
        b.append_value([Some(4)]);
        b.finish()
    }

    /// Every kind of row (values, NULL list, empty list, NULL item) survives packing, from
    /// each binary form the reader may return, also from a slice of a batch.
    #[test]
    fn lists_round_trip_through_packed_bytes() {
        let list = sequences();
        for (name, list) in [("whole", list.clone()), ("sliced", list.slice(1, 4))] {
            let item = Arc::new(Field::new_list_field(DataType::Int32, true));
            let (packed, overflow) = pack(&list, 4, item).unwrap();
            assert_eq!(overflow.null_count(), overflow.len() - 1, "{name}");
            for form in [
                DataType::Binary,
                DataType::LargeBinary,
                DataType::BinaryView,
            ] {
                let read = datafusion::arrow::compute::cast(&packed, &form).unwrap();
                let back = unpack(&read, &overflow, list.data_type()).unwrap();
                assert_eq!(back.as_list::<i32>(), &list, "{name} {form}");
            }
        }
    }

    /// A file schema packs number lists only, and leaves a file's own schema as it is.
    #[test]
    fn file_schema_packs_number_lists() {
        let stored = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("seq", sequences().data_type().clone(), true),
            Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
        ]));
        let file = file_schema(&stored);
        let names: Vec<_> = file.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "seq", "seq.__overflow", "tags"]);
        assert_eq!(file.field(1).data_type(), &DataType::Binary);
        assert!(Arc::ptr_eq(&file_schema(&file), &file));

        let batch = RecordBatch::try_new(
            stored.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
                Arc::new(sequences()),
                Arc::new(ListArray::new_null(
                    Arc::new(Field::new_list_field(DataType::Utf8, true)),
                    5,
                )),
            ],
        )
        .unwrap();
        let packed = pack_batch(&batch, &file).unwrap();
        assert_eq!(packed.num_columns(), 4);
        let back = unpack(
            packed.column(1),
            packed.column(2),
            stored.field(1).data_type(),
        )
        .unwrap();
        assert_eq!(&back, batch.column(1));
    }

    /// A small file can decode to much more than the cache of small tables holds (one
    /// sequence repeated on every row is one dictionary entry): such a table is scanned
    /// from its files, not decoded whole into memory, and answers the same.
    #[tokio::test]
    async fn a_small_file_that_decodes_large_is_not_held() {
        let (_dir, engine) = crate::test_support::engine().await;
        let session = engine.new_session().expect("session");
        session
            .sql(
                "CREATE TABLE grid AS SELECT g AS id, \
                 make_array(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,\
                 26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,\
                 52,53,54,55,56,57,58,59,60,61,62,63,64) AS seq FROM generate_series(1, 400000) AS t(g)",
            )
            .await
            .expect("create");
        let def = session
            .manifest()
            .table("public", "grid")
            .expect("table")
            .clone();
        let bytes: u64 = def
            .files
            .iter()
            .map(|f| {
                std::fs::metadata(engine.store().table_dir(def.id).join(f))
                    .expect("file")
                    .len()
            })
            .sum();
        assert!(bytes < crate::hot_tables::MAX_TABLE_FILE_BYTES, "{bytes}");
        for _ in 0..2 {
            let crate::Output::Rows(df) = session
                .sql("SELECT sum(cardinality(seq)) AS n, sum(seq[64]) AS last FROM grid")
                .await
                .expect("query")
            else {
                panic!("rows expected");
            };
            let shown = datafusion::arrow::util::pretty::pretty_format_batches(
                &df.collect().await.expect("collect"),
            )
            .expect("format")
            .to_string();
            assert!(shown.contains("| 25600000 | 25600000 |"), "{shown}");
            assert_eq!(engine.store().hot().bytes(), 0);
        }
        // Remembered as too large: later scans go straight to the files.
        let paths: Vec<_> = def
            .files
            .iter()
            .map(|f| engine.store().table_dir(def.id).join(f))
            .collect();
        assert!(matches!(
            engine.store().hot().lookup(def.id, &paths),
            crate::hot_tables::Lookup::TooLarge
        ));
    }
}
