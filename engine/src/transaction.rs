//! Transaction blocks: `BEGIN` … `COMMIT` applies a session's writes to durable tables
//! together or not at all.
//!
//! A table is a list of immutable Parquet files named by the catalog, so a write is a change
//! of that list: files added (INSERT, COPY) and files removed (DELETE, UPDATE and TRUNCATE
//! remove the files they rewrite). Inside a block those changes are kept here instead of
//! being committed; the files themselves are written as usual, named by no catalog until
//! COMMIT (a crash leaves them as orphans that the next start removes).
//!
//! - **Reads** see the catalog as it was at `BEGIN` plus the block's own changes (snapshot
//!   isolation, PostgreSQL's REPEATABLE READ). A table created after `BEGIN` is read as it is
//!   when the block first touches it.
//! - **COMMIT** applies every change in one catalog commit on top of what others committed
//!   meanwhile. Appends never conflict; a block that removed a file which is no longer there
//!   (another DELETE, UPDATE, TRUNCATE or a merge of small files got there first) fails
//!   with 40001 and changes nothing — first committer wins.
//! - **ROLLBACK**, a failed COMMIT or a session that ends inside a block removes the files
//!   the block wrote.
//!
//! DDL (CREATE, DROP, ALTER … RENAME, COMMENT, schemas) is part of the block too: each change
//! is recorded as a [`CatalogChange`], the block sees the catalog with its changes applied
//! (a table it created, not one it dropped), and COMMIT applies them again, in order, on the
//! catalog as it is then and in the same commit as the block's writes. A change that no
//! longer applies (another session took the name, or dropped what the block renames) fails
//! the COMMIT with 40001; a table the block drops must not have been changed by others since
//! the block first saw it. Tables the block created are removed if it does not commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::catalog::TableProvider;
use tracing::warn;

use crate::catalog_change::{Applied, CatalogChange, PlannedKey, PlannedProviders};
use crate::error::{EngineError, Result};
use crate::manifest::Manifest;
use crate::store::{Store, poisoned};

/// One table's uncommitted change.
#[derive(Debug, Default, Clone)]
struct TableChange {
    /// The table's files and rows when the block first read or wrote it.
    base_files: Vec<String>,
    base_rows: u64,
    /// Files of `base_files` this block removed.
    removed: Vec<String>,
    /// Files this block wrote that are still part of its view of the table.
    added: Vec<String>,
    /// Files this block wrote and then replaced itself: removed at the end either way.
    discarded: Vec<String>,
    /// Rows in this block's view of the table.
    rows: u64,
    /// Whether the block appended (the table may need its small files merged after COMMIT).
    appended: bool,
}

impl TableChange {
    fn files(&self) -> Vec<String> {
        self.base_files
            .iter()
            .filter(|f| !self.removed.contains(f))
            .chain(self.added.iter())
            .cloned()
            .collect()
    }
}

/// What the block's planned providers (views, external tables) are where its DDL changed
/// them: `None` for a name it dropped or renamed away.
type PlannedOverlay = HashMap<PlannedKey, Option<Arc<dyn TableProvider>>>;

/// A block's planned providers: its own changes over the store's.
struct Overlay<'a> {
    planned: &'a mut PlannedOverlay,
    store: &'a Store,
}

impl PlannedProviders for Overlay<'_> {
    fn get(&self, key: &PlannedKey) -> Option<Arc<dyn TableProvider>> {
        match self.planned.get(key) {
            Some(p) => p.clone(),
            None => self.store.planned(&key.0, &key.1),
        }
    }

    fn put(&mut self, key: PlannedKey, provider: Option<Arc<dyn TableProvider>>) {
        self.planned.insert(key, provider);
    }
}

/// The block's view of the catalog, cached: (the store's manifest it was built on, how many
/// DDL changes it holds, the view).
type CachedView = (Arc<Manifest>, usize, Arc<Manifest>);

