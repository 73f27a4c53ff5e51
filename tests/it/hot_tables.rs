//! Small tables are read from memory after their first scan (`engine/src/hot_tables.rs`);
//! every write, in or out of a transaction block, is seen by the next read at once, and a
//! block's uncommitted rows stay its own. Prepared point lookups answered from the key
//! index of a held table (`sql/src/point_lookup.rs`) follow the same rules.

use crate::common::{TestServer, scalar_i64};

#[tokio::test]
async fn a_small_table_read_from_memory_sees_every_write_at_once() {
    let server = TestServer::start();
    let a = server.connect().await;
    let b = server.connect().await;
    let sum = "SELECT CAST(coalesce(sum(v), 0) AS BIGINT) FROM hot";
    a.batch_execute("CREATE TABLE hot (k BIGINT, v BIGINT)")
        .await
        .expect("create");
    a.batch_execute("INSERT INTO hot VALUES (1, 10), (2, 20)")
        .await
        .expect("insert");
    // Read twice: the second read comes from memory.
    assert_eq!(scalar_i64(&a, sum).await, 30);
    assert_eq!(scalar_i64(&b, sum).await, 30);
    a.batch_execute("INSERT INTO hot VALUES (3, 30)")
        .await
        .expect("insert");
    assert_eq!(scalar_i64(&b, sum).await, 60);
    a.batch_execute("UPDATE hot SET v = v + 1 WHERE k = 1")
        .await
        .expect("update");
    assert_eq!(scalar_i64(&b, sum).await, 61);
    a.batch_execute("DELETE FROM hot WHERE k = 2")
        .await
        .expect("delete");
    assert_eq!(scalar_i64(&b, sum).await, 41);
    assert_eq!(
        scalar_i64(&b, "SELECT v FROM hot WHERE k = 3").await,
        30,
        "a point lookup"
    );
    // A block sees its own rows; another session does not until it commits.
    a.batch_execute("BEGIN; INSERT INTO hot VALUES (4, 100)")
        .await
        .expect("block");
    assert_eq!(scalar_i64(&a, sum).await, 141);
    assert_eq!(scalar_i64(&b, sum).await, 41);
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(scalar_i64(&a, sum).await, 41);
    a.batch_execute("BEGIN; INSERT INTO hot VALUES (5, 1000); COMMIT")
        .await
        .expect("commit");
    assert_eq!(scalar_i64(&b, sum).await, 1041);
    a.batch_execute("TRUNCATE hot").await.expect("truncate");
    assert_eq!(scalar_i64(&b, sum).await, 0);
    // A table dropped and made again under the same name is the new one.
    a.batch_execute("INSERT INTO hot VALUES (6, 7)")
        .await
        .expect("insert");
    assert_eq!(scalar_i64(&b, sum).await, 7);
    a.batch_execute(
        "DROP TABLE hot; CREATE TABLE hot (k BIGINT, v BIGINT); INSERT INTO hot VALUES (1, 2)",
    )
    .await
    .expect("again");
    assert_eq!(scalar_i64(&b, sum).await, 2);
}

/// The values of column 1 (`v`) a prepared lookup returns for `key`.
async fn values_for(
    client: &tokio_postgres::Client,
    lookup: &tokio_postgres::Statement,
    key: i64,
) -> Vec<i64> {
    client
        .query(lookup, &[&key])
        .await
        .expect("lookup")
        .iter()
        .map(|r| r.get::<_, i64>(1))
        .collect()
}

