//! Tables declared sorted (`CREATE TABLE … WITH (sort_by = 'user_id, ts')`, see
//! `engine/src/sort_order.rs`): every writer keeps each file in that order — checked by
//! reading the files themselves — scans declare it, windows per user sort only ties, and
//! answers equal those computed with a full sort over an unsorted copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::{SinkExt, pin_mut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Client;

use crate::common::{TestServer, answer, scalar_i64, sqlstate};

/// The catalog's entry for table `public.<table>`.
fn catalog_table(data: &Path, table: &str) -> serde_json::Value {
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("catalog.json")).expect("catalog.json"))
            .expect("catalog parses");
    catalog["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["schema"] == "public" && t["name"] == table)
        .unwrap_or_else(|| panic!("{table} in the catalog"))
        .clone()
}

/// The data files the catalog names for `public.<table>`.
fn table_files(data: &Path, table: &str) -> Vec<PathBuf> {
    let t = catalog_table(data, table);
    let id = t["id"].as_u64().expect("id");
    t["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            data.join("tables")
                .join(format!("t{id}"))
                .join(f.as_str().expect("file name"))
        })
        .collect()
}

/// The (user_id, ts) keys of one file, in file order; NULL as None.
fn keys_of(file: &Path) -> Vec<(Option<i64>, Option<i64>)> {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).expect("open file"))
            .expect("parquet")
            .build()
            .expect("reader");
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let users = batch
            .column_by_name("user_id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .expect("user_id BIGINT")
            .clone();
        // Any timestamp unit, as its integer count.
        let ts = cast(batch.column_by_name("ts").expect("ts"), &DataType::Int64)
            .expect("ts as an integer");
        let ts = ts
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("Int64")
            .clone();
        for i in 0..batch.num_rows() {
            keys.push((
                users.is_valid(i).then(|| users.value(i)),
                ts.is_valid(i).then(|| ts.value(i)),
            ));
        }
    }
    keys
}

/// Ascending with NULLs last, as the table declares.
fn nulls_last(k: Option<i64>) -> (bool, i64) {
    (k.is_none(), k.unwrap_or(0))
}

/// Asserts every file of `table` is sorted by (user_id, ts); returns the rows in them.
pub(crate) fn assert_files_sorted(data: &Path, table: &str) -> usize {
    let mut rows = 0;
    for file in table_files(data, table) {
        let keys = keys_of(&file);
        for pair in keys.windows(2) {
            let a = (nulls_last(pair[0].0), nulls_last(pair[0].1));
            let b = (nulls_last(pair[1].0), nulls_last(pair[1].1));
            assert!(a <= b, "{} is out of order at {pair:?}", file.display());
        }
        rows += keys.len();
    }
    rows
}

async fn plan(client: &Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A window per user ordered past the stored keys, and its answer's fingerprint.
const WINDOW: &str = "SELECT user_id, ts, kind, v, \
    lag(v) OVER (PARTITION BY user_id ORDER BY ts, kind, v) AS prev, \
    row_number() OVER (PARTITION BY user_id ORDER BY ts, kind, v) AS r \
    FROM {t} ORDER BY user_id NULLS LAST, r";

/// `n` rows in random order: 40 users (and a few NULL users and times), times over a day.
fn scrambled_rows(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let user = if rng.random_bool(0.03) {
                "NULL".to_string()
            } else {
                rng.random_range(1..=40).to_string()
            };
            let ts = if rng.random_bool(0.03) {
                "NULL".to_string()
            } else {
                format!(
                    "TIMESTAMP '2026-11-11 00:00:00' + INTERVAL '{} seconds'",
                    rng.random_range(0..86_400)
                )
            };
            let kind = ["view", "cart", "purchase"][rng.random_range(0..3)];
            format!("({user}, {ts}, '{kind}', {})", rng.random_range(0..1000))
        })
        .collect()
}

