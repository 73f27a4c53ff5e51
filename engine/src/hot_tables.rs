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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::array::RecordBatch;

use crate::key_index::KeyIndex;

/// Tables whose files take more than this on disk are read from their files each time.
pub const MAX_TABLE_FILE_BYTES: u64 = 8 << 20;

/// The most decoded bytes the cache holds, over all tables.
pub const BUDGET_BYTES: u64 = 64 << 20;

struct Entry {
    table: u64,
    batches: Arc<Vec<RecordBatch>>,
    bytes: u64,
    last_read: AtomicU64,
    /// Key indexes over these batches, by column, built on the first lookup by each.
    indexes: HashMap<usize, Arc<KeyIndex>>,
}

/// The decoded batches of small tables, by the files they were read from.
#[derive(Default)]
pub struct HotTables {
    /// Read by every scan and lookup at once; written when a table is loaded or dropped.
    entries: RwLock<HashMap<Vec<PathBuf>, Entry>>,
    /// Per table, the last file list found too large: its scans skip the size check (a
    /// `stat` per file) until the table's files change.
    too_large: Mutex<HashMap<u64, Vec<PathBuf>>>,
    clock: AtomicU64,
}

/// What a scan of a table's files should do.
pub enum Lookup {
    /// Read these batches from memory.
    Held(Vec<RecordBatch>),
    /// Read the files and [`HotTables::put`] the batches.
    Load,
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
        if too_large.get(&table).is_some_and(|f| f.as_slice() == files) {
            return Lookup::TooLarge;
        }
        if small_enough(files) {
            too_large.remove(&table);
            Lookup::Load
        } else {
            too_large.insert(table, files.to_vec());
            Lookup::TooLarge
        }
    }

    /// Records that `files` of table `table` decode to more than the budget (a small file
    /// can hold a great deal: packed lists repeated row after row compress to a dictionary
    /// entry each), so that their scans read the files until the table changes.
    pub fn too_large(&self, table: u64, files: &[PathBuf]) {
        if let Ok(mut too_large) = self.too_large.lock() {
            too_large.insert(table, files.to_vec());
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
    /// entries; nothing is kept if they alone exceed the budget.
    pub fn put(&self, table: u64, files: Vec<PathBuf>, batches: Vec<RecordBatch>) {
        let bytes: u64 = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        if bytes > BUDGET_BYTES {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.retain(|_, e| e.table != table);
        let mut used: u64 = entries.values().map(|e| e.bytes).sum();
        while used + bytes > BUDGET_BYTES {
            let Some(oldest) = entries
                .iter()
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
    }

    /// The decoded bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries
            .read()
            .map(|e| e.values().map(|e| e.bytes).sum())
            .unwrap_or(0)
    }
}

/// Whether `files` are small enough to hold (a file that cannot be read is not).
fn small_enough(files: &[PathBuf]) -> bool {
    let mut total = 0u64;
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) => total += m.len(),
            Err(_) => return false,
        }
        if total > MAX_TABLE_FILE_BYTES {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
        hot.put(1, v1.clone(), vec![batch(10)]);
        assert_eq!(hot.get(&v1).map(|b| b[0].num_rows()), Some(10));
        assert!(hot.get(&v2).is_none(), "another snapshot is another key");
        hot.put(1, v2.clone(), vec![batch(20)]);
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
            Lookup::Load
        ));
        hot.put(1, vec![small.clone()], vec![batch(3)]);
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
        hot.put(1, key(1), vec![batch(rows)]);
        hot.put(2, key(2), vec![batch(rows)]);
        assert!(hot.get(&key(1)).is_some()); // table 1 read last
        hot.put(3, key(3), vec![batch(rows)]);
        assert!(hot.get(&key(1)).is_some());
        assert!(hot.get(&key(2)).is_none(), "the least recently read goes");
        assert!(hot.get(&key(3)).is_some());
        assert!(hot.bytes() <= BUDGET_BYTES);
        // Something larger than the whole budget is never held.
        hot.put(4, key(4), vec![batch(16 << 20)]);
        assert!(hot.get(&key(4)).is_none());
    }
}
