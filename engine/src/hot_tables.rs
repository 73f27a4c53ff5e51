//! Small tables held in memory as Arrow after their first read.
//!
//! A backend reads one item's plan at a time, thousands of times a second, from tables of a
//! few thousand rows. Each such lookup opened, decompressed and decoded the table's Parquet
//! files again — more than half of its time on the `items` table. A table whose files take
//! at most [`MAX_TABLE_FILE_BYTES`] on disk is decoded once and kept here; scans of it read
//! the batches from memory (projection, filters and limits still apply above them).
//!
//! Entries are keyed by the exact list of files a scan reads. Table files never change once
//! written — every write, DELETE, compaction or transaction names a new list — so an entry
//! can never be stale: a commit simply makes scans ask for a new key, and the old entry of
//! that table is dropped when the new one is stored. The cache holds at most
//! [`BUDGET_BYTES`] of decoded batches, dropping the least recently read first.
//!
//! A larger table is held too once a prepared point lookup has asked for one of its rows
//! ([`HotTables::want_for_lookups`]): a service reading exposures or personalised plans by
//! key from a table of millions of rows otherwise decodes a Parquet page of every column
//! per lookup (5.8 ms against PostgreSQL's 0.08). Such tables have their own budget,
//! [`LOOKUP_BUDGET_BYTES`], and are loaded by one scan at a time: the scan that finds the
//! table wanted decodes it (the others read the files meanwhile), and the lookups after it
//! are answered from memory. A write makes a new snapshot, decoded again by a later scan —
//! but not sooner than nine times the last load's duration after it, so that a large table
//! written every second is not decoded over and over.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;

use crate::key_index::KeyIndex;

/// Tables whose files take more than this on disk are read from their files each time.
pub const MAX_TABLE_FILE_BYTES: u64 = 8 << 20;

/// The most decoded bytes the cache holds, over all small tables.
pub const BUDGET_BYTES: u64 = 64 << 20;

/// The most decoded bytes held of tables larger than [`MAX_TABLE_FILE_BYTES`] that point
/// lookups asked for, unless set otherwise ([`HotTables::set_lookup_budget`],
/// `--lookup-memory-mb`).
pub const LOOKUP_BUDGET_BYTES: u64 = 512 << 20;

/// Which budget an entry is held under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Files of at most [`MAX_TABLE_FILE_BYTES`], held on their first scan.
    Small,
    /// Larger tables held because point lookups read them.
    ForLookups,
}

struct Entry {
    table: u64,
    class: Class,
    batches: Arc<Vec<RecordBatch>>,
    bytes: u64,
    last_read: AtomicU64,
    /// Key indexes over these batches, by column, built on the first lookup by each.
    indexes: HashMap<usize, Arc<KeyIndex>>,
}

/// The decoded batches of small tables, by the files they were read from.
pub struct HotTables {
    /// Read by every scan and lookup at once; written when a table is loaded or dropped.
    entries: RwLock<HashMap<Vec<PathBuf>, Entry>>,
    /// Per table, the last file list found too large, and whether too large even for
    /// lookups: its scans skip the size check (a `stat` per file) until the table's files
    /// change.
    too_large: Mutex<HashMap<u64, (Vec<PathBuf>, bool)>>,
    /// Tables point lookups asked for that were too large to hold as small ones.
    wanted: Mutex<HashSet<u64>>,
    /// Loads for lookups, by table: running now, or when the next may start.
    loads: Arc<Mutex<HashMap<u64, LoadState>>>,
    /// The budget of [`Class::ForLookups`].
    lookup_budget: AtomicU64,
    clock: AtomicU64,
}

impl Default for HotTables {
    fn default() -> Self {
        Self {
            entries: Default::default(),
            too_large: Default::default(),
            wanted: Default::default(),
            loads: Default::default(),
            lookup_budget: AtomicU64::new(LOOKUP_BUDGET_BYTES),
            clock: Default::default(),
        }
    }
}

/// After a load for lookups, the next one of that table waits this many times as long as it
/// took: a table written every second is decoded again at most a tenth of the time, its
/// lookups reading the files in between.
const RELOAD_SPACING: u32 = 9;

#[derive(Debug, Clone, Copy)]
enum LoadState {
    Running,
    Done { next: Instant },
}

/// Held by the scan loading a table for lookups; others read the files until it is gone.
pub struct LoadTicket {
    loads: Arc<Mutex<HashMap<u64, LoadState>>>,
    table: u64,
    started: Instant,
}