#[tokio::test]
async fn every_writer_keeps_a_declared_order_and_windows_use_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    let mut rng = ChaCha8Rng::seed_from_u64(12);

    c.batch_execute(
        "CREATE TABLE log (user_id BIGINT, ts TIMESTAMP, kind TEXT, v BIGINT) \
         WITH (sort_by = 'user_id, ts')",
    )
    .await
    .expect("create sorted table");
    // INSERT … VALUES, in three statements of scrambled rows.
    for _ in 0..3 {
        let rows = scrambled_rows(&mut rng, 300).join(", ");
        c.batch_execute(&format!("INSERT INTO log VALUES {rows}"))
            .await
            .expect("insert");
    }
    // INSERT … SELECT over two partitions of generated rows.
    c.batch_execute(
        "INSERT INTO log SELECT (x * 7919) % 37 + 1, \
         CAST('2026-11-12' AS TIMESTAMP) + CAST(((x * 104729) % 86400) || ' seconds' AS INTERVAL), \
         'view', x FROM generate_series(1, 2000) AS g(x)",
    )
    .await
    .expect("insert select");
    // COPY FROM STDIN.
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!(
            "{}\t2026-11-13 {:02}:{:02}:00\tcart\t{i}\n",
            (i * 13) % 41 + 1,
            (i * 7) % 24,
            (i * 11) % 60
        ));
    }
    let sink = c.copy_in("COPY log FROM STDIN").await.expect("copy starts");
    pin_mut!(sink);
    sink.send(Bytes::from(text)).await.expect("copy data");
    assert_eq!(sink.finish().await.expect("copy ends"), 500);
    assert_eq!(assert_files_sorted(&data, "log"), 900 + 2000 + 500);

    // UPDATE and DELETE rewrite the table: still sorted, rows as expected.
    c.batch_execute("UPDATE log SET user_id = 41 - user_id WHERE kind = 'cart'")
        .await
        .expect("update");
    c.batch_execute("DELETE FROM log WHERE v % 10 = 3")
        .await
        .expect("delete");
    let left = scalar_i64(&c, "SELECT count(*) FROM log").await;
    assert_eq!(assert_files_sorted(&data, "log") as i64, left);

    // MERGE rewrites it too (its one row inserted ahead of user 5's others in time).
    let merged = c
        .execute(
            "MERGE INTO log AS t USING (SELECT 5 AS u, 9999 AS v) AS s ON t.user_id = s.u \
             AND t.v = s.v WHEN NOT MATCHED THEN \
             INSERT VALUES (s.u, TIMESTAMP '2026-11-10', 'fav', s.v)",
            &[],
        )
        .await
        .expect("merge");
    assert_eq!(merged, 1);
    let left = left + 1;
    assert_eq!(assert_files_sorted(&data, "log") as i64, left);
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM log").await, left);

    // The same window over an unsorted copy (a full sort) gives the same answer.
    c.batch_execute("CREATE TABLE log_plain AS SELECT * FROM log ORDER BY v DESC")
        .await
        .expect("plain copy");
    let sorted = answer(&c, &WINDOW.replace("{t}", "log")).await;
    let plain = answer(&c, &WINDOW.replace("{t}", "log_plain")).await;
    assert_eq!(sorted.len() as i64, left);
    assert_eq!(sorted, plain);

    // CREATE TABLE … AS with the parameter sorts the query's rows into one file, whose
    // order the scan declares and the window uses: only ties on (user_id, ts) are sorted.
    c.batch_execute(
        "CREATE TABLE log_sorted WITH (sort_by = 'user_id, ts') AS SELECT * FROM log_plain",
    )
    .await
    .expect("ctas sorted");
    assert_files_sorted(&data, "log_sorted");
    let shown = plan(&c, &WINDOW.replace("{t}", "log_sorted")).await;
    assert!(
        shown.contains("output_ordering=")
            && shown.contains("user_id@0 ASC NULLS LAST, ts@1 ASC NULLS LAST"),
        "{shown}"
    );
    assert!(shown.contains("PartialSortExec"), "{shown}");
    assert_eq!(
        answer(&c, &WINDOW.replace("{t}", "log_sorted")).await,
        plain
    );

    // Prepared with a parameter (the extended protocol), the parameter is bound.
    let created = c
        .execute(
            "CREATE TABLE log_late WITH (sort_by = 'user_id, ts') AS \
             SELECT * FROM log_plain WHERE v >= $1",
            &[&900i64],
        )
        .await
        .expect("prepared ctas");
    assert_eq!(
        created as i64,
        scalar_i64(&c, "SELECT count(*) FROM log_plain WHERE v >= 900").await
    );
    assert_eq!(
        assert_files_sorted(&data, "log_late") as i64,
        created as i64
    );

    // Mistakes are refused with PostgreSQL's codes and nothing is created.
    for (sql, code) in [
        ("CREATE TABLE bad (a INT) WITH (sort_by = 'b')", "42703"),
        ("CREATE TABLE bad (a INT) WITH (sortby = 'a')", "22023"),
        (
            "CREATE TABLE bad (a INT) WITH (sort_by = 'a DESC')",
            "22023",
        ),
        ("CREATE TABLE bad (a INT) WITH (sort_by = 'a, a')", "42701"),
        (
            "CREATE TEMP TABLE bad (a INT) WITH (sort_by = 'a')",
            "0A000",
        ),
        (
            "CREATE TABLE bad WITH (sort_by = 'b') AS SELECT 1 AS a",
            "42703",
        ),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e:?}");
    }
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'bad'"
        )
        .await,
        0
    );

    // The declaration is durable: after a restart scans still declare it.
    drop(c);
    server.stop();
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    let shown = plan(&c, "SELECT * FROM log_sorted").await;
    assert!(
        shown.contains("output_ordering=") && shown.contains("user_id@0 ASC NULLS LAST"),
        "{shown}"
    );
}

