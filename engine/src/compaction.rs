//! Merging a table's small files in the background.
//!
//! Every INSERT and COPY adds one Parquet file, so a table fed row by row (a service logging
//! each offer, a loader inserting per event) grows thousands of tiny files, and every scan
//! pays to open each one: 10,667 files made `count(*)` of 2,709 rows take 795 ms. After an
//! append leaves a table with [`COMPACT_AT`] small files, a background thread merges them into
//! one file and swaps it in with one catalog commit, like any write: the merged file is
//! complete on disk before the commit names it, a crash before the commit leaves an orphan
//! that the next start removes, and the commit applies only if every merged file is still
//! part of the table (a concurrent DELETE or TRUNCATE wins; the merge is dropped). The
//! replaced files are removed a while later (at a later merge, or the next start), so scans
//! that listed them finish first.
//!
//! A table that declares a sort order is read as one sorted run per file, up to
//! [`MAX_SORTED_FILES`] files (see [`crate::sorted_runs`]); when appends take it past that,
//! its smallest files are merged — in order — until it is back at that count, whatever
//! their size, so that its scans declare the order again.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use tracing::{debug, warn};

use crate::error::{EngineError, Result};
use crate::sorted_runs::MAX_SORTED_FILES;
use crate::storage::ParquetFileWriter;
use crate::store::Store;

/// A file below this size counts as small.
pub const SMALL_FILE_BYTES: u64 = 8 << 20;
/// How many small files a table may collect before they are merged.
pub const COMPACT_AT: usize = 16;
/// How long replaced files stay on disk for scans that listed them before the merge.
pub const RETIRE_AFTER: Duration = Duration::from_secs(60);

