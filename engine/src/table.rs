//! Durable tables: a schema and a list of Parquet files named by the catalog.
//!
//! Scans read the files the catalog names at planning time (a consistent snapshot) through
//! DataFusion's Parquet reader, so projection, predicate and row-group pruning all apply.
//! Inserts stream into one new file that the catalog names only once it is on disk.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::runtime::SpawnedTask;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::{DataSourceExec, MemorySourceConfig};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
};
use futures::StreamExt;

use crate::error::EngineError;
use crate::hot_tables::Lookup;
use crate::inspect::InspectExec;
use crate::sorted_runs::{MAX_SORTED_FILES, one_run_per_partition};
use crate::storage::ParquetFileWriter;
use crate::store::Store;
use crate::transaction::Transaction;

/// A table stored as Parquet files in the data directory.
#[derive(Debug)]
pub struct DurableTable {
    store: Arc<Store>,
    id: u64,
    /// The schema the files and the catalog hold (text as `Utf8`); writes are cast to it.
    schema: SchemaRef,
    /// The schema scans produce and the planner sees (text as views, see
    /// [`crate::text_views`]).
    scan: SchemaRef,
    /// When set, scans read exactly these files instead of the catalog's current list (a
    /// DELETE reads the snapshot it will replace).
    pinned: Option<Vec<PathBuf>>,
    /// The session's open transaction block: reads see its view of the table and writes
    /// go into it instead of the catalog.
    tx: Option<Arc<Transaction>>,
    /// The columns every file is sorted by (see [`crate::sort_order`]).
    sort_by: Arc<[String]>,
}