/// The declared order of table `name` in the catalog file (empty: none).
fn declared_order(data: &Path, name: &str) -> Vec<String> {
    catalog_table(data, name)["sort_by"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect()
}

/// `ALTER TABLE … SET (sort_by = …)` gives a loaded table its order: the rows are rewritten
/// in it (same answers, files sorted, scans declare it, later writes keep it), in one commit
/// that a concurrent write makes fail, undone by ROLLBACK; `RESET (sort_by)` drops it.
#[tokio::test]
async fn an_existing_table_takes_an_order_with_alter_table() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    let other = server.connect().await;
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    c.batch_execute("CREATE TABLE log (user_id BIGINT, ts TIMESTAMP, kind TEXT, v BIGINT)")
        .await
        .expect("create");
    for _ in 0..3 {
        let rows = scrambled_rows(&mut rng, 400).join(", ");
        c.batch_execute(&format!("INSERT INTO log VALUES {rows}"))
            .await
            .expect("insert");
    }
    c.batch_execute(
        "COMMENT ON TABLE log IS 'clicks'; \
         CREATE VIEW carts AS SELECT user_id, count(*) AS n FROM log \
         WHERE kind = 'cart' GROUP BY user_id",
    )
    .await
    .expect("comment and view");
    let window = WINDOW.replace("{t}", "log");
    let before = answer(&c, &window).await;
    let carts = answer(&c, "SELECT * FROM carts ORDER BY user_id").await;

    let tag = c
        .simple_query("ALTER TABLE log SET (sort_by = 'user_id, ts')")
        .await
        .expect("alter");
    assert!(
        matches!(
            tag.last(),
            Some(tokio_postgres::SimpleQueryMessage::CommandComplete(0))
        ),
        "{tag:?}"
    );
    assert_eq!(declared_order(&data, "log"), ["user_id", "ts"]);
    assert_eq!(table_files(&data, "log").len(), 1);
    assert_eq!(assert_files_sorted(&data, "log"), 1200);
    assert_eq!(answer(&c, &window).await, before);
    assert_eq!(
        answer(&c, "SELECT * FROM carts ORDER BY user_id").await,
        carts
    );
    assert_eq!(
        catalog_table(&data, "log")["comment"],
        "clicks",
        "the comment is kept"
    );
    let shown = plan(&c, &window).await;
    assert!(
        shown.contains("user_id@0 ASC NULLS LAST, ts@1 ASC NULLS LAST")
            && shown.contains("PartialSortExec"),
        "{shown}"
    );
    // Later writes keep it.
    let rows = scrambled_rows(&mut rng, 100).join(", ");
    c.batch_execute(&format!("INSERT INTO log VALUES {rows}"))
        .await
        .expect("insert after");
    assert_eq!(assert_files_sorted(&data, "log"), 1300);

    // ROLLBACK undoes both the declaration and the rewrite.
    let files = table_files(&data, "log");
    c.batch_execute("BEGIN; ALTER TABLE log RESET (sort_by); ALTER TABLE log SET (sort_by = 'v')")
        .await
        .expect("alter in a block");
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM log").await,
        1300,
        "the block reads its rewrite"
    );
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(declared_order(&data, "log"), ["user_id", "ts"]);
    assert_eq!(table_files(&data, "log"), files);

    // A write committed by another session while a block reorders the table fails the
    // block's COMMIT (40001): the other session's rows are not left under the new order.
    c.batch_execute("BEGIN; ALTER TABLE log SET (sort_by = 'v')")
        .await
        .expect("alter in a block");
    other
        .batch_execute("INSERT INTO log VALUES (1, NULL, 'view', 1)")
        .await
        .expect("concurrent insert");
    let e = c
        .batch_execute("COMMIT")
        .await
        .expect_err("commit conflicts");
    assert_eq!(sqlstate(&e), "40001", "{e:?}");
    assert_eq!(declared_order(&data, "log"), ["user_id", "ts"]);
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM log").await, 1301);

    // RESET drops the declaration and leaves the files as they are.
    let files = table_files(&data, "log");
    c.batch_execute("ALTER TABLE log RESET (sort_by)")
        .await
        .expect("reset");
    assert!(declared_order(&data, "log").is_empty());
    assert_eq!(table_files(&data, "log"), files);

    // Mistakes are refused with PostgreSQL's codes and change nothing.
    for (sql, code) in [
        ("ALTER TABLE log SET (sort_by = 'nope')", "42703"),
        ("ALTER TABLE log SET (fillfactor = 70)", "22023"),
        ("ALTER TABLE carts SET (sort_by = 'user_id')", "42809"),
        ("ALTER TABLE missing SET (sort_by = 'a')", "42P01"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e:?}");
    }
    c.batch_execute("ALTER TABLE IF EXISTS missing SET (sort_by = 'a')")
        .await
        .expect("IF EXISTS of a missing table is a no-op");
    assert!(declared_order(&data, "log").is_empty());
    assert_eq!(table_files(&data, "log"), files);
}