impl Drop for LoadTicket {
    fn drop(&mut self) {
        let now = Instant::now();
        let next = now + (now - self.started) * RELOAD_SPACING;
        if let Ok(mut loads) = self.loads.lock() {
            loads.insert(self.table, LoadState::Done { next });
        }
    }
}

/// What a scan of a table's files should do.
pub enum Lookup {
    /// Read these batches from memory.
    Held(Vec<RecordBatch>),
    /// Read the files and [`HotTables::put`] the batches under this class (a table
    /// loaded for lookups carries the ticket that keeps other scans from loading it too).
    Load(Class, Option<LoadTicket>),
    /// Read the files each time: the table is too large to hold.
    TooLarge,
}

impl std::fmt::Debug for HotTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.read().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("HotTables").field("entries", &n).finish()
    }
}

impl HotTables {
    /// How to scan `files`, the current files of table `table`.
    pub fn lookup(&self, table: u64, files: &[PathBuf]) -> Lookup {
        if let Some(batches) = self.get(files) {
            return Lookup::Held(batches);
        }
        let Ok(mut too_large) = self.too_large.lock() else {
            return Lookup::TooLarge;
        };
        match too_large.get(&table) {
            Some((f, even_for_lookups)) if f.as_slice() == files => {
                if *even_for_lookups {
                    return Lookup::TooLarge;
                }
            }
            _ => {
                if small_enough(files, MAX_TABLE_FILE_BYTES) {
                    too_large.remove(&table);
                    return Lookup::Load(Class::Small, None);
                }
                too_large.insert(table, (files.to_vec(), false));
            }
        }
        drop(too_large);
        let wanted = self.wanted.lock().is_ok_and(|w| w.contains(&table));
        let budget = self.budget(Class::ForLookups);
        if !wanted || budget == 0 || !small_enough(files, budget) {
            return Lookup::TooLarge;
        }
        match self.start_load(table, Instant::now()) {
            Some(ticket) => Lookup::Load(Class::ForLookups, Some(ticket)),
            None => Lookup::TooLarge,
        }
    }

    /// A ticket to load table `table` for lookups at `now`, unless a load of it is running
    /// or the last one ended too recently ([`RELOAD_SPACING`]).
    fn start_load(&self, table: u64, now: Instant) -> Option<LoadTicket> {
        let mut loads = self.loads.lock().ok()?;
        match loads.get(&table) {
            Some(LoadState::Running) => return None,
            Some(LoadState::Done { next }) if now < *next => return None,
            _ => {}
        }
        loads.insert(table, LoadState::Running);
        Some(LoadTicket {
            loads: self.loads.clone(),
            table,
            started: now,
        })
    }

    /// Sets the decoded bytes that tables held for lookups may take (0: none is held).
    pub fn set_lookup_budget(&self, bytes: u64) {
        self.lookup_budget.store(bytes, Ordering::Relaxed);
    }

    /// The most decoded bytes entries of `class` may take together.
    pub fn budget(&self, class: Class) -> u64 {
        match class {
            Class::Small => BUDGET_BYTES,
            Class::ForLookups => self.lookup_budget.load(Ordering::Relaxed),
        }
    }