impl DurableTable {
    /// The plan that writes `input`'s rows to this table: one stream of every partition (a
    /// plan DataFusion's own planner wraps gets this from its physical optimizer, a rewrite
    /// does not), sorted first if the table declares an order.
    fn sink(&self, input: Arc<dyn ExecutionPlan>, mode: Mode) -> Result<Arc<dyn ExecutionPlan>> {
        let (input, requirement) =
            match crate::sort_order::lex_ordering(&self.sort_by, &self.schema)? {
                Some(ordering) => (
                    crate::sort_order::sorted(input, &ordering)?,
                    Some(ordering.into()),
                ),
                None if input.output_partitioning().partition_count() > 1 => {
                    (Arc::new(CoalescePartitionsExec::new(input)) as _, None)
                }
                None => (input, None),
            };
        let sink = TableSink {
            store: self.store.clone(),
            epoch: self.tx.as_ref().map_or(0, |t| t.epoch()),
            tx: self.tx.clone(),
            id: self.id,
            schema: self.schema.clone(),
            mode,
        };
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(sink),
            requirement,
        )))
    }

    pub fn new(
        store: Arc<Store>,
        id: u64,
        schema: SchemaRef,
        tx: Option<Arc<Transaction>>,
        sort_by: &[String],
    ) -> Self {
        Self {
            store,
            id,
            scan: crate::text_views::scan_schema(&schema),
            schema,
            pinned: None,
            tx,
            sort_by: sort_by.into(),
        }
    }

    /// The table's current files and row count (in the open transaction block's view, if
    /// any): the snapshot a rewriting statement (DELETE, UPDATE) reads through
    /// [`DurableTable::pinned`] and replaces.
    pub fn snapshot_files(&self) -> Result<(Vec<String>, u64)> {
        Ok(match &self.tx {
            Some(tx) => tx.table_files(self.id)?,
            None => self.store.table_files(self.id)?,
        })
    }

    /// This table reading exactly `files`.
    pub fn pinned(&self, files: &[String]) -> Arc<DurableTable> {
        Arc::new(DurableTable {
            store: self.store.clone(),
            id: self.id,
            schema: self.schema.clone(),
            scan: self.scan.clone(),
            pinned: Some(
                files
                    .iter()
                    .map(|f| self.store.table_dir(self.id).join(f))
                    .collect(),
            ),
            tx: self.tx.clone(),
            sort_by: self.sort_by.clone(),
        })
    }

    /// The plan that replaces the snapshot `expected` with `rows` in one commit, or fails
    /// with 40001 and changes nothing if another write committed meanwhile; it reports
    /// `count`.
    pub fn rewrite(
        &self,
        rows: Arc<dyn ExecutionPlan>,
        expected: Vec<String>,
        count: Count,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.sink(rows, Mode::Replace { expected, count })
    }

    /// A small table's batches from memory, read from its files and kept on the first scan
    /// of this snapshot (see [`crate::hot_tables`]); None for a large or empty table.
    async fn hot_batches(
        &self,
        state: &dyn Session,
        files: &[PathBuf],
    ) -> Result<Option<Vec<RecordBatch>>> {
        let hot = self.store.hot();
        // The ticket, if any, lets other scans load this table once it is dropped.
        let (class, _ticket) = match hot.lookup(self.id, files) {
            Lookup::Held(batches) => return Ok(Some(batches)),
            Lookup::TooLarge => return Ok(None),
            Lookup::Load(class, ticket) => (class, ticket),
        };
        let Some(listing) = self.snapshot(files)? else {
            return Ok(None);
        };
        let damaged = damaged_file(self.store.clone(), self.id);
        let mut plan = listing
            .scan(state, None, &[], None)
            .await
            .map_err(&damaged)?;
        // Several sorted files are merged into one run as they are read, so that the held
        // rows are in the declared order as a whole (see the scan's `contiguous_runs`).
        if files.len() > 1
            && let Some(ordering) =
                crate::sort_order::lex_ordering(self.scan_order(files), &self.scan)?
        {
            let partitions = state.config_options().execution.target_partitions;
            plan = crate::sort_order::sorted(one_run_per_partition(plan, partitions), &ordering)?;
        }
        // The partitions decode at once, each stopping once all of them together exceed
        // what the cache may hold (the scan then reads the files, as for a large table);
        // kept partition after partition: the files' order, which a declared sort order
        // needs.
        let decoded = Arc::new(AtomicU64::new(0));
        let budget = hot.budget(class);
        let tasks: Vec<_> = (0..plan.output_partitioning().partition_count())
            .map(|partition| {
                let (plan, ctx, decoded) = (plan.clone(), state.task_ctx(), decoded.clone());
                SpawnedTask::spawn(async move {
                    let mut stream = plan.execute(partition, ctx)?;
                    let mut batches = Vec::new();
                    while let Some(batch) = stream.next().await {
                        let batch = batch?;
                        let size = batch.get_array_memory_size() as u64;
                        if decoded.fetch_add(size, Ordering::Relaxed) + size > budget {
                            return Ok(None);
                        }
                        batches.push(batch);
                    }
                    Ok::<_, DataFusionError>(Some(batches))
                })
            })
            .collect();
        let mut batches = Vec::new();
        for task in tasks {
            let part = task
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
                .map_err(&damaged)?;
            let Some(part) = part else {
                hot.too_large(self.id, files, class);
                return Ok(None);
            };
            batches.extend(part);
        }
        hot.put(self.id, files.to_vec(), batches.clone(), class);
        Ok(Some(batches))
    }

    /// The rows whose column `column` equals `key`, with the columns `projection` under
    /// `schema` (the caller's names for them), found through the key index of the table's
    /// batches held in memory (see [`crate::key_index`]). None when this snapshot is not
    /// held, the column cannot be indexed or `key` is of another type: the caller then
    /// plans a scan, which also loads the table into memory for the next lookup.
    pub fn lookup(
        &self,
        column: usize,
        key: &ScalarValue,
        projection: &[usize],
        schema: SchemaRef,
    ) -> Result<Option<RecordBatch>> {
        let files = self.files()?;
        if files.is_empty() {
            return Ok(Some(RecordBatch::new_empty(schema)));
        }
        // The scan says why (40001).
        if self.block_lost_files(&files) {
            return Ok(None);
        }
        let Some((batches, index)) = self.store.hot().indexed(&files, column) else {
            // Held from the next scan on, even if large (see `crate::hot_tables`).
            self.store.hot().want_for_lookups(self.id);
            return Ok(None);
        };
        let Some(places) = index.find(key) else {
            return Ok(None);
        };
        if places.is_empty() {
            return Ok(Some(RecordBatch::new_empty(schema)));
        }
        // Only the batches the rows are in (a large held table has hundreds).
        let mut sources: Vec<usize> = places.iter().map(|&(b, _)| b as usize).collect();
        sources.sort_unstable();
        sources.dedup();
        let rows: Vec<(usize, usize)> = places
            .iter()
            .map(|&(b, r)| (sources.partition_point(|&s| s < b as usize), r as usize))
            .collect();
        let columns = projection
            .iter()
            .map(|&c| {
                let arrays: Vec<&dyn Array> = sources
                    .iter()
                    .map(|&b| batches[b].column(c).as_ref())
                    .collect();
                interleave(&arrays, &rows)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(Some(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?))
    }

    /// Whether this is a transaction block's view naming files that are gone: the table was
    /// dropped since the block began (outside a block the catalog's files are current, and
    /// nothing is checked: a `stat` per file on every point lookup).
    fn block_lost_files(&self, files: &[PathBuf]) -> bool {
        self.tx.is_some() && files.iter().any(|f| !f.exists())
    }

    /// The table's qualified name, for messages (its id if it was dropped meanwhile).
    fn name(&self) -> String {
        table_name(&self.store, self.id)
    }

    /// The files a scan reads now: the catalog's (or the open block's, or the pinned ones).
    fn files(&self) -> Result<Vec<PathBuf>> {
        Ok(match (&self.pinned, &self.tx) {
            (Some(f), _) => f.clone(),
            (None, Some(tx)) => {
                let dir = self.store.table_dir(self.id);
                tx.table_files(self.id)?
                    .0
                    .iter()
                    .map(|f| dir.join(f))
                    .collect()
            }
            (None, None) => self.store.files_of(self.id),
        })
    }

    /// The order a scan of `files` tells the planner: the declared one over up to
    /// [`MAX_SORTED_FILES`] files, each then read as sorted runs
    /// ([`crate::sorted_runs`]); none past that, until the background merge has brought
    /// the files back to that count.
    fn scan_order(&self, files: &[PathBuf]) -> &[String] {
        if files.len() <= MAX_SORTED_FILES {
            &self.sort_by
        } else {
            &[]
        }
    }

    /// A listing table over exactly `files`.
    fn snapshot(&self, files: &[PathBuf]) -> Result<Option<ListingTable>> {
        if files.is_empty() {
            return Ok(None);
        }
        // A block's snapshot outlives the catalog it was taken from. Replaced files are kept
        // for it (`Store::discard`), but a table dropped since has lost its files, and
        // DataFusion would read a missing path as an empty folder, silently dropping rows:
        // that is a serialization failure (retry). Scans outside a block read the current
        // catalog and skip the check (a stat per file on every point lookup).
        if self.block_lost_files(files) {
            return Err(EngineError::ConcurrentWrite(self.name()).into());
        }
        let urls = files
            .iter()
            .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
            .collect::<Result<Vec<_>>>()?;
        let order = match self.scan_order(files) {
            [] => vec![],
            keys => vec![crate::sort_order::sort_exprs(keys)],
        };
        Ok(Some(listing_table(urls, self.scan.clone(), order)?))
    }
}

/// A listing table over table files at `urls`, read as `schema`, declared sorted by
/// `order`; packed lists come back as lists (see [`crate::packed_lists`]).
pub(crate) fn listing_table(
    urls: Vec<ListingTableUrl>,
    schema: SchemaRef,
    order: Vec<Vec<datafusion::logical_expr::SortExpr>>,
) -> Result<ListingTable> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_file_sort_order(order);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema)
        .with_expr_adapter_factory(Arc::new(crate::packed_lists::PackedListsAdapterFactory));
    ListingTable::try_new(config)
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        self.scan.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Parquet statistics prune, but the filter is re-applied above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let files = self.files()?;
        if let Some(batches) = self.hot_batches(state, &files).await? {
            // Held in the files' order, declared over contiguous runs of batches, one per
            // partition: DataFusion's own split of a memory source forgets its order.
            let ordering = crate::sort_order::lex_ordering(self.scan_order(&files), &self.scan)?;
            let partitions = match &ordering {
                Some(_) => {
                    contiguous_runs(batches, state.config_options().execution.target_partitions)
                }
                None => vec![batches],
            };
            let mut source =
                MemorySourceConfig::try_new(&partitions, self.scan.clone(), projection.cloned())?
                    .with_limit(limit);
            if let Some(ordering) = ordering {
                source = source.try_with_sort_information(vec![ordering])?;
            }
            return Ok(DataSourceExec::from_data_source(source));
        }
        match self.snapshot(&files)? {
            Some(listing) => {
                let damaged = damaged_file(self.store.clone(), self.id);
                let scan = listing
                    .scan(state, projection, filters, limit)
                    .await
                    .map_err(&damaged)?;
                let partitions = state.config_options().execution.target_partitions;
                let scan = one_run_per_partition(scan, partitions);
                Ok(Arc::new(InspectExec::new(
                    "CheckedScanExec",
                    scan,
                    Arc::new(move |b| b.map_err(&damaged)),
                )))
            }
            None => {
                let schema = match projection {
                    Some(p) => Arc::new(self.scan.project(p)?),
                    None => self.scan.clone(),
                };
                Ok(Arc::new(EmptyExec::new(schema)))
            }
        }
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(EngineError::NotSupported(format!("INSERT with mode {insert_op}")).into());
        }
        self.sink(input, Mode::Append)
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        let (files, rows) = self.snapshot_files()?;
        let nothing = Arc::new(EmptyExec::new(self.scan.clone()));
        self.sink(
            nothing,
            Mode::Replace {
                expected: files,
                count: Count::Removed { rows_before: rows },
            },
        )
    }
}