/// The block's state at a `SAVEPOINT`.
#[derive(Debug)]
struct Savepoint {
    name: String,
    tables: HashMap<u64, TableChange>,
    ddl_len: usize,
    planned: PlannedOverlay,
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<u64, TableChange>,
    /// The block's DDL, in order.
    ddl: Vec<CatalogChange>,
    planned: PlannedOverlay,
    /// `SAVEPOINT`s in order.
    savepoints: Vec<Savepoint>,
    /// Set once COMMIT or ROLLBACK handled the files.
    ended: bool,
    /// Bumped by `ROLLBACK TO SAVEPOINT`: writes of statements planned before it are late.
    epoch: u64,
}

/// An open transaction block of one session.
#[derive(Debug)]
pub struct Transaction {
    store: Arc<Store>,
    /// The store's token for this open block (see `Store::open_block`).
    token: u64,
    /// The catalog at `BEGIN`: what the block reads of tables it has not written.
    base: Arc<Manifest>,
    state: Mutex<State>,
    view: Mutex<Option<CachedView>>,
}

impl Transaction {
    pub fn begin(store: Arc<Store>) -> Self {
        // Registered before the snapshot is taken: every file replaced after it is kept
        // until the block ends.
        let token = store.open_block();
        let base = store.manifest();
        Self {
            store,
            token,
            base,
            state: Mutex::new(State::default()),
            view: Mutex::new(None),
        }
    }

    /// The catalog as this block sees it: what is committed now, with the block's DDL
    /// applied. A change that no longer applies (another session committed a conflicting
    /// one) is left out here; COMMIT then fails on it.
    pub fn manifest(&self) -> Arc<Manifest> {
        let current = self.store.manifest();
        let Ok(state) = self.state.lock() else {
            return current;
        };
        if state.ddl.is_empty() {
            return current;
        }
        if let Ok(cache) = self.view.lock()
            && let Some((on, len, view)) = cache.as_ref()
            && Arc::ptr_eq(on, &current)
            && *len == state.ddl.len()
        {
            return view.clone();
        }
        let mut view = (*current).clone();
        for change in &state.ddl {
            let mut next = view.clone();
            if change.apply(&mut next).is_ok() {
                view = next;
            }
        }
        let view = Arc::new(view);
        if let Ok(mut cache) = self.view.lock() {
            *cache = Some((current, state.ddl.len(), view.clone()));
        }
        view
    }

    /// The planned provider of view or external table `schema.name` as this block sees it.
    pub fn planned(&self, schema: &str, name: &str) -> Option<Arc<dyn TableProvider>> {
        let key = (schema.to_string(), name.to_string());
        if let Ok(state) = self.state.lock()
            && let Some(p) = state.planned.get(&key)
        {
            return p.clone();
        }
        self.store.planned(schema, name)
    }

    /// Records a DDL change: checked against the block's view of the catalog now (so its
    /// error comes at once), applied again at COMMIT. A dropped table carries the files the
    /// block saw, so that COMMIT notices a concurrent change to it. Returns whether the
    /// change changed anything.
    pub fn record(&self, mut change: CatalogChange) -> Result<bool> {
        let view = self.manifest();
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if state.ended {
            return Err(EngineError::Interrupted);
        }
        if let Some((schema, name, expect_files)) = change.expected_table()
            && let Some(t) = view.table(schema, name)
        {
            let seen = self.change(&mut state, t.id)?.base_files.clone();
            *expect_files = Some((t.id, seen));
        }
        let mut next = (*view).clone();
        let applied = match change.apply(&mut next) {
            Ok(a) => a,
            Err(e) => {
                if let Some(id) = change.created_table() {
                    self.store.remove_table_dir(id);
                }
                return Err(e);
            }
        };
        let mut overlay = Overlay {
            planned: &mut state.planned,
            store: &self.store,
        };
        for effect in applied.planned {
            effect.apply_to(&mut overlay);
        }
        state.ddl.push(change);
        Ok(applied.changed)
    }

    /// Table `id` as the block first sees it: from the snapshot at `BEGIN`, or (for a table
    /// created since, by others or by the block) as it is now in the block's view.
    fn first_look(&self, id: u64) -> Result<(Vec<String>, u64)> {
        if let Some(t) = self.base.tables.iter().find(|t| t.id == id) {
            return Ok((t.files.clone(), t.rows));
        }
        if let Some(t) = self.view_table(id) {
            return Ok(t);
        }
        self.store.table_files(id)
    }