/// A prepared `SELECT … WHERE k = $1`, repeated as a service would, sees every write,
/// only its own block's uncommitted rows, a table made again under its name, and refuses to
/// run in a failed block.
#[tokio::test]
async fn prepared_point_lookups_see_every_write_at_once() {
    let server = TestServer::start();
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute(
        "CREATE TABLE plans (k BIGINT, v BIGINT, label TEXT); \
         INSERT INTO plans VALUES (1, 10, 'a'), (2, 20, 'b'), (2, 21, 'c')",
    )
    .await
    .expect("create");
    let sql = "SELECT k, v, label FROM plans WHERE k = $1";
    let (la, lb) = (
        a.prepare(sql).await.expect("prepare"),
        b.prepare(sql).await.expect("prepare"),
    );
    // The first run scans and holds the table; the next ones read its index.
    for _ in 0..3 {
        assert_eq!(values_for(&b, &lb, 2).await, vec![20, 21]);
        assert_eq!(values_for(&b, &lb, 1).await, vec![10]);
        assert_eq!(values_for(&b, &lb, 3).await, Vec::<i64>::new());
    }
    let labels: Vec<String> = b
        .query(&lb, &[&2i64])
        .await
        .expect("lookup")
        .iter()
        .map(|r| r.get::<_, String>("label"))
        .collect();
    assert_eq!(labels, ["b", "c"]);
    a.batch_execute("INSERT INTO plans VALUES (3, 30, 'd')")
        .await
        .expect("insert");
    for _ in 0..2 {
        assert_eq!(values_for(&b, &lb, 3).await, vec![30]);
    }
    a.batch_execute("UPDATE plans SET v = v + 1 WHERE k = 1")
        .await
        .expect("update");
    for _ in 0..2 {
        assert_eq!(values_for(&b, &lb, 1).await, vec![11]);
    }
    // A block sees its own rows; another session does not until it commits.
    a.batch_execute("BEGIN; INSERT INTO plans VALUES (4, 40, 'e')")
        .await
        .expect("block");
    for _ in 0..2 {
        assert_eq!(values_for(&a, &la, 4).await, vec![40]);
        assert_eq!(values_for(&b, &lb, 4).await, Vec::<i64>::new());
    }
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(values_for(&b, &lb, 4).await, vec![40]);
    // A failed block refuses the lookup too.
    a.batch_execute("BEGIN").await.expect("begin");
    assert!(a.batch_execute("SELECT 1/0").await.is_err());
    let refused = a.query(&la, &[&1i64]).await.expect_err("failed block");
    assert_eq!(crate::common::sqlstate(&refused), "25P02");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    // A table made again under the name is the one read.
    a.batch_execute(
        "DROP TABLE plans; CREATE TABLE plans (k BIGINT, v BIGINT, label TEXT); \
         INSERT INTO plans VALUES (1, 99, 'z')",
    )
    .await
    .expect("again");
    for _ in 0..2 {
        assert_eq!(values_for(&b, &lb, 1).await, vec![99]);
        assert_eq!(values_for(&b, &lb, 2).await, Vec::<i64>::new());
    }
}

/// Prepared lookups on a table too large to hold as a small one (over 8 MiB of files) —
/// the first ones planned, the later ones from the memory they ask for (the hold itself is
/// `engine/src/hot_tables.rs`'s unit tests'; its speed, `benches/compare/point_lookups.py`)
/// — answer as a scan does, before and after a write.
#[tokio::test]
async fn a_large_table_looked_up_by_key_answers_and_follows_writes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let a = server.connect().await;
    let b = server.connect().await;
    // Random doubles barely compress: about 12 MB of files.
    a.batch_execute(
        "CREATE TABLE big_plans AS SELECT CAST(v AS BIGINT) AS k, CAST(v * 10 AS BIGINT) AS v, \
         random() AS r1, random() AS r2 FROM generate_series(1, 800000) AS t(v); \
         INSERT INTO big_plans VALUES (7, 71, 0, 0)",
    )
    .await
    .expect("create");
    let files: u64 = std::fs::read_dir(data.join("tables"))
        .expect("tables")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    assert!(
        files > 8 << 20,
        "a file over the small-table limit: {files} bytes"
    );
    let lookup = b
        .prepare("SELECT k, v FROM big_plans WHERE k = $1")
        .await
        .expect("prepare");
    for _ in 0..4 {
        assert_eq!(sorted(values_for(&b, &lookup, 7).await), vec![70, 71]);
        assert_eq!(values_for(&b, &lookup, 799_999).await, vec![7_999_990]);
        assert_eq!(values_for(&b, &lookup, 0).await, Vec::<i64>::new());
    }
    a.batch_execute("UPDATE big_plans SET v = -1 WHERE k = 799999")
        .await
        .expect("update");
    for _ in 0..3 {
        assert_eq!(values_for(&b, &lookup, 799_999).await, vec![-1]);
        assert_eq!(sorted(values_for(&b, &lookup, 7).await), vec![70, 71]);
    }
    assert_eq!(
        scalar_i64(&b, "SELECT count(*) FROM big_plans WHERE v = -1").await,
        1
    );
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}