/// `batches` cut into at most `n` runs of consecutive batches with about equal rows.
fn contiguous_runs(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_run = total.div_ceil(n.max(1)).max(1);
    let mut runs: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut in_run = 0;
    for batch in batches {
        if in_run >= per_run {
            runs.push(Vec::new());
            in_run = 0;
        }
        in_run += batch.num_rows();
        if let Some(run) = runs.last_mut() {
            run.push(batch);
        }
    }
    runs
}

/// How a statement's rows reach the table.
#[derive(Debug)]
enum Mode {
    /// INSERT: the rows become one more file.
    Append,
    /// DELETE (the rows kept), UPDATE (every row, some changed) and TRUNCATE (none): the
    /// rows replace all files, if they are still `expected` (see `dml`).
    Replace { expected: Vec<String>, count: Count },
}

/// The row count a rewriting statement reports.
#[derive(Debug)]
pub enum Count {
    /// The rows that went away (DELETE, TRUNCATE).
    Removed { rows_before: u64 },
    /// A count known before writing (UPDATE without WHERE: every row).
    Known(u64),
    /// The rows counted while writing (UPDATE … WHERE: the changed rows), read once
    /// everything is written.
    Written(Arc<AtomicU64>),
    /// A MERGE: every row before that it did not leave untouched (updated or deleted),
    /// and the rows it inserted, counted while writing.
    Merged {
        rows_before: u64,
        untouched: Arc<AtomicU64>,
        inserted: Arc<AtomicU64>,
    },
}