impl Store {
    /// Merges table `id`'s small files in the background if it has collected enough; at most
    /// one merge per table runs at a time.
    pub fn compact_soon(self: &Arc<Self>, id: u64) {
        // The catalog alone says whether there can be enough small files; which are small
        // (a stat of each) is looked at off the writer's path, by the merge.
        let Some(files) = self.merge_candidates(id) else {
            return;
        };
        if files.len() < COMPACT_AT && !files.sorted_past_limit() {
            return;
        }
        if !self.start_compaction(id) {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("flashsql-compact".into())
            .spawn(move || {
                loop {
                    match store.compact(id) {
                        Ok(0) => break,
                        Ok(n) => debug!(table = id, files = n, "small files merged"),
                        Err(e) => {
                            warn!(table = id, error = %e, "merging small files failed; the table is unchanged");
                            break;
                        }
                    }
                }
                store.end_compaction(id);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "could not start a compaction thread");
            self.end_compaction(id);
        }
    }

    /// Files no longer in the catalog are removed once [`RETIRE_AFTER`] has passed and no
    /// transaction block that began before they were replaced is open, at a later merge or
    /// when a block ends (one thread per merge, none waiting); what is left at exit the next
    /// start removes, as it removes any file the catalog does not name.
    pub(crate) fn retire(&self, files: impl Iterator<Item = std::path::PathBuf>) {
        let oldest_block = self.oldest_open_block();
        let Ok(mut retired) = self.retired.lock() else {
            return;
        };
        let now = Instant::now();
        retired.extend(files.map(|f| (now, f)));
        retired.retain(|(at, f)| {
            if now.duration_since(*at) < RETIRE_AFTER {
                return true;
            }
            // A transaction block that began before the file was replaced may read it.
            if oldest_block.is_some_and(|began| began <= *at) {
                return true;
            }
            // Gone already if the table was dropped.
            let _ = std::fs::remove_file(f);
            false
        });
    }

    /// Table `id`'s file list and whether it declares an order, from the catalog alone.
    fn merge_candidates(&self, id: u64) -> Option<Candidates> {
        let manifest = self.manifest();
        let table = manifest.tables.iter().find(|t| t.id == id)?;
        Some(Candidates {
            files: table.files.clone(),
            sorted: !table.sort_by.is_empty(),
        })
    }

    /// The files of table `id` to merge now, in table order (empty: nothing to do): its
    /// files below [`SMALL_FILE_BYTES`] once there are [`COMPACT_AT`] of them; else, for a
    /// table declaring an order with more than [`MAX_SORTED_FILES`] files, its smallest
    /// files, as many as bring it back to that count (its scans declare the order again,
    /// see [`crate::sorted_runs`]).
    fn files_to_merge(&self, id: u64) -> Vec<String> {
        let Some(candidates) = self.merge_candidates(id) else {
            return Vec::new();
        };
        let dir = self.table_dir(id);
        let sized: Vec<(String, u64)> = candidates
            .files
            .iter()
            .filter_map(|f| Some((f.clone(), std::fs::metadata(dir.join(f)).ok()?.len())))
            .collect();
        let small: Vec<String> = sized
            .iter()
            .filter(|(_, len)| *len < SMALL_FILE_BYTES)
            .map(|(f, _)| f.clone())
            .collect();
        if small.len() >= COMPACT_AT {
            return small;
        }
        if !candidates.sorted_past_limit() || sized.len() != candidates.files.len() {
            return Vec::new();
        }
        let mut by_size: Vec<&(String, u64)> = sized.iter().collect();
        by_size.sort_by_key(|(_, len)| *len);
        let smallest: HashSet<&str> = by_size[..sized.len() - MAX_SORTED_FILES + 1]
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        candidates
            .files
            .into_iter()
            .filter(|f| smallest.contains(f.as_str()))
            .collect()
    }

    /// Merges table `id`'s small files into one if there are at least [`COMPACT_AT`], or a
    /// sorted table's smallest files if it has more than [`MAX_SORTED_FILES`]. Returns how
    /// many files were merged (0: nothing to do).
    pub fn compact(&self, id: u64) -> Result<usize> {
        let small = self.files_to_merge(id);
        if small.len() < 2 {
            return Ok(0);
        }
        let dir = self.table_dir(id);
        let (name, path) = self.new_file(id);
        let manifest = self.manifest();
        let table = manifest
            .tables
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| EngineError::RelationNotFound(format!("table #{id}")))?;
        let schema = self.table_schema(id, &table.columns)?;
        let writer = merge_files(&dir, &small, &path, schema, &table.sort_by)?;
        if writer.rows() == 0 {
            return Ok(0);
        }
        writer.commit()?;
        let merged: HashSet<&str> = small.iter().map(String::as_str).collect();
        let committed = self.commit(|m| {
            let t = m
                .tables
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or_else(|| EngineError::RelationNotFound(format!("table #{id}")))?;
            let present = t
                .files
                .iter()
                .filter(|f| merged.contains(f.as_str()))
                .count();
            if present != merged.len() {
                return Err(EngineError::ConcurrentWrite(t.name.clone()));
            }
            let at = t
                .files
                .iter()
                .position(|f| merged.contains(f.as_str()))
                .unwrap_or(0);
            t.files.retain(|f| !merged.contains(f.as_str()));
            t.files.insert(at.min(t.files.len()), name.clone());
            self.record_merge(id, small.iter().cloned().collect(), name.clone());
            Ok(())
        });
        if let Err(e) = committed {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let n = small.len();
        self.retire(small.iter().map(|f| dir.join(f)));
        Ok(n)
    }
}

/// A table's files as the catalog lists them, and whether it declares an order.
struct Candidates {
    files: Vec<String>,
    sorted: bool,
}

impl Candidates {
    fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether its scans no longer declare its order for having too many files.
    fn sorted_past_limit(&self) -> bool {
        self.sorted && self.files.len() > MAX_SORTED_FILES
    }
}

/// The rows of `files` written to a new file at `path`: merged in `sort_by`'s order when
/// the table declares one (each file is sorted, as every writer of such a table sorts: one
/// partition per file, so DataFusion plans a sort-preserving merge, which holds one batch
/// per file), else one file after another. Read through the table's own scan, so files of
/// either list layout (see [`crate::packed_lists`]) merge into the current one.
fn merge_files(
    dir: &Path,
    files: &[String],
    path: &Path,
    schema: SchemaRef,
    sort_by: &[String],
) -> Result<ParquetFileWriter> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let partitions = match sort_by {
            [] => 1,
            _ => files.len().max(1),
        };
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_repartition_file_scans(false);
        let ctx = SessionContext::new_with_config(config);
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(dir.join(f).to_string_lossy()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let order = crate::sort_order::sort_exprs(sort_by);
        let declared = match sort_by {
            [] => vec![],
            _ => vec![order.clone()],
        };
        let files = crate::table::listing_table(urls, schema.clone(), declared)?;
        let mut rows = ctx.read_table(Arc::new(files))?;
        if !sort_by.is_empty() {
            rows = rows.sort(order)?;
        }
        let mut stream = rows.execute_stream().await?;
        let mut writer = ParquetFileWriter::create(path, schema.clone())?;
        while let Some(batch) = stream.next().await {
            writer.write(&batch?)?;
        }
        Ok(writer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::File;

    /// The first (BIGINT) column of the Parquet file at `path`, in file order.
    fn first_column(path: &Path) -> Vec<i64> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
            .expect("reader")
            .build()
            .expect("build");
        reader
            .flat_map(|b| {
                let b = b.expect("batch");
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64")
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn small_files_merge_into_one_without_losing_rows() {
        let (_dir, store, id) = crate::store::store_with_empty_table();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        for i in 0..(COMPACT_AT as i64 + 3) {
            let (name, path) = store.new_file(id);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![i, i + 100]))],
            )
            .expect("batch");
            crate::storage::write_parquet(&path, schema.clone(), &[batch]).expect("write");
            store.append_files(id, vec![name], 2).expect("append");
        }
        assert_eq!(store.compact(id).expect("compact"), COMPACT_AT + 3);
        let (files, rows) = store.table_files(id).expect("files");
        assert_eq!(files.len(), 1);
        assert_eq!(rows, 2 * (COMPACT_AT as u64 + 3));
        let mut values = first_column(&store.table_dir(id).join(&files[0]));
        values.sort();
        let mut expected: Vec<i64> = (0..(COMPACT_AT as i64 + 3))
            .flat_map(|i| [i, i + 100])
            .collect();
        expected.sort();
        assert_eq!(values, expected);
        // Nothing more to merge.
        assert_eq!(store.compact(id).expect("compact"), 0);
    }

