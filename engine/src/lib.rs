//! The flashsql engine: a data directory with a durable catalog, and the factory of sessions
//! that plan and run SQL over it.
//!
//! One [`Engine`] per process owns the [`store::Store`]; every client connection gets its own
//! [`Session`] (its own settings and temporary tables) over the same store.

pub mod broadcast_limit;
pub mod catalog;
pub mod catalog_change;
pub mod checked_expr;
pub mod compaction;
pub mod dml;
pub mod error;
pub mod executor;
pub mod external;
pub mod gather_filter;
pub mod group_join;
pub mod hot_tables;
pub mod information_schema;
pub mod inspect;
pub mod interrupt;
pub mod key_index;
pub mod load;
pub mod manifest;
pub mod merge;
pub mod merge_fold;
pub mod packed_lists;
pub use flashsql_udfs::pg_types;
pub mod presorted;
pub mod reorder;
pub mod row_expressions;
pub mod session;
pub mod short_text_eq;
pub mod sort_order;
pub mod sorted_runs;
pub mod storage;
pub mod store;
pub mod table;
#[cfg(test)]
mod test_support;
pub mod text_views;
pub mod transaction;
pub mod window_memory;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use flashsql_datasets::Scale;
pub use flashsql_gpu::device::DeviceChoice;
use flashsql_gpu::store::ModelStore;
use tracing::{info, warn};

pub use error::EngineError;
pub use external::AllowedPaths;
pub use session::{Output, Session};
pub use store::Store;

/// The database name clients connect to; also the DataFusion catalog name, so three-part
/// names `flashsql.public.events` resolve.
pub const DATABASE: &str = "flashsql";

/// The data directory's folder for files to load: external tables may always read it.
pub const IMPORT_DIR: &str = "import";

/// How to open the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Scale of the world generated into an empty data directory; `None` leaves it empty.
    pub seed_world: Option<(Scale, u64)>,
    /// Upper bound of memory for query execution (sorts, joins, aggregates), in bytes.
    pub memory_limit: usize,
    /// Decoded bytes of large tables held in memory because point lookups read them (see
    /// [`hot_tables`]); 0 holds none.
    pub lookup_memory: u64,
    /// Rows per record batch in execution.
    pub batch_size: usize,
    /// Where `train_model` trains unless a call says otherwise.
    pub device: DeviceChoice,
    /// Directories external tables and `COPY … TO` files may name, besides the data
    /// directory's `import/` (see [`external`]).
    pub allow_paths: Vec<PathBuf>,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            seed_world: Some((Scale::Small, 42)),
            memory_limit: 8 << 30,
            lookup_memory: hot_tables::LOOKUP_BUDGET_BYTES,
            batch_size: 8192,
            device: DeviceChoice::Auto,
            allow_paths: Vec::new(),
        }
    }
}

/// The process-wide engine.
pub struct Engine {
    config: EngineConfig,
    store: Arc<Store>,
    models: Arc<ModelStore>,
    runtime: Arc<RuntimeEnv>,
    executor: executor::CpuExecutor,
    allowed: Arc<AllowedPaths>,
}

impl Engine {
    /// Opens the data directory; an empty one is first filled with the configured world.
    pub async fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        // A GPU asked for by name must be there now, not at the first training.
        if let DeviceChoice::Cuda(_) = config.device {
            flashsql_gpu::device::open(config.device).map_err(|e| {
                EngineError::InvalidInput(format!("--device {}: {e}", config.device))
            })?;
        }
        let store = Store::open(&config.data_dir)?;
        store.hot().set_lookup_budget(config.lookup_memory);
        let import = config.data_dir.join(IMPORT_DIR);
        std::fs::create_dir_all(&import)?;
        let allowed = Arc::new(AllowedPaths::new(
            std::iter::once(import.as_path())
                .chain(config.allow_paths.iter().map(PathBuf::as_path)),
        )?);
        let models = ModelStore::open(config.data_dir.join("models"))
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?
            .with_default_device(config.device);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit)))
            .build_arc()?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let engine = Engine {
            config,
            store,
            models: Arc::new(models),
            runtime,
            executor: executor::CpuExecutor::new(threads)?,
            allowed,
        };
        let empty = {
            let m = engine.store.manifest();
            m.tables.is_empty() && m.views.is_empty() && m.external.is_empty()
        };
        if empty && let Some((scale, seed)) = engine.config.seed_world {
            info!(%scale, seed, dir = %engine.config.data_dir.display(), "empty data directory: generating the flash-sale world");
            let t0 = Instant::now();
            let dataset =
                tokio::task::spawn_blocking(move || flashsql_datasets::generate(scale, seed))
                    .await
                    .map_err(|e| {
                        EngineError::InvalidInput(format!("generator task failed: {e}"))
                    })??;
            info!(
                seconds = t0.elapsed().as_secs_f64(),
                "world generated; writing tables"
            );
            let store = engine.store.clone();
            tokio::task::spawn_blocking(move || store.load_dataset(&dataset))
                .await
                .map_err(|e| EngineError::InvalidInput(format!("writer task failed: {e}")))??;
            info!(seconds = t0.elapsed().as_secs_f64(), "world ready");
        } else {
            let session = engine.new_session()?;
            for failure in session.replan_stored_relations().await? {
                warn!(%failure, "stored view could not be planned");
            }
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The trained models (`<data dir>/models`).
    pub fn models(&self) -> &Arc<ModelStore> {
        &self.models
    }

    /// Where statements execute (see [`executor`]).
    pub fn executor(&self) -> &executor::CpuExecutor {
        &self.executor
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A new session with its own settings and temporary tables.
    pub fn new_session(&self) -> Result<Session, EngineError> {
        Ok(Session::new(
            self.store.clone(),
            self.models.clone(),
            self.runtime.clone(),
            self.allowed.clone(),
            DATABASE,
            self.config.batch_size,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server told to train on a GPU it does not have refuses to start and says why,
    /// rather than falling back to the CPU in silence.
    #[tokio::test]
    async fn an_absent_gpu_is_an_error_at_start() {
        if flashsql_gpu::device::CUDA_BUILT {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EngineConfig::new(dir.path().join("data"));
        config.seed_world = None;
        config.device = DeviceChoice::Cuda(0);
        let err = Engine::open(config).await.err().expect("must fail");
        assert!(err.to_string().contains("built without CUDA"), "{err}");
        let mut config = EngineConfig::new(dir.path().join("data"));
        config.seed_world = None;
        config.device = DeviceChoice::Auto;
        assert!(Engine::open(config).await.is_ok());
    }
}
