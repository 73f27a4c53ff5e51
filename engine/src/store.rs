//! The data directory: the catalog file, one folder of Parquet files per table, and the
//! operations that change them.
//!
//! Layout:
//! ```text
//! <data dir>/catalog.json          the manifest (see `manifest`)
//! <data dir>/tables/t<id>/*.parquet table files, named in the manifest
//! ```
//! All changes go through [`Store::commit`], which serialises writers, writes the new
//! manifest atomically and only then publishes it to readers.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use tracing::{error, info, warn};

use crate::catalog_change::{Applied, CatalogChange, PlannedKey, PlannedProviders};
use crate::error::{EngineError, Result};
use crate::manifest::{Manifest, TableDef, columns_of};
use crate::storage::{AtomicWriteError, TMP_SUFFIX, fsync_dir, write_bytes_atomic};

const CATALOG_FILE: &str = "catalog.json";
const TABLES_DIR: &str = "tables";
const LOCK_FILE: &str = "LOCK";

pub use crate::manifest::RelationKind;

/// A table's storage: its folder id and the durable files in it.
#[derive(Debug, Clone)]
pub struct TableData {
    pub id: u64,
    pub files: Vec<String>,
    pub rows: u64,
    /// The columns every file is sorted by (see [`TableDef::sort_by`]).
    pub sort_by: Vec<String>,
}

impl TableData {
    /// The catalog entry of these files as table `schema.name` with columns `arrow_schema`.
    pub fn into_def(self, schema: &str, name: &str, arrow_schema: &SchemaRef) -> TableDef {
        TableDef {
            id: self.id,
            schema: schema.to_string(),
            name: name.to_string(),
            columns: columns_of(arrow_schema),
            files: self.files,
            rows: self.rows,
            comment: None,
            sort_by: self.sort_by,
        }
    }
}

/// The durable state of a data directory, shared by every session of a process.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    manifest: RwLock<Arc<Manifest>>,
    /// Serialises commits; readers never take it.
    commit_lock: Mutex<()>,
    next_file: AtomicU64,
    next_id: AtomicU64,
    /// Planned providers of views and external tables, keyed by (schema, name).
    planned: RwLock<HashMap<(String, String), Arc<dyn TableProvider>>>,
    /// Tables whose small files are being merged (see `compaction`).
    compacting: Mutex<HashSet<u64>>,
    /// Recent merges per table (files merged, file written): a write that read the table
    /// before a merge sees its files through them (see [`Store::through_merges`]).
    merges: Mutex<HashMap<u64, Vec<Merge>>>,
    /// Files merged away, with when: removed once no scan can still be reading them.
    pub(crate) retired: Mutex<Vec<(std::time::Instant, PathBuf)>>,
    /// Open transaction blocks and when each began: a file replaced after a block began is
    /// kept (retired, not removed) until the block ends, since its snapshot may read it.
    open_blocks: Mutex<std::collections::BTreeMap<u64, std::time::Instant>>,
    next_block: AtomicU64,
    /// Small tables' decoded batches (see [`crate::hot_tables`]).
    hot: crate::hot_tables::HotTables,
    /// Each table's Arrow schema, parsed once from the catalog's column types: a table's
    /// columns never change under its id, and every statement that names a table asks.
    schemas: RwLock<HashMap<u64, SchemaRef>>,
    /// An exclusive lock on `<data dir>/LOCK`, held while the store is open: two processes
    /// committing to one catalog would each overwrite the other's commits.
    _lock: fs::File,
}

impl PlannedProviders for &Store {
    fn get(&self, (schema, name): &PlannedKey) -> Option<Arc<dyn TableProvider>> {
        self.planned(schema, name)
    }

    fn put(&mut self, (schema, name): PlannedKey, provider: Option<Arc<dyn TableProvider>>) {
        match provider {
            Some(p) => self.set_planned(&schema, &name, p),
            None => {
                self.forget_planned(&schema, &name);
            }
        }
    }
}

/// One background merge of a table's files: the files merged, and the file written.
type Merge = (HashSet<String>, String);

pub(crate) fn poisoned() -> EngineError {
    EngineError::InvalidInput("internal lock poisoned by an earlier failure".into())
}