/// A sorted table fed row by row collects small files; the background merge keeps the order.
#[tokio::test]
async fn merging_small_files_keeps_the_order() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE drip (user_id BIGINT, ts TIMESTAMP, kind TEXT, v BIGINT) \
         WITH (sort_by = 'user_id, ts')",
    )
    .await
    .expect("create");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..20 {
        let rows = scrambled_rows(&mut rng, 5).join(", ");
        c.batch_execute(&format!("INSERT INTO drip VALUES {rows}"))
            .await
            .expect("insert");
    }
    // A sorted table keeps at most eight files: past that its smallest are merged, in
    // order (20 inserts end as 8 files).
    let started = Instant::now();
    while table_files(&data, "drip").len() > 8 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the small files were not merged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(assert_files_sorted(&data, "drip"), 100);
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM drip").await, 100);
}

/// A window per user and a fingerprint of its answer, comparable across tables.
const LAG_SUM: &str = "SELECT count(*), sum(user_id * 3 + (v - coalesce(prev, 0)) % 1013) FROM \
    (SELECT user_id, v, lag(v) OVER (PARTITION BY user_id ORDER BY ts, v) AS prev FROM {t}) w";

/// Whether `shown` (an EXPLAIN) reads `table` declaring the `(user_id, ts)` order and sorts
/// no rows by `user_id` in full.
fn ordered_without_full_sort(shown: &str) -> bool {
    shown.contains("output_ordering=")
        && shown.contains("user_id@0 ASC NULLS LAST, ts@1 ASC NULLS LAST")
        && !shown
            .lines()
            .any(|l| l.trim_start().starts_with("SortExec: expr=[user_id"))
}