/// Writes one statement's rows to a durable table as a single new file and commits it.
#[derive(Debug)]
struct TableSink {
    store: Arc<Store>,
    tx: Option<Arc<Transaction>>,
    /// The block's epoch when the statement was planned: a write that lands after a
    /// `ROLLBACK TO SAVEPOINT` undid its statement is dropped.
    epoch: u64,
    id: u64,
    schema: SchemaRef,
    mode: Mode,
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        // The mode's name only: a replace names every file of the table.
        let mode = match self.mode {
            Mode::Append => "append",
            Mode::Replace { .. } => "replace",
        };
        write!(f, "TableSink: table #{} ({mode})", self.id)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let (name, path) = self.store.new_file(self.id);
        let rows = write_stream(&path, &self.schema, data).await?;
        let files = if rows > 0 { vec![name] } else { vec![] };
        match &self.mode {
            Mode::Append => {
                if rows > 0 {
                    match &self.tx {
                        Some(tx) => tx.append_files(self.epoch, self.id, files, rows)?,
                        None => {
                            self.store.append_files(self.id, files, rows)?;
                            self.store.compact_soon(self.id);
                        }
                    }
                }
                Ok(rows)
            }
            Mode::Replace { expected, count } => {
                let reported = match count {
                    Count::Removed { rows_before } => rows_before.saturating_sub(rows),
                    Count::Known(n) => *n,
                    Count::Written(n) => n.load(Ordering::Relaxed),
                    Count::Merged {
                        rows_before,
                        untouched,
                        inserted,
                    } => {
                        rows_before.saturating_sub(untouched.load(Ordering::Relaxed))
                            + inserted.load(Ordering::Relaxed)
                    }
                };
                match &self.tx {
                    Some(tx) => tx.replace_files_if(self.epoch, self.id, expected, files, rows)?,
                    None => self
                        .store
                        .replace_files_if(self.id, expected, files, rows)?,
                }
                Ok(reported)
            }
        }
    }
}

