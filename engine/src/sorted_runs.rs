//! Scans that keep a declared order over several files.
//!
//! Every writer keeps each of a sorted table's files in its order (see
//! [`crate::sort_order`]), but DataFusion's listing table reads the files of a partition one
//! after another — no longer sorted — and cuts files into byte ranges only while it has fewer
//! files than partitions. A behaviour log loaded once and appended to since (one large
//! file, then a smaller one per append) would be read either unordered or as one partition
//! per file, the large file's on one core. Here every partition reads one file or one byte
//! range of one, so each partition is sorted, and files are cut in proportion to their
//! size: about `target_partitions` ranges share the bytes, and each small appended file
//! adds one partition. Whatever needs the order merges the partitions (a sort-preserving
//! merge, or a repartition that merges, see [`crate::presorted`]).
//!
//! Each file is one more stream to merge, so the order is declared over at most
//! [`MAX_SORTED_FILES`] files; a sorted table with more has its smallest files merged in
//! the background until it is back at that count (see [`crate::compaction`]).

use std::sync::Arc;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
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
    let files: Vec<&PartitionedFile> = config.file_groups.iter().flat_map(|g| g.iter()).collect();
    if config.output_ordering.is_empty() || files.len() < 2 {
        return plan;
    }
    let sizes: Vec<u64> = files.iter().map(|f| f.effective_size()).collect();
    let groups = files
        .iter()
        .zip(ranges_per_file(&sizes, target_partitions))
        .flat_map(|(file, ranges)| cut(file, ranges))
        .map(|range| FileGroup::new(vec![range]))
        .collect();
    let mut config = config.clone();
    config.file_groups = groups;
    DataSourceExec::from_data_source(config)
}

/// How many ranges each file of `sizes` (bytes) is cut into: its share of `partitions`,
/// rounded, and at least one.
fn ranges_per_file(sizes: &[u64], partitions: usize) -> Vec<usize> {
    let total = sizes.iter().sum::<u64>().max(1) as u128;
    sizes
        .iter()
        .map(|&size| {
            let share = (size as u128 * partitions as u128 * 2 + total) / (total * 2);
            (share as usize).max(1)
        })
        .collect()
}

/// `file` as `n` consecutive byte ranges of about equal size (Parquet assigns each row
/// group to the range holding its middle, so the ranges read the row groups in order).
fn cut(file: &PartitionedFile, n: usize) -> Vec<PartitionedFile> {
    let (start, end) = file.range();
    let n = (n as u64).min(end.saturating_sub(start));
    if n <= 1 {
        return vec![file.clone()];
    }
    let step = (end - start).div_ceil(n);
    (0..n)
        .map(|i| start + i * step)
        .take_while(|&from| from < end)
        .map(|from| {
            file.clone()
                .with_range(from as i64, (from + step).min(end) as i64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_share_the_partitions_by_size() {
        // One large file and one appended small one: the large one is cut in two.
        assert_eq!(ranges_per_file(&[300, 10], 2), [2, 1]);
        // Files of a size: one each, even past the partitions.
        assert_eq!(ranges_per_file(&[100, 100], 2), [1, 1]);
        assert_eq!(ranges_per_file(&[5, 5, 5, 5, 5], 2), [1, 1, 1, 1, 1]);
        // More partitions: in proportion.
        assert_eq!(ranges_per_file(&[600, 200, 1], 8), [6, 2, 1]);
        // Empty files still count as one.
        assert_eq!(ranges_per_file(&[0, 0], 4), [1, 1]);
    }

    #[test]
    fn ranges_cover_the_file_once_in_order() {
        let file = PartitionedFile::new("f.parquet", 1001);
        for n in [1, 2, 3, 7, 1001, 2000] {
            let ranges = cut(&file, n);
            assert!(ranges.len() <= n.max(1), "{n}: {}", ranges.len());
            let mut at = 0;
            for r in &ranges {
                let (from, to) = r.range();
                assert_eq!(from, at, "{n}");
                assert!(to > from, "{n}");
                at = to;
            }
            assert_eq!(at, 1001, "{n}");
        }
    }
}