/// A sorted table appended to keeps declaring its order — each file read as sorted runs,
/// a large one cut into ranges — whether it is read from its files or held in memory, and
/// the background merge brings a table past eight files back to eight.
#[tokio::test]
async fn appended_tables_keep_their_order() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;

    // Large enough (> 8 MiB) to be read from its files, then appended to twice.
    c.batch_execute(
        "CREATE TABLE big WITH (sort_by = 'user_id, ts') AS \
         SELECT x % 4999 AS user_id, (x * 7919) % 1000003 AS ts, \
                (x * 2654435761) % 1000000007 AS v \
         FROM generate_series(1, 1200000) AS g(x)",
    )
    .await
    .expect("create big");
    for (from, to) in [(1_200_001, 1_203_000), (1_203_001, 1_260_000)] {
        c.batch_execute(&format!(
            "INSERT INTO big SELECT x % 5003, (x * 7919) % 1000003, \
             (x * 2654435761) % 1000000007 FROM generate_series({from}, {to}) AS g(x)"
        ))
        .await
        .expect("append");
    }
    let files = table_files(&data, "big");
    assert_eq!(files.len(), 3);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert!(bytes > 8 << 20, "{bytes} bytes: held in memory");
    assert_eq!(assert_files_sorted(&data, "big"), 1_260_000);
    let shown = plan(&c, &LAG_SUM.replace("{t}", "big")).await;
    assert!(ordered_without_full_sort(&shown), "{shown}");
    c.batch_execute("CREATE TABLE big_plain AS SELECT * FROM big ORDER BY v")
        .await
        .expect("plain copy");
    let plain = answer(&c, &LAG_SUM.replace("{t}", "big_plain")).await;
    assert_eq!(answer(&c, &LAG_SUM.replace("{t}", "big")).await, plain);
    assert_eq!(
        answer(
            &c,
            "SELECT user_id, ts, v FROM big ORDER BY user_id, ts, v LIMIT 5 OFFSET 600000"
        )
        .await,
        answer(
            &c,
            "SELECT user_id, ts, v FROM big_plain ORDER BY user_id, ts, v LIMIT 5 OFFSET 600000"
        )
        .await
    );

    // A small table (held in memory after its first read) over three files.
    c.batch_execute(
        "CREATE TABLE small (user_id BIGINT, ts BIGINT, v BIGINT) WITH (sort_by = 'user_id, ts')",
    )
    .await
    .expect("create small");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let insert = |rng: &mut ChaCha8Rng| {
        let rows: Vec<String> = (0..200)
            .map(|_| {
                format!(
                    "({}, {}, {})",
                    rng.random_range(1..=30),
                    rng.random_range(0..10_000),
                    rng.random_range(0..1_000_000)
                )
            })
            .collect();
        format!("INSERT INTO small VALUES {}", rows.join(", "))
    };
    for _ in 0..3 {
        c.batch_execute(&insert(&mut rng)).await.expect("insert");
    }
    c.batch_execute("CREATE TABLE small_plain AS SELECT * FROM small ORDER BY v")
        .await
        .expect("plain copy");
    let plain = answer(&c, &LAG_SUM.replace("{t}", "small_plain")).await;
    for _ in 0..2 {
        // The first read loads the table into memory, the second reads it from there.
        assert_eq!(answer(&c, &LAG_SUM.replace("{t}", "small")).await, plain);
        let shown = plan(&c, &LAG_SUM.replace("{t}", "small")).await;
        assert!(ordered_without_full_sort(&shown), "{shown}");
    }

    // Past eight files the order is not declared until the smallest files are merged.
    for _ in 0..7 {
        c.batch_execute(&insert(&mut rng)).await.expect("insert");
    }
    let started = Instant::now();
    while table_files(&data, "small").len() > 8 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the smallest files were not merged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(table_files(&data, "small").len(), 8);
    assert_eq!(assert_files_sorted(&data, "small"), 2000);
    c.batch_execute(
        "DROP TABLE small_plain; CREATE TABLE small_plain AS SELECT * FROM small ORDER BY v",
    )
    .await
    .expect("plain copy");
    let shown = plan(&c, &LAG_SUM.replace("{t}", "small")).await;
    assert!(ordered_without_full_sort(&shown), "{shown}");
    assert_eq!(
        answer(&c, &LAG_SUM.replace("{t}", "small")).await,
        answer(&c, &LAG_SUM.replace("{t}", "small_plain")).await
    );
}