    /// A table declaring an order gets its small files merged in that order, not one
    /// after another: each file holds every residue of its own range, so only a merge
    /// interleaving them all is sorted.
    #[test]
    fn sorted_tables_merge_in_order() {
        let (_dir, store, id) = crate::store::store_with_empty_table_sorted_by(vec!["x".into()]);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let n = COMPACT_AT as i64 + 2;
        for i in 0..n {
            let (name, path) = store.new_file(id);
            let values: Vec<i64> = (0..50).map(|k| k * n + i).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .expect("batch");
            crate::storage::write_parquet(&path, schema.clone(), &[batch]).expect("write");
            store.append_files(id, vec![name], 50).expect("append");
        }
        assert_eq!(store.compact(id).expect("compact"), n as usize);
        let (files, rows) = store.table_files(id).expect("files");
        assert_eq!((files.len(), rows), (1, 50 * n as u64));
        let values = first_column(&store.table_dir(id).join(&files[0]));
        assert_eq!(values, (0..50 * n).collect::<Vec<_>>());
    }

    /// A sorted table past [`MAX_SORTED_FILES`] files, none of them counted as many small
    /// ones, has its smallest files merged (in order) until it is back at that count; an
    /// unsorted table with as many files is left alone.
    #[test]
    fn sorted_tables_past_the_limit_merge_their_smallest_files() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let n = MAX_SORTED_FILES + 3;
        for sort_by in [vec![], vec!["x".to_string()]] {
            let (_dir, store, id) = crate::store::store_with_empty_table_sorted_by(sort_by.clone());
            let mut sizes = Vec::new();
            for i in 0..n as i64 {
                // File i holds 10 + 37·((i·5) mod n) rows, interleaved with the others'.
                let rows = 10 + 37 * ((i * 5) % n as i64);
                let values: Vec<i64> = (0..rows).map(|k| k * n as i64 + i).collect();
                let batch =
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                        .expect("batch");
                let (name, path) = store.new_file(id);
                crate::storage::write_parquet(&path, schema.clone(), &[batch]).expect("write");
                store
                    .append_files(id, vec![name.clone()], rows as u64)
                    .expect("append");
                sizes.push((std::fs::metadata(&path).expect("stat").len(), rows, name));
            }
            if sort_by.is_empty() {
                assert_eq!(store.compact(id).expect("compact"), 0);
                continue;
            }
            sizes.sort();
            let merged_rows: i64 = sizes[..4].iter().map(|(_, rows, _)| rows).sum();
            assert_eq!(store.compact(id).expect("compact"), 4);
            let (files, _) = store.table_files(id).expect("files");
            assert_eq!(files.len(), MAX_SORTED_FILES);
            for (_, _, name) in &sizes[4..] {
                assert!(files.contains(name), "{name} kept");
            }
            let merged = files
                .iter()
                .find(|f| !sizes.iter().any(|(_, _, name)| name == *f))
                .expect("the merged file");
            let values = first_column(&store.table_dir(id).join(merged));
            assert_eq!(values.len() as i64, merged_rows);
            assert!(values.is_sorted(), "merged in order");
            assert_eq!(store.compact(id).expect("compact"), 0);
        }
    }

    /// Files written before lists were packed merge with packed ones: the merged file is
    /// packed and reads back as the same lists, NULL items and NULL lists included.
    #[test]
    fn files_of_both_list_layouts_merge() {
        use datafusion::arrow::array::{Int32Builder, ListBuilder};
        use datafusion::arrow::util::pretty::pretty_format_batches;
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("seq", list, true),
        ]));
        let (_dir, store, id) = crate::store::store_with_table(&schema, vec![]);
        let n = COMPACT_AT as i64 + 1;
        for i in 0..n {
            let mut seq = ListBuilder::new(Int32Builder::new());
            seq.append_value([Some(i as i32), Some(2), None]);
            seq.append_null();
            seq.append_value([Some(i as i32); 3]);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![3 * i, 3 * i + 1, 3 * i + 2])),
                    Arc::new(seq.finish()),
                ],
            )
            .expect("batch");
            let (name, path) = store.new_file(id);
            if i == 0 {
                // As files were written before: lists as Parquet lists.
                let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                    File::create(&path).expect("create"),
                    schema.clone(),
                    None,
                )
                .expect("writer");
                w.write(&batch).expect("write");
                w.close().expect("close");
            } else {
                crate::storage::write_parquet(&path, schema.clone(), &[batch]).expect("write");
            }
            store.append_files(id, vec![name], 3).expect("append");
        }
        let read = |files: Vec<String>| {
            let urls = files
                .iter()
                .map(|f| ListingTableUrl::parse(store.table_dir(id).join(f).to_string_lossy()))
                .collect::<datafusion::error::Result<Vec<_>>>()
                .expect("urls");
            let table = crate::table::listing_table(urls, schema.clone(), vec![]).expect("table");
            async move {
                let batches = SessionContext::new()
                    .read_table(Arc::new(table))
                    .expect("read")
                    .sort(vec![datafusion::prelude::col("x").sort(true, false)])
                    .expect("sort")
                    .collect()
                    .await
                    .expect("collect");
                pretty_format_batches(&batches).expect("format").to_string()
            }
        };
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let before = runtime.block_on(read(store.table_files(id).expect("files").0));
        assert!(before.contains("[0, 2, ]"), "{before}");
        assert_eq!(store.compact(id).expect("compact"), n as usize);
        let (files, _) = store.table_files(id).expect("files");
        assert_eq!(files.len(), 1);
        let merged = ParquetRecordBatchReaderBuilder::try_new(
            File::open(store.table_dir(id).join(&files[0])).expect("open"),
        )
        .expect("reader");
        assert_eq!(merged.schema().field(1).data_type(), &DataType::Binary);
        assert_eq!(runtime.block_on(read(files)), before);
    }
}