/// The qualified name of table `id`, for messages (its id if it was dropped meanwhile).
fn table_name(store: &Store, id: u64) -> String {
    store
        .manifest()
        .tables
        .iter()
        .find(|t| t.id == id)
        .map_or_else(
            || format!("table #{id}"),
            |t| format!("{}.{}", t.schema, t.name),
        )
}

/// Turns an error of the Parquet reader into one that names the damaged table (XX001);
/// other errors (an interrupt, a failed expression) pass unchanged.
fn damaged_file(store: Arc<Store>, id: u64) -> impl Fn(DataFusionError) -> DataFusionError {
    move |e| {
        let detail = match e.find_root() {
            DataFusionError::ParquetError(p) => p.to_string(),
            DataFusionError::ArrowError(a, _)
                if matches!(
                    a.as_ref(),
                    ArrowError::ParquetError(_) | ArrowError::IoError(..)
                ) =>
            {
                a.to_string()
            }
            DataFusionError::ObjectStore(o) => o.to_string(),
            DataFusionError::IoError(io) => io.to_string(),
            _ => return e,
        };
        let table = table_name(&store, id);
        tracing::error!(%table, %detail, "a table file cannot be read");
        EngineError::CorruptTable { table, detail }.into()
    }
}

/// Checks a batch against a table's stored schema (column count, types, NOT NULL) and
/// relabels it with that schema, text views cast to their stored form.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(EngineError::NotNullViolation(field.name().clone()).into());
        }
    }
    let columns = crate::text_views::batch_to_stored(batch, schema)?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| DataFusionError::External(Box::new(EngineError::InvalidInput(e.to_string()))))
}

/// Writes a stream into one durable Parquet file at `path`; writes nothing for an empty
/// stream. The file is complete on disk when this returns `Ok`.
pub async fn write_stream(
    path: &std::path::Path,
    schema: &SchemaRef,
    mut data: SendableRecordBatchStream,
) -> Result<u64> {
    let mut writer: Option<ParquetFileWriter> = None;
    while let Some(batch) = data.next().await {
        let batch = conform(&batch?, schema)?;
        if batch.num_rows() == 0 {
            continue;
        }
        if writer.is_none() {
            writer = Some(ParquetFileWriter::create(path, schema.clone())?);
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch)?;
        }
    }
    match writer {
        Some(w) => Ok(w.commit()?),
        None => Ok(0),
    }
}
