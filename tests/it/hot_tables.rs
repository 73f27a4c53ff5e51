//! Small tables are read from memory after their first scan (`engine/src/hot_tables.rs`);
//! every write, in or out of a transaction block, is seen by the next read at once, and a
//! block's uncommitted rows stay its own.

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