    /// Asks for table `table` to be held even if it is larger than a small table: a point
    /// lookup missed it. The next scan of it loads it (see [`Self::lookup`]).
    pub fn want_for_lookups(&self, table: u64) {
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.insert(table);
        }
    }

    /// Records that `files` of table `table` decode to more than the budget (a small file
    /// can hold a great deal: packed lists repeated row after row compress to a dictionary
    /// entry each), so that their scans read the files until the table changes.
    pub fn too_large(&self, table: u64, files: &[PathBuf], class: Class) {
        if let Ok(mut too_large) = self.too_large.lock() {
            too_large.insert(table, (files.to_vec(), class == Class::ForLookups));
        }
    }

    /// Marks `entry` as read now, for the least-recently-read eviction.
    fn touch(&self, entry: &Entry) {
        entry.last_read.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// The batches read from exactly `files`, if they are held.
    fn get(&self, files: &[PathBuf]) -> Option<Vec<RecordBatch>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(files)?;
        self.touch(entry);
        Some(entry.batches.as_ref().clone())
    }

    /// The batches held for exactly `files` and the index of their column `column` (built
    /// on the first call), or None when they are not held or the column cannot be indexed.
    pub fn indexed(
        &self,
        files: &[PathBuf],
        column: usize,
    ) -> Option<(Arc<Vec<RecordBatch>>, Arc<KeyIndex>)> {
        let batches = {
            let entries = self.entries.read().ok()?;
            let entry = entries.get(files)?;
            self.touch(entry);
            if let Some(index) = entry.indexes.get(&column) {
                return Some((entry.batches.clone(), index.clone()));
            }
            entry.batches.clone()
        };
        // Built outside the lock: other tables' lookups go on meanwhile.
        let index = Arc::new(KeyIndex::build(&batches, column)?);
        if let Ok(mut entries) = self.entries.write()
            && let Some(entry) = entries.get_mut(files)
        {
            if let Some(existing) = entry.indexes.get(&column) {
                return Some((batches, existing.clone()));
            }
            entry.bytes += index.bytes();
            entry.indexes.insert(column, index.clone());
        }
        Some((batches, index))
    }

    /// Keeps `batches`, read from `files` of table `table`, replacing that table's older
    /// entries; nothing is kept if they alone exceed their class's budget, and the least
    /// recently read of the class go to make room.
    pub fn put(&self, table: u64, files: Vec<PathBuf>, batches: Vec<RecordBatch>, class: Class) {
        let bytes: u64 = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        let budget = self.budget(class);
        if bytes > budget {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.retain(|_, e| e.table != table);
        let mut used: u64 = entries
            .values()
            .filter(|e| e.class == class)
            .map(|e| e.bytes)
            .sum();
        while used + bytes > budget {
            let Some(oldest) = entries
                .iter()
                .filter(|(_, e)| e.class == class)
                .min_by_key(|(_, e)| e.last_read.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = entries.remove(&oldest) {
                used -= e.bytes;
            }
        }
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        entries.insert(
            files,
            Entry {
                table,
                class,
                batches: Arc::new(batches),
                bytes,
                last_read: AtomicU64::new(now),
                indexes: HashMap::new(),
            },
        );
    }

    /// Forgets table `table`, whose files are gone (dropped).
    pub fn forget(&self, table: u64) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.table != table);
        }
        if let Ok(mut too_large) = self.too_large.lock() {
            too_large.remove(&table);
        }
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.remove(&table);
        }
    }

    /// The decoded bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries
            .read()
            .map(|e| e.values().map(|e| e.bytes).sum())
            .unwrap_or(0)
    }
}