    /// Table `id`'s files and rows in the block's view, without taking the state's lock
    /// (the caller holds it): the view is the cached one, or the store's manifest.
    fn view_table(&self, id: u64) -> Option<(Vec<String>, u64)> {
        self.cached_view()
            .into_iter()
            .chain(std::iter::once(self.store.manifest()))
            .find_map(|m| {
                m.tables
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| (t.files.clone(), t.rows))
            })
    }

    fn change<'a>(&self, state: &'a mut State, id: u64) -> Result<&'a mut TableChange> {
        match state.tables.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (files, rows) = self.first_look(id)?;
                Ok(e.insert(TableChange {
                    base_files: files,
                    base_rows: rows,
                    rows,
                    ..TableChange::default()
                }))
            }
        }
    }

    /// Table `id`'s files (relative names) and row count as this block sees them.
    pub fn table_files(&self, id: u64) -> Result<(Vec<String>, u64)> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let change = self.change(&mut state, id)?;
        Ok((change.files(), change.rows))
    }

    /// The epoch a statement planned now writes in (see [`Transaction::rollback_to`]).
    pub fn epoch(&self) -> u64 {
        self.state.lock().map_or(u64::MAX, |s| s.epoch)
    }

    /// Records new durable files of table `id` (INSERT, COPY) written by a statement planned
    /// in `epoch`.
    pub fn append_files(&self, epoch: u64, id: u64, files: Vec<String>, rows: u64) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if state.ended || state.epoch != epoch {
            return Err(self.too_late(id, &files));
        }
        let change = self.change(&mut state, id)?;
        change.added.extend(files);
        change.rows += rows;
        change.appended = true;
        Ok(())
    }

    /// Replaces table `id`'s files in this block's view if they are still `expected`
    /// (DELETE, UPDATE, TRUNCATE).
    pub fn replace_files_if(
        &self,
        epoch: u64,
        id: u64,
        expected: &[String],
        files: Vec<String>,
        rows: u64,
    ) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if state.ended || state.epoch != epoch {
            return Err(self.too_late(id, &files));
        }
        let change = self.change(&mut state, id)?;
        if change.files() != expected {
            let name = self.table_name(id);
            drop(state);
            self.remove(id, &files);
            return Err(EngineError::ConcurrentWrite(name));
        }
        for f in expected {
            if let Some(i) = change.added.iter().position(|a| a == f) {
                let own = change.added.remove(i);
                change.discarded.push(own);
            } else {
                change.removed.push(f.clone());
            }
        }
        change.added.extend(files);
        change.rows = rows;
        Ok(())
    }

    /// A write that finished after its block ended, or after a `ROLLBACK TO SAVEPOINT` undid
    /// its statement (a statement cancelled by a timeout whose task was still writing): its
    /// files go, and it is not recorded.
    fn too_late(&self, id: u64, files: &[String]) -> EngineError {
        self.remove(id, files);
        EngineError::Interrupted
    }

    /// The last view of the catalog [`Transaction::manifest`] built, if any.
    fn cached_view(&self) -> Option<Arc<Manifest>> {
        self.view
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, _, v)| v.clone()))
    }

    fn table_name(&self, id: u64) -> String {
        let view = self.cached_view();
        self.base
            .tables
            .iter()
            .chain(self.store.manifest().tables.iter())
            .chain(view.iter().flat_map(|v| v.tables.iter()))
            .find(|t| t.id == id)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| format!("table #{id}"))
    }

    /// Remembers the changes so far under `name` (`SAVEPOINT name`; a name used again is
    /// shadowed, as in PostgreSQL).
    pub fn savepoint(&self, name: &str) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let saved = Savepoint {
            name: name.to_string(),
            tables: state.tables.clone(),
            ddl_len: state.ddl.len(),
            planned: state.planned.clone(),
        };
        state.savepoints.push(saved);
        Ok(())
    }

    fn savepoint_index(state: &State, name: &str) -> Result<usize> {
        state
            .savepoints
            .iter()
            .rposition(|s| s.name == name)
            .ok_or_else(|| EngineError::SavepointNotFound(name.to_string()))
    }

    /// Undoes the changes made since `SAVEPOINT name` (which stays; later ones go) and
    /// removes the files and tables written since.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let i = Self::savepoint_index(&state, name)?;
        state.savepoints.truncate(i + 1);
        let saved = &state.savepoints[i];
        let (tables, ddl_len, planned) =
            (saved.tables.clone(), saved.ddl_len, saved.planned.clone());
        for (id, now) in state.tables.iter() {
            let kept: Vec<&String> = tables
                .get(id)
                .map(|c| c.added.iter().chain(c.discarded.iter()).collect())
                .unwrap_or_default();
            let since: Vec<String> = now
                .added
                .iter()
                .chain(now.discarded.iter())
                .filter(|f| !kept.contains(f))
                .cloned()
                .collect();
            self.remove(*id, &since);
        }
        for change in state.ddl.drain(ddl_len..) {
            if let Some(id) = change.created_table() {
                self.store.remove_table_dir(id);
            }
        }
        state.tables = tables;
        state.planned = planned;
        state.epoch += 1;
        Ok(())
    }

    /// Forgets `SAVEPOINT name` and those after it, keeping their changes.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let i = Self::savepoint_index(&state, name)?;
        state.savepoints.truncate(i);
        Ok(())
    }

    /// Applies every change in one catalog commit, or none: the DDL first, in order, then
    /// the writes (40001 if another write removed a file this block removed, dropped a
    /// table it wrote, or made one of its DDL changes no longer apply).
    pub fn commit(&self) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.ended = true;
        let ddl: Vec<CatalogChange> = state
            .ddl
            .iter()
            .cloned()
            .map(|c| self.through_merges(c))
            .collect();
        let changes: Vec<(u64, &TableChange)> = state
            .tables
            .iter()
            .filter(|(_, c)| !c.added.is_empty() || !c.removed.is_empty())
            .map(|(id, c)| (*id, c))
            .collect();
        // On success: what the DDL leaves to do, per table the files the commit removed, and
        // the tables the DDL dropped (their writes are moot).
        let applied = if changes.is_empty() && ddl.is_empty() {
            Ok((Vec::new(), HashMap::new(), Vec::new()))
        } else {
            self.store.commit(|m| {
                let mut done: Vec<Applied> = Vec::new();
                for change in &ddl {
                    done.push(change.apply(m).map_err(|e| conflict(change, e))?);
                }
                let dropped: Vec<u64> = done
                    .iter()
                    .flat_map(|a| a.dropped_tables.iter().copied())
                    .collect();
                let mut removed_by_table = HashMap::new();
                for (id, c) in &changes {
                    if dropped.contains(id) {
                        continue;
                    }
                    let t = m
                        .tables
                        .iter_mut()
                        .find(|t| t.id == *id)
                        .ok_or_else(|| EngineError::ConcurrentWrite(format!("table #{id}")))?;
                    // Files the block removes that a background merge has replaced since
                    // are removed as what they became (a merge changes no row).
                    let removed = self.store.through_merges(*id, &c.removed);
                    if removed.iter().any(|f| !t.files.contains(f)) {
                        return Err(EngineError::ConcurrentWrite(t.name.clone()));
                    }
                    t.files.retain(|f| !removed.contains(f));
                    t.files.extend(c.added.iter().cloned());
                    let delta = c.rows as i128 - c.base_rows as i128;
                    t.rows = (t.rows as i128 + delta).max(0) as u64;
                    removed_by_table.insert(*id, removed.into_iter().collect::<Vec<_>>());
                }
                Ok((done, removed_by_table, dropped))
            })
        };
        for (id, c) in state.tables.iter() {
            match &applied {
                Ok((_, _, dropped)) if dropped.contains(id) => {}
                Ok((_, removed, _)) => {
                    // Other open blocks' snapshots may still read the replaced files. Those
                    // a background merge replaced first are the merge's to retire; its
                    // file is this commit's.
                    if let Some(files) = removed.get(id) {
                        self.store.discard(*id, files);
                    }
                    self.remove(*id, &c.discarded);
                    if c.appended {
                        self.store.compact_soon(*id);
                    }
                }
                Err(_) => {
                    self.remove(*id, &c.added);
                    self.remove(*id, &c.discarded);
                }
            }
        }
        let result = match applied {
            Ok((done, ..)) => {
                for a in done {
                    self.store.finish(a);
                }
                Ok(())
            }
            Err(e) => {
                self.remove_created_tables(&state);
                Err(e)
            }
        };
        drop(state);
        self.store.close_block(self.token);
        result
    }

    /// A recorded drop or order change checks the table's files as the block saw them; a
    /// background merge since changed the files but no row, so it checks what they became.
    fn through_merges(&self, mut change: CatalogChange) -> CatalogChange {
        if let Some((_, _, Some((id, files)))) = change.expected_table() {
            *files = self.store.through_merges(*id, files).into_iter().collect();
        }
        change
    }

    fn remove_created_tables(&self, state: &State) {
        for change in &state.ddl {
            if let Some(id) = change.created_table() {
                self.store.remove_table_dir(id);
            }
        }
    }

    /// Forgets every change and removes the files and tables the block wrote.
    pub fn rollback(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.ended {
            return;
        }
        state.ended = true;
        for (id, c) in state.tables.iter() {
            self.remove(*id, &c.added);
            self.remove(*id, &c.discarded);
        }
        self.remove_created_tables(&state);
        drop(state);
        self.store.close_block(self.token);
    }

    fn remove(&self, id: u64, files: &[String]) {
        let dir = self.store.table_dir(id);
        for f in files {
            if let Err(e) = std::fs::remove_file(dir.join(f))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(file = %f, error = %e, "could not remove a transaction's file");
            }
        }
    }
}

