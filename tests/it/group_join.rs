//! Aggregates over a join computed inside it (`engine/src/group_join.rs`), through the real
//! server: the point-in-time count of events before each exposure is planned as a
//! `GroupJoinExec` once the join is partitioned, and answers as the hash join and aggregate
//! do (the same query with a DISTINCT aggregate added, which keeps DataFusion's plan).

use tokio_postgres::Client;

use crate::common::{TestServer, answer};

async fn plan(client: &Client, sql: &str) -> String {
    answer(client, &format!("EXPLAIN {sql}")).await.join("\n")
}

const POINT_IN_TIME: &str = "SELECT x.exposure_id, count(e.user_id) AS n, \
    count(e.user_id) FILTER (WHERE e.event_type = 'cart') AS carts, max(e.ts) AS last{extra} \
    FROM exposures x LEFT JOIN events e ON e.user_id = x.user_id AND e.ts < x.shown_ts \
    GROUP BY x.exposure_id ORDER BY x.exposure_id";

#[tokio::test]
async fn point_in_time_counts_are_aggregated_in_the_join() {
    let server = TestServer::start();
    let c = server.connect().await;
    // The tiny world's exposures are under DataFusion's single-partition thresholds.
    c.batch_execute(
        "SET datafusion.optimizer.hash_join_single_partition_threshold = 0; \
         SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0",
    )
    .await
    .expect("set");
    let fast = POINT_IN_TIME.replace("{extra}", "");
    let reference = POINT_IN_TIME.replace("{extra}", ", count(DISTINCT e.item_id) AS items");
    let shown = plan(&c, &fast).await;
    assert!(shown.contains("GroupJoinExec"), "{shown}");
    let shown = plan(&c, &reference).await;
    assert!(!shown.contains("GroupJoinExec"), "{shown}");

    let got = answer(&c, &fast).await;
    let want: Vec<String> = answer(&c, &reference)
        .await
        .iter()
        .map(|row| row.rsplit_once('|').expect("columns").0.to_string())
        .collect();
    assert_eq!(got, want);
    // Exposures with events before them and without (counted 0, no last time) both occur.
    let counts: Vec<i64> = got
        .iter()
        .map(|row| row.split('|').nth(1).expect("n").parse().expect("count"))
        .collect();
    assert!(
        counts.iter().any(|&n| n > 0) && counts.contains(&0),
        "{got:?}"
    );
    assert!(got.iter().any(|row| row.ends_with("|NULL")), "{got:?}");
}
