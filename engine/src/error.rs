//! Errors of the engine layer.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

/// What can go wrong in the engine. Converted to a [`DataFusionError::External`] at the
/// DataFusion boundary; the wire layer downcasts it back to choose the SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("relation \"{0}\" already exists")]
    RelationExists(String),
    #[error("relation \"{0}\" does not exist")]
    RelationNotFound(String),
    #[error("schema \"{0}\" already exists")]
    SchemaExists(String),
    #[error("schema \"{0}\" does not exist")]
    SchemaNotFound(String),
    #[error("schema \"{0}\" is not empty: drop its tables and views first or use CASCADE")]
    SchemaNotEmpty(String),
    #[error("\"{0}\" is a view, not a table")]
    NotATable(String),
    #[error("\"{0}\" is not a view")]
    NotAView(String),
    #[error(
        "could not serialize access to \"{0}\": another statement changed it concurrently; retry"
    )]
    ConcurrentWrite(String),
    #[error("the statement was interrupted: it was cancelled, timed out or its client left")]
    Interrupted,
    #[error("savepoint \"{0}\" does not exist")]
    SavepointNotFound(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("{0} is not supported")]
    NotSupported(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error(
        "cannot write into external table \"{0}\": external tables are read-only; copy it into a table with CREATE TABLE … AS SELECT"
    )]
    ReadOnlyExternal(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(
        "the data directory {0} is in use by another flashsql process (a running server?): stop it first, or load through SQL on that server"
    )]
    InUse(String),
    #[error("{file}, line {line}, column {column}: {detail}; nothing was loaded")]
    Malformed {
        file: String,
        line: u64,
        column: String,
        detail: String,
    },
    #[error(
        "cannot append to \"{table}\": its columns ({have}) are not the ones this load writes ({load})"
    )]
    LoadMismatch {
        table: String,
        have: String,
        load: String,
    },
    #[error("the catalog file {path} is damaged: {reason}")]
    CorruptCatalog { path: String, reason: String },
    #[error("table \"{table}\" is damaged: one of its files cannot be read ({detail})")]
    CorruptTable { table: String, detail: String },
    #[error("null value in column \"{0}\" violates not-null constraint")]
    NotNullViolation(String),
    #[error("{} command cannot affect row a second time", if *on_conflict { "ON CONFLICT DO UPDATE" } else { "MERGE" })]
    RowChangedTwice { on_conflict: bool },
    #[error("file writer used after it was closed")]
    WriterClosed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("Parquet error: {0}")]
    Parquet(#[from] ParquetError),
    #[error("Arrow error: {0}")]
    Arrow(#[from] ArrowError),
    #[error("catalog serialisation error: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error("data set generation failed: {0}")]
    Dataset(#[from] flashsql_datasets::DatasetError),
}

impl From<EngineError> for DataFusionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