/// Whether `files` take at most `limit` bytes on disk (a file that cannot be read does not).
fn small_enough(files: &[PathBuf], limit: u64) -> bool {
    let mut total = 0u64;
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) => total += m.len(),
            Err(_) => return false,
        }
        if total > limit {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .expect("batch")
    }

    #[test]
    fn a_new_file_list_replaces_the_tables_old_entry() {
        let hot = HotTables::default();
        let v1 = vec![PathBuf::from("/t/1/a.parquet")];
        let v2 = vec![
            PathBuf::from("/t/1/a.parquet"),
            PathBuf::from("/t/1/b.parquet"),
        ];
        hot.put(1, v1.clone(), vec![batch(10)], Class::Small);
        assert_eq!(hot.get(&v1).map(|b| b[0].num_rows()), Some(10));
        assert!(hot.get(&v2).is_none(), "another snapshot is another key");
        hot.put(1, v2.clone(), vec![batch(20)], Class::Small);
        assert!(hot.get(&v1).is_none(), "the old snapshot is dropped");
        assert_eq!(hot.get(&v2).map(|b| b[0].num_rows()), Some(20));
        hot.forget(1);
        assert!(hot.get(&v2).is_none());
    }

    #[test]
    fn a_large_file_list_is_sized_once_until_it_changes() {
        let dir = tempfile::tempdir().expect("dir");
        let big = dir.path().join("big.parquet");
        std::fs::write(&big, vec![0u8; (MAX_TABLE_FILE_BYTES + 1) as usize]).expect("write");
        let small = dir.path().join("small.parquet");
        std::fs::write(&small, b"x").expect("write");
        let hot = HotTables::default();
        assert!(matches!(
            hot.lookup(1, std::slice::from_ref(&big)),
            Lookup::TooLarge
        ));
        // Remembered: even with the file gone, the same list is not sized again.
        std::fs::remove_file(&big).expect("remove");
        assert!(matches!(
            hot.lookup(1, std::slice::from_ref(&big)),
            Lookup::TooLarge
        ));
        // Another list of the table is sized afresh.
        assert!(matches!(
            hot.lookup(1, std::slice::from_ref(&small)),
            Lookup::Load(Class::Small, None)
        ));
        hot.put(1, vec![small.clone()], vec![batch(3)], Class::Small);
        match hot.lookup(1, std::slice::from_ref(&small)) {
            Lookup::Held(b) => assert_eq!(b[0].num_rows(), 3),
            _ => panic!("held after put"),
        }
    }

    #[test]
    fn the_budget_evicts_the_least_recently_read() {
        let hot = HotTables::default();
        // About 24 MiB each: two fit in the 64 MiB budget, a third evicts one.
        let rows = 3 << 20;
        let key = |t: u64| vec![PathBuf::from(format!("/t/{t}/a.parquet"))];
        hot.put(1, key(1), vec![batch(rows)], Class::Small);
        hot.put(2, key(2), vec![batch(rows)], Class::Small);
        assert!(hot.get(&key(1)).is_some()); // table 1 read last
        hot.put(3, key(3), vec![batch(rows)], Class::Small);
        assert!(hot.get(&key(1)).is_some());
        assert!(hot.get(&key(2)).is_none(), "the least recently read goes");
        assert!(hot.get(&key(3)).is_some());
        assert!(hot.bytes() <= BUDGET_BYTES);
        // Something larger than the whole budget is never held.
        hot.put(4, key(4), vec![batch(16 << 20)], Class::Small);
        assert!(hot.get(&key(4)).is_none());
    }

    #[test]
    fn a_large_table_is_held_once_lookups_want_it() {
        let dir = tempfile::tempdir().expect("dir");
        let big = vec![dir.path().join("big.parquet")];
        std::fs::write(&big[0], vec![0u8; (MAX_TABLE_FILE_BYTES + 1) as usize]).expect("write");
        let hot = HotTables::default();
        assert!(matches!(hot.lookup(1, &big), Lookup::TooLarge));
        hot.want_for_lookups(1);
        // One scan loads it; the others read the files meanwhile.
        let Lookup::Load(Class::ForLookups, Some(ticket)) = hot.lookup(1, &big) else {
            panic!("the first scan after a lookup loads the table");
        };
        assert!(matches!(hot.lookup(1, &big), Lookup::TooLarge));
        drop(ticket);
        // A load that found the table too large even for lookups is not tried again.
        hot.too_large(1, &big, Class::ForLookups);
        assert!(matches!(hot.lookup(1, &big), Lookup::TooLarge));

        // Held under its own budget: small tables do not evict it, nor it them.
        hot.want_for_lookups(2);
        let other = vec![dir.path().join("other.parquet")];
        std::fs::write(&other[0], vec![0u8; (MAX_TABLE_FILE_BYTES + 1) as usize]).expect("write");
        let Lookup::Load(class, ticket) = hot.lookup(2, &other) else {
            panic!("wanted");
        };
        hot.put(2, other.clone(), vec![batch(6 << 20)], class);
        drop(ticket);
        let key = |t: u64| vec![PathBuf::from(format!("/t/{t}/a.parquet"))];
        hot.put(3, key(3), vec![batch(3 << 20)], Class::Small);
        hot.put(4, key(4), vec![batch(3 << 20)], Class::Small);
        hot.put(5, key(5), vec![batch(3 << 20)], Class::Small);
        assert!(matches!(hot.lookup(2, &other), Lookup::Held(b) if b[0].num_rows() == 6 << 20));
        assert!(hot.get(&key(5)).is_some());
        // A load that ends holds the next back for nine times as long as it took.
        let t0 = Instant::now();
        let mut ticket = hot.start_load(9, t0).expect("first load");
        assert!(hot.start_load(9, t0).is_none(), "one load at a time");
        ticket.started = Instant::now() - Duration::from_secs(1); // a load of a second
        drop(ticket);
        let now = Instant::now();
        assert!(hot.start_load(9, now + Duration::from_secs(8)).is_none());
        assert!(hot.start_load(9, now + Duration::from_secs(10)).is_some());
        // Dropping the table forgets that lookups wanted it.
        hot.forget(2);
        assert!(matches!(hot.lookup(2, &other), Lookup::TooLarge));
        // With no memory for lookups, nothing large is held.
        hot.set_lookup_budget(0);
        hot.want_for_lookups(2);
        assert!(matches!(hot.lookup(2, &other), Lookup::TooLarge));
    }
}