/// The generated world's events are stored per user in time and say so (a loaded behaviour
/// log is checked in `loading`).
#[tokio::test]
async fn event_logs_declare_user_and_time_order() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    assert!(assert_files_sorted(&data, "events") > 0);
    let shown = plan(
        &c,
        "SELECT user_id, lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_type) FROM events",
    )
    .await;
    assert!(
        shown.contains("output_ordering=") && shown.contains("user_id@0 ASC NULLS LAST, ts@"),
        "{shown}"
    );
    assert!(shown.contains("PartialSortExec"), "{shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.trim_start().starts_with("SortExec: expr=[user_id")),
        "{shown}"
    );
    // Distinct users per group hash their (group, user) pairs instead of streaming them
    // partially sorted over the stored order (slower over a bounded scan).
    let shown = plan(
        &c,
        "SELECT event_type, count(DISTINCT user_id) FROM events GROUP BY event_type",
    )
    .await;
    assert!(!shown.contains("PartiallySorted"), "{shown}");
}

/// Lists of numbers are stored packed, one byte array per row (see
/// `engine/src/packed_lists.rs`), and read back whole — values, NULL lists, empty lists,
/// NULL items — after INSERT, UPDATE and CTAS, in filters, and after a restart.
#[tokio::test]
async fn number_lists_are_stored_packed_and_read_back_whole() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let rows = "SELECT id, seq, w FROM lt ORDER BY id";
    let expected = [
        "1|{1,2,3,5}|{0.5}",
        "2|NULL|{}",
        "3|{}|NULL",
        "4|{7,NULL,9}|{1.5,NULL}",
    ];
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE lt (id BIGINT, seq INT[], w DOUBLE PRECISION[]); \
         INSERT INTO lt VALUES (1, ARRAY[1, 2, 3], ARRAY[0.5]), \
           (2, NULL, ARRAY[]::double precision[]), (3, ARRAY[]::int[], NULL), \
           (4, ARRAY[7, NULL, 9], ARRAY[1.5, NULL]); \
         UPDATE lt SET seq = array_append(seq, 5) WHERE id = 1; \
         CREATE TABLE lt2 AS SELECT id, seq, cardinality(seq) AS n FROM lt",
    )
    .await
    .expect("write lists");
    assert_eq!(answer(&c, rows).await, expected);
    assert_eq!(
        answer(
            &c,
            "SELECT id, n FROM lt2 WHERE array_has(seq, 9) OR n > 3 ORDER BY id"
        )
        .await,
        ["1|4", "4|3"]
    );
    // In the files: each list column as bytes plus its overflow column.
    for (table, columns) in [("lt", 5), ("lt2", 4)] {
        for file in table_files(&data, table) {
            let reader = ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&file).expect("open file"),
            )
            .expect("parquet");
            let schema = reader.schema();
            assert_eq!(schema.fields().len(), columns, "{file:?}");
            assert_eq!(schema.field(1).name(), "seq");
            assert_eq!(schema.field(1).data_type(), &DataType::Binary);
            assert_eq!(schema.field(2).name(), "seq.__overflow");
        }
    }
    drop(c);
    server.stop();
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    assert_eq!(answer(&c, rows).await, expected);
    assert_eq!(
        answer(&c, "SELECT seq FROM lt2 ORDER BY id").await,
        ["{1,2,3,5}", "NULL", "{}", "{7,NULL,9}"]
    );
}