/// A DDL change that no longer applies at COMMIT: another session changed the catalog in
/// a way the block did not see (took the name it creates, dropped what it renames), which
/// is a serialization failure like a concurrent rewrite.
fn conflict(change: &CatalogChange, e: EngineError) -> EngineError {
    match e {
        EngineError::RelationExists(n)
        | EngineError::RelationNotFound(n)
        | EngineError::SchemaExists(n)
        | EngineError::SchemaNotFound(n)
        | EngineError::SchemaNotEmpty(n)
        | EngineError::NotATable(n)
        | EngineError::NotAView(n) => EngineError::ConcurrentWrite(n),
        other => {
            warn!(?change, error = %other, "a block's DDL failed at COMMIT");
            other
        }
    }
}

impl Drop for Transaction {
    /// A block abandoned without COMMIT or ROLLBACK (its session ended) is rolled back.
    fn drop(&mut self) {
        self.rollback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::store_with_empty_table;

    fn touch(store: &Store, id: u64, name: &str) -> String {
        std::fs::write(store.table_dir(id).join(name), b"x").expect("file");
        name.to_string()
    }

    /// A write of a statement planned before `ROLLBACK TO SAVEPOINT` (or that lands after
    /// the block ended) is not recorded, and its file is removed.
    #[test]
    fn late_writes_are_dropped() {
        let (_tmp, store, id) = store_with_empty_table();
        let tx = Transaction::begin(store.clone());
        tx.savepoint("s").expect("savepoint");
        let planned = tx.epoch();
        tx.rollback_to("s").expect("rollback to");
        let late = touch(&store, id, "late.parquet");
        assert!(tx.append_files(planned, id, vec![late.clone()], 5).is_err());
        assert!(!store.table_dir(id).join(&late).exists());
        let now = tx.epoch();
        let kept = touch(&store, id, "kept.parquet");
        tx.append_files(now, id, vec![kept.clone()], 2)
            .expect("recorded");
        tx.commit().expect("commit");
        assert_eq!(store.table_files(id).expect("files"), (vec![kept], 2));
        let after = touch(&store, id, "after.parquet");
        assert!(tx.append_files(now, id, vec![after.clone()], 1).is_err());
        assert!(!store.table_dir(id).join(&after).exists());
    }
}