impl Store {
    /// Opens (or initialises) the data directory at `root` and removes leftovers of
    /// interrupted writes.
    pub fn open(root: &Path) -> Result<Arc<Store>> {
        fs::create_dir_all(root.join(TABLES_DIR))?;
        // The data directory is the server user's alone (as PostgreSQL requires of its own).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))?;
        if lock.try_lock().is_err() {
            return Err(EngineError::InUse(root.display().to_string()));
        }
        let path = root.join(CATALOG_FILE);
        let manifest = if path.exists() {
            let bytes = fs::read(&path)?;
            let m: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| EngineError::CorruptCatalog {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            if m.format_version > crate::manifest::FORMAT_VERSION {
                return Err(EngineError::CorruptCatalog {
                    path: path.display().to_string(),
                    reason: format!(
                        "format version {} is newer than this flashsql understands ({})",
                        m.format_version,
                        crate::manifest::FORMAT_VERSION
                    ),
                });
            }
            m
        } else {
            let m = Manifest::default();
            write_bytes_atomic(&path, &serde_json::to_vec_pretty(&m)?)?;
            m
        };
        let store = Store {
            root: root.to_path_buf(),
            next_id: AtomicU64::new(manifest.next_id),
            manifest: RwLock::new(Arc::new(manifest)),
            commit_lock: Mutex::new(()),
            next_file: AtomicU64::new(0),
            planned: RwLock::new(HashMap::new()),
            compacting: Mutex::new(HashSet::new()),
            merges: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            open_blocks: Mutex::new(std::collections::BTreeMap::new()),
            next_block: AtomicU64::new(0),
            hot: Default::default(),
            schemas: Default::default(),
            _lock: lock,
        };
        store.collect_garbage()?;
        Ok(Arc::new(store))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Small tables' decoded batches, shared by every session.
    pub fn hot(&self) -> &crate::hot_tables::HotTables {
        &self.hot
    }

    /// The Arrow schema of table `id`, whose catalog columns are `columns`.
    pub fn table_schema(
        &self,
        id: u64,
        columns: &[crate::manifest::ColumnDef],
    ) -> Result<SchemaRef> {
        if let Some(schema) = self.schemas.read().ok().and_then(|s| s.get(&id).cloned()) {
            return Ok(schema);
        }
        let schema = crate::manifest::schema_of(columns)?;
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.insert(id, schema.clone());
        }
        Ok(schema)
    }

    /// The current manifest (a consistent snapshot).
    pub fn manifest(&self) -> Arc<Manifest> {
        match self.manifest.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Removes table folders and files that the manifest does not name: what a crash in the
    /// middle of a write leaves behind.
    fn collect_garbage(&self) -> Result<()> {
        let m = self.manifest();
        let live: HashMap<String, HashSet<&str>> = m
            .tables
            .iter()
            .map(|t| {
                (
                    format!("t{}", t.id),
                    t.files.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let _ = fs::remove_file(self.root.join(format!("{CATALOG_FILE}{TMP_SUFFIX}")));
        for entry in fs::read_dir(self.root.join(TABLES_DIR))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            match live.get(&name) {
                None => {
                    warn!(folder = %name, "removing table folder not in the catalog (interrupted write)");
                    fs::remove_dir_all(entry.path())?;
                }
                Some(files) => {
                    for f in fs::read_dir(entry.path())? {
                        let f = f?;
                        let fname = f.file_name().to_string_lossy().to_string();
                        if !files.contains(fname.as_str()) {
                            warn!(file = %f.path().display(), "removing file not in the catalog (interrupted write)");
                            fs::remove_file(f.path())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies `change` to a copy of the manifest, makes it durable, then publishes it.
    /// If `change` or the write fails nothing is published.
    pub fn commit<T>(&self, change: impl FnOnce(&mut Manifest) -> Result<T>) -> Result<T> {
        let _guard = self.commit_lock.lock().map_err(|_| poisoned())?;
        let mut next = (*self.manifest()).clone();
        let out = change(&mut next)?;
        next.next_id = next.next_id.max(self.next_id.load(Ordering::SeqCst));
        match write_bytes_atomic(
            &self.root.join(CATALOG_FILE),
            &serde_json::to_vec_pretty(&next)?,
        ) {
            Ok(()) => {}
            Err(AtomicWriteError::BeforeRename(e)) => return Err(e),
            Err(AtomicWriteError::AfterRename(e)) => {
                // The new catalog is in place but may not survive a crash: whether this
                // commit happened is unknown, and neither answer can be given safely (the
                // writer would remove files the catalog on disk may name, or acknowledge a
                // write that may vanish). As PostgreSQL does when an fsync fails, stop: the
                // next start reads whichever catalog the disk kept, and removes the files
                // it does not name.
                error!(
                    "could not make the catalog durable after replacing it ({e}); stopping \
                     the server so that the next start recovers from what is on disk"
                );
                std::process::abort();
            }
        }
        *self.manifest.write().map_err(|_| poisoned())? = Arc::new(next);
        Ok(out)
    }

    /// Reserves a table id and creates its (empty) folder.
    pub fn allocate_table(&self) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        fs::create_dir_all(self.table_dir(id))?;
        Ok(id)
    }

    pub fn table_dir(&self, id: u64) -> PathBuf {
        self.root.join(TABLES_DIR).join(format!("t{id}"))
    }

    /// A fresh, unique file name in table `id`'s folder.
    pub fn new_file(&self, id: u64) -> (String, PathBuf) {
        let seq = self.next_file.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("part-{nanos:x}-{seq:04}.parquet");
        let path = self.table_dir(id).join(&name);
        (name, path)
    }

    /// Absolute paths of table `id`'s files in the current manifest.
    pub fn files_of(&self, id: u64) -> Vec<PathBuf> {
        let m = self.manifest();
        let dir = self.table_dir(id);
        m.tables
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.files.iter().map(|f| dir.join(f)).collect())
            .unwrap_or_default()
    }

    pub fn schema_exists(&self, schema: &str) -> bool {
        self.manifest().has_schema(schema)
    }

    pub fn planned(&self, schema: &str, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.planned
            .read()
            .ok()?
            .get(&(schema.to_string(), name.to_string()))
            .cloned()
    }

    pub fn set_planned(&self, schema: &str, name: &str, provider: Arc<dyn TableProvider>) {
        if let Ok(mut p) = self.planned.write() {
            p.insert((schema.to_string(), name.to_string()), provider);
        }
    }

    fn forget_planned(&self, schema: &str, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.planned
            .write()
            .ok()?
            .remove(&(schema.to_string(), name.to_string()))
    }

    /// Marks table `id` as being compacted; false if it already is.
    pub(crate) fn start_compaction(&self, id: u64) -> bool {
        self.compacting.lock().is_ok_and(|mut c| c.insert(id))
    }

    pub(crate) fn end_compaction(&self, id: u64) {
        if let Ok(mut c) = self.compacting.lock() {
            c.remove(&id);
        }
    }

    /// Applies one catalog change in a commit of its own (DDL outside a transaction block),
    /// then does what it leaves to do: dropped tables' folders go, planned providers follow.
    /// If it fails, a table folder it would have published is removed. Returns whether
    /// anything changed.
    pub fn apply(&self, change: CatalogChange) -> Result<bool> {
        match self.commit(|m| change.apply(m)) {
            Ok(applied) => {
                let changed = applied.changed;
                self.finish(applied);
                Ok(changed)
            }
            Err(e) => {
                if let Some(id) = change.created_table() {
                    self.remove_table_dir(id);
                }
                Err(e)
            }
        }
    }

    /// The work a committed catalog change leaves: removing dropped tables' folders and
    /// updating the planned providers of views and external tables.
    pub(crate) fn finish(&self, applied: Applied) {
        for effect in applied.planned {
            effect.apply_to(&mut &*self);
        }
        for id in applied.dropped_tables {
            self.remove_table_dir(id);
        }
    }

    pub(crate) fn remove_table_dir(&self, id: u64) {
        self.hot.forget(id);
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.remove(&id);
        }
        if let Err(e) = fs::remove_dir_all(self.table_dir(id))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(id, error = %e, "could not remove a dropped table's folder; it is removed at the next start");
        }
    }

    /// Registers a table whose files are already durable under `schema.name` (outside any
    /// transaction block: used to seed a data directory).
    pub fn publish_table(
        &self,
        schema: &str,
        name: &str,
        arrow_schema: &SchemaRef,
        data: TableData,
    ) -> Result<()> {
        self.apply(CatalogChange::PublishTable {
            def: data.into_def(schema, name, arrow_schema),
            replace: false,
        })
        .map(|_| ())
    }

    /// Registers an open transaction block (see `transaction`); returns its token.
    pub(crate) fn open_block(&self) -> u64 {
        let token = self.next_block.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut open) = self.open_blocks.lock() {
            open.insert(token, std::time::Instant::now());
        }
        token
    }

    /// The block `token` ended: files only it could still read go now.
    pub(crate) fn close_block(&self, token: u64) {
        if let Ok(mut open) = self.open_blocks.lock() {
            open.remove(&token);
        }
        self.retire(std::iter::empty());
    }

    /// When the oldest open block began, if any block is open.
    pub(crate) fn oldest_open_block(&self) -> Option<std::time::Instant> {
        self.open_blocks
            .lock()
            .ok()
            .and_then(|open| open.values().min().copied())
    }

    /// Removes table `id`'s replaced `files`, or retires them while an open block's
    /// snapshot may still name them.
    pub(crate) fn discard(&self, id: u64, files: &[String]) {
        let paths = files.iter().map(|f| self.table_dir(id).join(f));
        if self.oldest_open_block().is_some() {
            self.retire(paths);
        } else {
            for p in paths {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// Adds durable files to table `id`. On failure the files are removed again.
    pub fn append_files(&self, id: u64, files: Vec<String>, rows: u64) -> Result<()> {
        let names = files.clone();
        let r = self.commit(|m| {
            let t = m
                .tables
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or_else(|| EngineError::RelationNotFound(format!("table #{id}")))?;
            t.files.extend(files);
            t.rows += rows;
            Ok(())
        });
        if r.is_err() {
            for f in names {
                let _ = fs::remove_file(self.table_dir(id).join(f));
            }
        }
        r
    }

    /// Table `id`'s current files (relative names) and row count.
    pub fn table_files(&self, id: u64) -> Result<(Vec<String>, u64)> {
        let m = self.manifest();
        let t = m
            .tables
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| EngineError::RelationNotFound(format!("table #{id}")))?;
        Ok((t.files.clone(), t.rows))
    }

    /// Remembers that a background merge replaced `merged` files of table `id` by `into`.
    /// Called inside the merge's commit, so that a write committing after it sees it.
    pub(crate) fn record_merge(&self, id: u64, merged: HashSet<String>, into: String) {
        /// Enough for every statement still in flight when its table was merged.
        const KEPT: usize = 256;
        if let Ok(mut merges) = self.merges.lock() {
            let list = merges.entry(id).or_default();
            list.push((merged, into));
            if list.len() > KEPT {
                list.remove(0);
            }
        }
    }

    /// `files` of table `id` as they are after the background merges since: each merge
    /// whose files are all among them replaces them by its own. A merge changes no row, so
    /// a write that read `files` may replace what they became.
    pub(crate) fn through_merges(&self, id: u64, files: &[String]) -> HashSet<String> {
        let mut set: HashSet<String> = files.iter().cloned().collect();
        if let Ok(merges) = self.merges.lock()
            && let Some(list) = merges.get(&id)
        {
            for (merged, into) in list {
                if merged.iter().all(|f| set.contains(f)) {
                    set.retain(|f| !merged.contains(f));
                    set.insert(into.clone());
                }
            }
        }
        set
    }

    /// Replaces all files of table `id` (DELETE, TRUNCATE) if they are still `expected`;
    /// the old files are removed after the commit. If another write changed the table in the
    /// meantime nothing changes and the new files are removed.
    pub fn replace_files_if(
        &self,
        id: u64,
        expected: &[String],
        files: Vec<String>,
        rows: u64,
    ) -> Result<()> {
        let new_files = files.clone();
        let r = self.commit(|m| {
            let t = m
                .tables
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or_else(|| EngineError::RelationNotFound(format!("table #{id}")))?;
            // Background merges since the statement read the table changed its files but
            // not its rows: they do not conflict.
            if t.files != expected
                && t.files.iter().cloned().collect::<HashSet<_>>()
                    != self.through_merges(id, expected)
            {
                return Err(EngineError::ConcurrentWrite(t.name.clone()));
            }
            let old = std::mem::replace(&mut t.files, files);
            t.rows = rows;
            Ok(old)
        });
        match r {
            Ok(old) => {
                self.discard(id, &old);
                Ok(())
            }
            Err(e) => {
                for f in new_files {
                    let _ = fs::remove_file(self.table_dir(id).join(f));
                }
                Err(e)
            }
        }
    }

    pub fn set_property(&self, key: &str, value: &str) -> Result<()> {
        self.commit(|m| {
            m.properties.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    /// Writes a data set's tables as durable tables (used to seed an empty directory).
    pub fn load_dataset(&self, dataset: &flashsql_datasets::Dataset) -> Result<()> {
        for t in &dataset.tables {
            if !self.schema_exists(t.schema) {
                self.apply(CatalogChange::CreateSchema {
                    name: t.schema.to_string(),
                    if_not_exists: true,
                })?;
            }
            let sort_by: Vec<String> = t.sort_by.iter().map(|k| k.to_string()).collect();
            if !crate::sort_order::is_sorted(&t.batches, &sort_by, &t.arrow_schema)? {
                return Err(EngineError::InvalidInput(format!(
                    "generated table {}.{} is not in the order it declares ({})",
                    t.schema,
                    t.name,
                    sort_by.join(", ")
                )));
            }
            let id = self.allocate_table()?;
            let (file, path) = self.new_file(id);
            let rows = crate::storage::write_parquet(&path, t.arrow_schema.clone(), &t.batches)?;
            fsync_dir(&self.table_dir(id))?;
            let data = TableData {
                id,
                files: vec![file],
                rows,
                sort_by,
            };
            self.publish_table(t.schema, t.name, &t.arrow_schema, data)?;
            info!(table = %format!("{}.{}", t.schema, t.name), rows, "table written");
        }
        self.set_property("world.scale", dataset.scale.name())?;
        self.set_property("world.seed", &dataset.seed.to_string())?;
        Ok(())
    }
}

/// A store in a new temporary folder with one empty table `public.t (x BIGINT NOT NULL)`;
/// returns the folder (removed when dropped), the store and the table's id.
#[cfg(test)]
pub(crate) fn store_with_empty_table() -> (tempfile::TempDir, Arc<Store>, u64) {
    store_with_empty_table_sorted_by(vec![])
}

/// [`store_with_empty_table`], the table declaring `sort_by` (see [`crate::sort_order`]).
#[cfg(test)]
pub(crate) fn store_with_empty_table_sorted_by(
    sort_by: Vec<String>,
) -> (tempfile::TempDir, Arc<Store>, u64) {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    store_with_table(&schema, sort_by)
}

/// A store holding one empty table `t` of `schema`, declaring `sort_by`.
#[cfg(test)]
pub(crate) fn store_with_table(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    sort_by: Vec<String>,
) -> (tempfile::TempDir, Arc<Store>, u64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = Store::open(tmp.path()).expect("store");
    let id = store.allocate_table().expect("id");
    let data = TableData {
        id,
        files: vec![],
        rows: 0,
        sort_by,
    };
    store
        .publish_table("public", "t", schema, data)
        .expect("table");
    (tmp, store, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stores over one data directory would overwrite each other's commits: the second
    /// open is refused while the first is held, and allowed once it is closed.
    #[test]
    fn a_data_directory_is_opened_by_one_store_at_a_time() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let first = Store::open(tmp.path()).expect("opens");
        let second = Store::open(tmp.path());
        assert!(matches!(second, Err(EngineError::InUse(_))), "{second:?}");
        drop(first);
        Store::open(tmp.path()).expect("opens again once closed");
    }
}
