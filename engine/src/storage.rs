//! Crash-safe file writes: every file appears under its final name only once it is complete
//! and on disk (write to a temporary name, fsync, rename, fsync the directory).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::error::EngineError;

/// Suffix of files being written; such files are never read and are removed at start-up.
pub const TMP_SUFFIX: &str = ".tmp";

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Makes a rename or a new file in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// How an atomic write failed: before its rename nothing changed on disk; after it, the new
/// content is in place but its name may not survive a crash, so whether the write happened
/// is unknown.
#[derive(Debug)]
pub enum AtomicWriteError {
    BeforeRename(EngineError),
    AfterRename(EngineError),
}

impl From<AtomicWriteError> for EngineError {
    fn from(e: AtomicWriteError) -> Self {
        match e {
            AtomicWriteError::BeforeRename(e) | AtomicWriteError::AfterRename(e) => e,
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_bytes_atomic_with(path, bytes, fsync_dir)
}

/// [`write_bytes_atomic`] with the directory fsync given (tests make it fail).
fn write_bytes_atomic_with(
    path: &Path,
    bytes: &[u8],
    sync_dir: impl Fn(&Path) -> Result<(), EngineError>,
) -> Result<(), AtomicWriteError> {
    let tmp = tmp_path(path);
    let before = |e: std::io::Error| AtomicWriteError::BeforeRename(e.into());
    {
        let mut f = File::create(&tmp).map_err(before)?;
        f.write_all(bytes).map_err(before)?;
        f.sync_all().map_err(before)?;
    }
    fs::rename(&tmp, path).map_err(before)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(AtomicWriteError::AfterRename)?;
    }
    Ok(())
}

/// How large a packed list column's dictionary may grow in a row group before the writer
/// falls back to plain pages. A planning grid repeats each user's sequence on every (item,
/// discount) row, in no particular order: with the default 1 MiB, the small world's grid
/// (20,000 distinct sequences of ~225 bytes per row group) fell back to plain pages, and
/// decompressing those was 40 % of a scan; kept in a dictionary, each sequence is stored
/// and decompressed once per row group.
const PACKED_DICTIONARY_BYTES: usize = 8 << 20;

/// The writer properties of every table file: zstd, statistics on, 64k-row groups at most
/// 128k rows so scans can prune and parallelise. Timestamps are written plain: in a
/// behaviour log nearly every one is distinct, so a dictionary fills its page limit and
/// falls back, leaving each column chunk in two encodings (the events' `ts` took 25.3 MB
/// that way against 20.1 MB plain, as DuckDB writes it). Packed lists and their overflow
/// columns carry no statistics (see [`crate::packed_lists`]).
fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(131_072));
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Timestamp(_, _)) {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
        if crate::packed_lists::is_layout_column(field) {
            let column = ColumnPath::from(field.name().as_str());
            builder = builder
                .set_column_statistics_enabled(column.clone(), EnabledStatistics::None)
                .set_column_dictionary_page_size_limit(column, PACKED_DICTIONARY_BYTES);
        }
    }
    builder.build()
}

/// Streams record batches into a Parquet file that becomes visible under its final name only
/// when [`ParquetFileWriter::commit`] has made it durable. Dropping the writer without
/// committing removes the partial file.
pub struct ParquetFileWriter {
    final_path: PathBuf,
    tmp: PathBuf,
    /// The schema in the file: the table's, with number lists packed.
    file_schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    rows: u64,
}

impl ParquetFileWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, EngineError> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp)?;
        let file_schema = crate::packed_lists::file_schema(&schema);
        let properties = writer_properties(&file_schema);
        let writer = ArrowWriter::try_new(file, file_schema.clone(), Some(properties))?;
        Ok(Self {
            final_path: path.to_path_buf(),
            tmp,
            file_schema,
            writer: Some(writer),
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = self.writer.as_mut().ok_or(EngineError::WriterClosed)?;
        let packed = crate::packed_lists::pack_batch(batch, &self.file_schema)?;
        writer.write(&packed)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the file, fsyncs it, renames it into place and fsyncs the directory.
    pub fn commit(mut self) -> Result<u64, EngineError> {
        let writer = self.writer.take().ok_or(EngineError::WriterClosed)?;
        let file = writer.into_inner()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.final_path)?;
        if let Some(dir) = self.final_path.parent() {
            fsync_dir(dir)?;
        }
        Ok(self.rows)
    }
}

impl Drop for ParquetFileWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `batches` as one durable Parquet file.
pub fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<u64, EngineError> {
    let mut w = ParquetFileWriter::create(path, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.commit()
}

#[cfg(test)]
mod atomic_write_tests {
    use super::*;

    /// A directory fsync that fails after the rename is told apart from a failure before
    /// it: the new content is then already under the final name.
    #[test]
    fn a_failed_directory_fsync_is_reported_after_the_rename() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("catalog.json");
        write_bytes_atomic(&path, b"old").expect("first write");
        let failing = |_: &Path| -> Result<(), EngineError> {
            Err(std::io::Error::other("injected fsync failure").into())
        };
        match write_bytes_atomic_with(&path, b"new", failing) {
            Err(AtomicWriteError::AfterRename(_)) => {}
            other => panic!("expected a failure after the rename, got {other:?}"),
        }
        assert_eq!(fs::read(&path).expect("read"), b"new");
        // A failure before the rename leaves the old content.
        let missing = dir.path().join("no_such_dir").join("catalog.json");
        match write_bytes_atomic(&missing, b"x") {
            Err(AtomicWriteError::BeforeRename(_)) => {}
            other => panic!("expected a failure before the rename, got {other:?}"),
        }
        assert_eq!(fs::read(&path).expect("read"), b"new");
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use std::sync::Arc;

    /// Timestamps are written without a dictionary, other columns with one.
    #[test]
    fn timestamps_are_written_plain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("k", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..10_000)),
                Arc::new(Int64Array::from_iter_values((0..10_000).map(|i| i % 7))),
            ],
        )
        .expect("batch");
        write_parquet(&path, schema, &[batch]).expect("write");
        let reader = SerializedFileReader::new(File::open(&path).expect("open")).expect("read");
        let group = reader.metadata().row_group(0);
        assert!(group.column(0).dictionary_page_offset().is_none(), "ts");
        assert!(group.column(1).dictionary_page_offset().is_some(), "k");
    }
}
