//! Scans that keep a declared order over several files.
//!
//! Every writer keeps each of a sorted table's files in its order (see
//! [`crate::sort_order`]), but DataFusion's listing table reads the files of a partition one
//! after another — no longer sorted — and cuts files into byte ranges only while it has fewer
//! files than partitions. A behaviour log loaded once and appended to since (one large
//! file, then a smaller one per append) would be read either unordered or as one partition
//! per file, the large file's on one core. Here every partition reads one file or one byte
//! range of one, so each partition is sorted: each file starts as a partition of its own and
//! `target_partitions − 1` more are handed out, one at a time, to the file whose ranges are
//! largest — DataFusion's own order-preserving split (`FileGroupPartitioner`), asked for as
//! many partitions as files plus cores less one, since by itself it splits only while there
//! are fewer files than partitions. Whatever needs the order merges the partitions (a sort-preserving
//! merge, or a repartition that merges, see [`crate::presorted`]).
//!
//! Each file is one more stream to merge, so the order is declared over at most
//! [`MAX_SORTED_FILES`] files; a sorted table with more has its smallest files merged in
//! the background until it is back at that count (see [`crate::compaction`]).

use std::sync::Arc;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileGroupPartitioner, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

/// The most files a scan reads as sorted runs.
pub const MAX_SORTED_FILES: usize = 8;

/// `plan`, a listing table's scan that declares an order, with one file or byte range per
/// partition (see the module notes); any other plan unchanged.
pub fn one_run_per_partition(
    plan: Arc<dyn ExecutionPlan>,
    target_partitions: usize,
) -> Arc<dyn ExecutionPlan> {
    let Some(config) = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
    else {
        return plan;
    };
    let files: Vec<PartitionedFile> = config
        .file_groups
        .iter()
        .flat_map(|g| g.iter().cloned())
        .collect();
    if config.output_ordering.is_empty() || files.len() < 2 {
        return plan;
    }
    let mut config = config.clone();
    config.file_groups = sorted_runs(files, target_partitions);
    DataSourceExec::from_data_source(config)
}

/// One group per file, the largest cut into byte ranges until `partitions − 1` more groups
/// are made (see the module notes).
fn sorted_runs(files: Vec<PartitionedFile>, partitions: usize) -> Vec<FileGroup> {
    let groups: Vec<FileGroup> = files.into_iter().map(|f| FileGroup::new(vec![f])).collect();
    FileGroupPartitioner::new()
        .with_target_partitions(groups.len() + partitions.saturating_sub(1))
        .with_preserve_order_within_groups(true)
        .repartition_file_groups(&groups)
        .unwrap_or(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each file's ranges, in group order: (start, end) from its groups' single files.
    fn ranges(groups: &[FileGroup], path: &str) -> Vec<(u64, u64)> {
        groups
            .iter()
            .map(|g| {
                assert_eq!(g.len(), 1, "one file or range per partition");
                &g.files()[0]
            })
            .filter(|f| f.object_meta.location.as_ref() == path)
            .map(PartitionedFile::range)
            .collect()
    }

    #[test]
    fn every_partition_reads_one_run_and_large_files_are_cut() {
        let files = |sizes: &[u64]| -> Vec<PartitionedFile> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| PartitionedFile::new(format!("f{i}"), size))
                .collect()
        };
        // A large file and an appended small one, two cores: the large one in two halves.
        let groups = sorted_runs(files(&[300 << 20, 10 << 20]), 2);
        assert_eq!(groups.len(), 3);
        assert_eq!(
            ranges(&groups, "f0"),
            [(0, 150 << 20), (150 << 20, 300 << 20)]
        );
        assert_eq!(ranges(&groups, "f1"), [(0, 10 << 20)]);
        // Eight cores: seven more partitions go where the ranges are largest.
        let groups = sorted_runs(files(&[600, 200, 1]), 8);
        assert_eq!(groups.len(), 10);
        let pieces: Vec<usize> = ["f0", "f1", "f2"]
            .iter()
            .map(|p| ranges(&groups, p).len())
            .collect();
        assert!(pieces[0] > pieces[1] && pieces[1] > pieces[2], "{pieces:?}");
        assert_eq!(pieces[2], 1, "the 1-byte file stays whole");
        for (path, size) in [("f0", 600), ("f1", 200), ("f2", 1)] {
            let got = ranges(&groups, path);
            // Consecutive, in order, covering the file once.
            assert_eq!(got[0].0, 0, "{path}");
            assert_eq!(got[got.len() - 1].1, size, "{path}");
            assert!(got.windows(2).all(|w| w[0].1 == w[1].0), "{path}: {got:?}");
        }
        // One core: each file whole, one partition each.
        let groups = sorted_runs(files(&[5, 5, 5]), 1);
        assert_eq!(groups.len(), 3);
        assert_eq!(ranges(&groups, "f1"), [(0, 5)]);
    }
}
