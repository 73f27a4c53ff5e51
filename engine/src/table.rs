//! Durable tables: a schema and a list of Parquet files named by the catalog.
//!
//! Scans read the files the catalog names at planning time (a consistent snapshot) through
//! DataFusion's Parquet reader, so projection, predicate and row-group pruning all apply.
//! Inserts stream into one new file that the catalog names only once it is on disk.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use crate::error::EngineError;
use crate::storage::ParquetFileWriter;
use crate::store::Store;

/// A table stored as Parquet files in the data directory.
#[derive(Debug)]
pub struct DurableTable {
    store: Arc<Store>,
    id: u64,
    schema: SchemaRef,
}

impl DurableTable {
    pub fn new(store: Arc<Store>, id: u64, schema: SchemaRef) -> Self {
        Self { store, id, schema }
    }

    /// A listing table over exactly the files the catalog names now.
    fn snapshot(&self) -> Result<Option<ListingTable>> {
        let files = self.store.files_of(self.id);
        if files.is_empty() {
            return Ok(None);
        }
        let urls = files
            .iter()
            .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
            .collect::<Result<Vec<_>>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        Ok(Some(ListingTable::try_new(config)?))
    }
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        match self.snapshot()? {
            Some(listing) => listing.scan(state, projection, filters, limit).await,
            None => {
                let schema = match projection {
                    Some(p) => Arc::new(self.schema.project(p)?),
                    None => self.schema.clone(),
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
        let sink = AppendSink {
            store: self.store.clone(),
            id: self.id,
            schema: self.schema.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Appends one statement's rows to a durable table as a single new file.
#[derive(Debug)]
struct AppendSink {
    store: Arc<Store>,
    id: u64,
    schema: SchemaRef,
}

impl DisplayAs for AppendSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AppendSink: table #{}", self.id)
    }
}

#[async_trait]
impl DataSink for AppendSink {
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
        if rows > 0 {
            self.store.append_files(self.id, vec![name], rows)?;
        }
        Ok(rows)
    }
}

/// Checks a batch against a table's schema (column count, types, NOT NULL) and relabels it
/// with that schema.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
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
