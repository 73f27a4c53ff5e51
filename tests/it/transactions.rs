//! Transaction blocks over the wire: atomic COMMIT, ROLLBACK, snapshot reads, 25P02 after a
//! failure, first-committer-wins (40001), savepoints, and nothing left behind by a block
//! that does not commit.

use std::path::Path;

use futures::SinkExt;
use tokio_postgres::Client;

use crate::common::{TestServer, connect, scalar_i64, sqlstate};

async fn count(client: &Client, table: &str) -> i64 {
    scalar_i64(client, &format!("SELECT count(*) FROM {table}")).await
}

/// Parquet files under the data directory's tables: what a rolled-back block must not add.
fn parquet_files(data: &Path) -> usize {
    walk(&data.join("tables"))
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

async fn setup(server: &TestServer) -> Client {
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE acct (id BIGINT, balance BIGINT); \
             INSERT INTO acct VALUES (1, 100), (2, 100), (3, 100)",
        )
        .await
        .expect("setup");
    client
}

/// Writes inside a block are seen by the block alone until COMMIT, then by everyone at
/// once; they survive a restart.
#[tokio::test]
async fn commit_publishes_all_writes_at_once_and_durably() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let a = setup(&server).await;
    let b = server.connect().await;
    a.batch_execute(
        "BEGIN; \
         UPDATE acct SET balance = balance - 30 WHERE id = 1; \
         UPDATE acct SET balance = balance + 30 WHERE id = 2; \
         INSERT INTO acct VALUES (4, 0); \
         DELETE FROM acct WHERE id = 3",
    )
    .await
    .expect("block");
    // The block sees its own writes; another session sees none of them.
    assert_eq!(scalar_i64(&a, "SELECT sum(balance) FROM acct").await, 200);
    assert_eq!(count(&a, "acct").await, 3);
    assert_eq!(scalar_i64(&b, "SELECT sum(balance) FROM acct").await, 300);
    assert_eq!(count(&b, "acct").await, 3);
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        scalar_i64(&b, "SELECT balance FROM acct WHERE id = 1").await,
        70
    );
    assert_eq!(scalar_i64(&b, "SELECT sum(balance) FROM acct").await, 200);
    drop((a, b));
    server.stop();
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    assert_eq!(count(&c, "acct").await, 3);
    assert_eq!(scalar_i64(&c, "SELECT sum(balance) FROM acct").await, 200);
    assert_eq!(
        scalar_i64(&c, "SELECT balance FROM acct WHERE id = 2").await,
        130
    );
}

/// ROLLBACK (and a session that ends inside a block) changes nothing and leaves no file.
#[tokio::test]
async fn rollback_and_disconnect_leave_nothing_behind() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let a = setup(&server).await;
    let files_before = parquet_files(&data);
    a.batch_execute(
        "BEGIN; INSERT INTO acct VALUES (9, 9); DELETE FROM acct WHERE id = 1; \
         TRUNCATE acct; INSERT INTO acct VALUES (10, 10)",
    )
    .await
    .expect("block");
    assert_eq!(count(&a, "acct").await, 1);
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count(&a, "acct").await, 3);
    assert_eq!(scalar_i64(&a, "SELECT sum(balance) FROM acct").await, 300);
    assert_eq!(
        parquet_files(&data),
        files_before,
        "files of the rolled-back block"
    );

    // COPY inside a block, then the client goes away without COMMIT.
    let (b, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    b.batch_execute("BEGIN").await.expect("begin");
    let sink = b
        .copy_in("COPY acct FROM STDIN (FORMAT csv)")
        .await
        .expect("copy");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"20,1\n21,1\n"))
        .await
        .expect("send");
    assert_eq!(sink.finish().await.expect("copied"), 2);
    assert_eq!(count(&b, "acct").await, 5);
    drop(b);
    let _ = task.await;
    // The server notices the session ended and rolls its block back.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = parquet_files(&data);
        if left == files_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, files_before, "files of the abandoned block");
    assert_eq!(count(&a, "acct").await, 3);
}

/// After a failed statement the block refuses everything but its end (25P02), and COMMIT
/// then rolls it back: whether the statement failed before its first row (an unknown table)
/// or while its rows were on their way (a division by zero in the third row), over either
/// protocol.
#[tokio::test]
async fn a_failed_block_refuses_statements_and_commit_rolls_it_back() {
    let server = TestServer::start();
    let a = setup(&server).await;
    let failing = [
        ("SELECT * FROM no_such_table", "42P01"),
        (
            "SELECT 300 / (balance - 100 * (id / 3)) FROM acct ORDER BY id",
            "22012",
        ),
    ];
    for (sql, code) in failing {
        for extended in [false, true] {
            a.batch_execute("BEGIN; INSERT INTO acct VALUES (5, 5)")
                .await
                .expect("block");
            let err = if extended {
                a.query(sql, &[]).await.map(|_| ()).expect_err("fails")
            } else {
                a.simple_query(sql).await.map(|_| ()).expect_err("fails")
            };
            assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
            for next in ["SELECT 1", "INSERT INTO acct VALUES (6, 6)"] {
                let err = a.simple_query(next).await.expect_err("refused");
                assert_eq!(sqlstate(&err), "25P02", "after {sql}: {next}: {err:?}");
            }
            let err = a.query("SELECT 1", &[]).await.expect_err("refused");
            assert_eq!(sqlstate(&err), "25P02", "after {sql}");
            let done = a.simple_query("COMMIT").await.expect("commit answers");
            let tag = done.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            });
            assert!(tag.is_some());
            assert_eq!(
                count(&a, "acct").await,
                3,
                "nothing of the failed block: {sql}"
            );
            assert_eq!(scalar_i64(&a, "SELECT 1::BIGINT").await, 1);
        }
    }
}

/// A block reads the snapshot it began with; concurrent appends both commit; a block whose
/// rewrite lost the race gets 40001 and changes nothing.
#[tokio::test]
async fn snapshots_and_first_committer_wins() {
    let server = TestServer::start();
    let a = setup(&server).await;
    let b = server.connect().await;
    a.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(count(&a, "acct").await, 3);
    b.batch_execute("INSERT INTO acct VALUES (7, 7)")
        .await
        .expect("insert");
    assert_eq!(count(&a, "acct").await, 3, "the block's snapshot");
    a.batch_execute("INSERT INTO acct VALUES (8, 8); COMMIT")
        .await
        .expect("both appends commit");
    assert_eq!(count(&a, "acct").await, 5);

    // Two blocks rewrite the same table: the first COMMIT wins.
    a.batch_execute("BEGIN; UPDATE acct SET balance = 0 WHERE id = 1")
        .await
        .expect("a");
    b.batch_execute("BEGIN; DELETE FROM acct WHERE id = 2; COMMIT")
        .await
        .expect("b commits first");
    let err = a.simple_query("COMMIT").await.expect_err("loses");
    assert_eq!(sqlstate(&err), "40001", "{err:?}");
    a.batch_execute("ROLLBACK")
        .await
        .expect("rollback is harmless");
    assert_eq!(
        scalar_i64(&a, "SELECT balance FROM acct WHERE id = 1").await,
        100,
        "the losing block changed nothing"
    );
    assert_eq!(count(&a, "acct").await, 4);
}

/// A block keeps reading its snapshot after another session rewrote the table: the
/// replaced files are kept while the block is open.
#[tokio::test]
async fn a_block_reads_its_snapshot_after_a_concurrent_rewrite() {
    let server = TestServer::start();
    let a = setup(&server).await;
    let b = server.connect().await;
    a.batch_execute("BEGIN").await.expect("begin");
    b.batch_execute("UPDATE acct SET balance = balance + 1")
        .await
        .expect("rewrite outside the block");
    b.batch_execute("DELETE FROM acct WHERE id = 3")
        .await
        .expect("another rewrite");
    assert_eq!(
        scalar_i64(&a, "SELECT sum(balance) FROM acct").await,
        300,
        "the block's snapshot"
    );
    assert_eq!(scalar_i64(&b, "SELECT sum(balance) FROM acct").await, 202);
    // Copying from the snapshot copies all of it.
    a.batch_execute("CREATE TABLE acct_copy (id BIGINT, balance BIGINT); INSERT INTO acct_copy SELECT * FROM acct; COMMIT")
        .await
        .expect("copy and commit");
    assert_eq!(count(&b, "acct_copy").await, 3);
    assert_eq!(
        scalar_i64(&b, "SELECT sum(balance) FROM acct_copy").await,
        300
    );
}

/// Savepoints undo part of a block.
#[tokio::test]
async fn savepoints_undo_part_of_a_block() {
    let server = TestServer::start();
    let a = setup(&server).await;
    a.batch_execute(
        "BEGIN; INSERT INTO acct VALUES (11, 1); SAVEPOINT s1; \
         INSERT INTO acct VALUES (12, 1); DELETE FROM acct WHERE id = 1; \
         ROLLBACK TO SAVEPOINT s1; INSERT INTO acct VALUES (13, 1); \
         SAVEPOINT s2; RELEASE SAVEPOINT s2; COMMIT",
    )
    .await
    .expect("block");
    assert_eq!(
        scalar_i64(
            &a,
            "SELECT count(*) FROM acct WHERE id IN (1, 11, 13) AND id <> 12"
        )
        .await,
        3
    );
    assert_eq!(count(&a, "acct").await, 5);
    // A failed statement is undone by rolling back to a savepoint before it.
    a.batch_execute("BEGIN; SAVEPOINT s; INSERT INTO acct VALUES (14, 1)")
        .await
        .expect("block");
    assert!(a.simple_query("SELECT 1 / 0").await.is_err());
    a.batch_execute("ROLLBACK TO SAVEPOINT s; INSERT INTO acct VALUES (15, 1); COMMIT")
        .await
        .expect("recovered");
    assert_eq!(
        scalar_i64(&a, "SELECT count(*) FROM acct WHERE id IN (14, 15)").await,
        1
    );
    let err = a
        .simple_query("BEGIN; ROLLBACK TO SAVEPOINT nope")
        .await
        .expect_err("unknown savepoint");
    assert_eq!(sqlstate(&err), "3B001");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    let err = a
        .simple_query("SAVEPOINT outside")
        .await
        .expect_err("no block");
    assert_eq!(sqlstate(&err), "25P01");
    let other = connect(&server.url()).await.expect("connect");
    assert_eq!(count(&other, "acct").await, 6);
}

/// SIGKILLs at seeded moments while blocks write two tables (appends and rewrites): after
/// each restart both tables hold exactly the same keys: every acknowledged block, at most
/// the one in flight, nothing half applied.
#[tokio::test]
async fn a_kill_during_blocks_leaves_whole_blocks_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let setup = server.connect().await;
    setup
        .batch_execute("CREATE TABLE left_side (k BIGINT); CREATE TABLE right_side (k BIGINT)")
        .await
        .expect("tables");
    drop(setup);
    let mut server = Some(server);
    let mut next = 0i64;
    // A fixed sequence of kill delays (ms): deterministic, and spread over a block's steps.
    let delays = [350u64, 520, 410, 690, 300, 580, 460, 730];
    for delay in delays {
        let running = server.take().expect("server");
        let client = running.connect().await;
        let start = next;
        let writer = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut k = start;
            loop {
                // Each block adds key k to both tables and removes key k − 3 from both, and
                // creates table block_(1000 + k) and drops block_(997 + k) (DDL in the same
                // commit).
                let block = format!(
                    "BEGIN; INSERT INTO left_side VALUES ({k}); INSERT INTO right_side VALUES ({k}); \
                     DELETE FROM left_side WHERE k = {old}; DELETE FROM right_side WHERE k = {old}; \
                     CREATE TABLE IF NOT EXISTS block_{named} AS SELECT {k} AS k; \
                     DROP TABLE IF EXISTS block_{old_named}; \
                     COMMIT",
                    old = k - 3,
                    named = k + 1000,
                    old_named = k + 997,
                );
                match client.batch_execute(&block).await {
                    Ok(()) => acked.push(k),
                    Err(_) => return (acked, k),
                }
                k += 1;
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        running.kill();
        let (acked, in_flight) = writer.await.expect("writer");
        // The next run retries the block in flight (it may have committed unacknowledged:
        // then its key is there twice, on both sides alike).
        next = in_flight;
        let restarted = TestServer::start_in(&data, &[]);
        let client = restarted.connect().await;
        let keys = |table: &'static str| {
            let client = &client;
            async move {
                let rows = client
                    .query(&format!("SELECT k FROM {table} ORDER BY k"), &[])
                    .await
                    .expect("read");
                rows.iter()
                    .map(|r| r.get::<_, i64>(0))
                    .collect::<Vec<i64>>()
            }
        };
        let (l, r) = (keys("left_side").await, keys("right_side").await);
        assert_eq!(
            l, r,
            "both sides of every block, after a kill at {delay} ms"
        );
        if let Some(last) = acked.last() {
            assert!(
                l.contains(last),
                "acknowledged block {last} is there: {l:?}"
            );
        }
        assert!(
            l.iter().all(|k| *k <= in_flight),
            "nothing beyond the block in flight: {l:?}"
        );
        let mut distinct = l.clone();
        distinct.dedup();
        assert!(distinct.len() <= 4, "removed keys stay removed: {l:?}");
        let tables: Vec<i64> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_name LIKE 'block\\_%' ESCAPE '\\'",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .filter_map(|r| r.get::<_, String>(0).strip_prefix("block_")?.parse().ok())
            .map(|n: i64| n - 1000)
            .collect();
        let mut tables = tables;
        tables.sort();
        assert_eq!(
            tables, distinct,
            "the block's tables are those of the blocks that committed"
        );
        drop(client);
        server = Some(restarted);
    }
    let running = server.take().expect("server");
    assert!(next > 10, "blocks committed between the kills: {next}");
    drop(running);
}

/// Several statements in one simple query are one implicit transaction, as in PostgreSQL:
/// a failure rolls back those before it; a COMMIT among them commits what came before and
/// the rest get a new one; a BEGIN among them makes the block the client's.
#[tokio::test]
async fn a_simple_query_of_several_statements_is_one_transaction() {
    let server = TestServer::start();
    let client = setup(&server).await;
    let before = count(&client, "acct").await;
    let e = client
        .batch_execute(
            "INSERT INTO acct VALUES (100, 1); UPDATE acct SET balance = balance + 1; \
             SELECT 1 / 0",
        )
        .await
        .expect_err("the last statement fails");
    assert_eq!(sqlstate(&e), "22012");
    assert_eq!(
        count(&client, "acct").await,
        before,
        "the INSERT was rolled back"
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM acct WHERE balance = 1").await,
        0,
        "the UPDATE was rolled back"
    );
    // The session is not left in a block: the next statement commits on its own.
    client
        .batch_execute("INSERT INTO acct VALUES (101, 1)")
        .await
        .expect("idle");
    let other = server.connect().await;
    assert_eq!(count(&other, "acct").await, before + 1);

    // COMMIT among them: what came before stays, the failure after it undoes only its own.
    let e = client
        .batch_execute(
            "INSERT INTO acct VALUES (102, 1); COMMIT; INSERT INTO acct VALUES (103, 1); \
             SELECT * FROM no_such_table",
        )
        .await
        .expect_err("fails");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(
        scalar_i64(&other, "SELECT count(*) FROM acct WHERE id >= 102").await,
        1,
        "102 committed, 103 rolled back"
    );

    // BEGIN among them: the block stays open after the query, with what came before it.
    client
        .batch_execute("INSERT INTO acct VALUES (104, 1); BEGIN; INSERT INTO acct VALUES (105, 1)")
        .await
        .expect("a block");
    assert_eq!(
        scalar_i64(&other, "SELECT count(*) FROM acct WHERE id >= 104").await,
        0,
        "nothing visible before COMMIT"
    );
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        scalar_i64(&other, "SELECT count(*) FROM acct WHERE id >= 104").await,
        2
    );
}

/// The names of the tables and views a test made, as a session sees them in pg_catalog
/// (the generated world's tables left out).
async fn names(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') \
             AND relname NOT IN ('campaigns', 'events', 'exposures', 'items', 'users') ORDER BY 1",
            &[],
        )
        .await
        .expect("names")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// DDL is part of a block: a table, view and schema created in it, a rename and a drop are
/// seen by the block alone until COMMIT, undone by ROLLBACK (their files gone), and land
/// together with the block's writes.
#[tokio::test]
async fn ddl_in_a_block_lands_at_commit_or_not_at_all() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let a = setup(&server).await;
    let b = server.connect().await;
    let files_before = parquet_files(&data);
    a.batch_execute(
        "BEGIN; \
         CREATE TABLE fresh AS SELECT id, balance * 2 AS doubled FROM acct; \
         INSERT INTO fresh VALUES (9, 9); \
         CREATE VIEW rich AS SELECT id FROM fresh WHERE doubled > 100; \
         CREATE SCHEMA staging; CREATE TABLE staging.t (x BIGINT); \
         ALTER TABLE acct RENAME TO accounts",
    )
    .await
    .expect("ddl in a block");
    // The block sees its own catalog; the other session the committed one.
    assert_eq!(count(&a, "fresh").await, 4);
    assert_eq!(count(&a, "rich").await, 3);
    assert_eq!(count(&a, "accounts").await, 3);
    assert_eq!(names(&a).await, ["accounts", "fresh", "rich"]);
    assert_eq!(names(&b).await, ["acct"]);
    let e = b
        .simple_query("SELECT * FROM fresh")
        .await
        .expect_err("unseen");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(count(&b, "acct").await, 3);
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(names(&a).await, ["acct"]);
    let e = a
        .simple_query("SELECT * FROM staging.t")
        .await
        .expect_err("gone");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(
        parquet_files(&data),
        files_before,
        "the block's table files are gone"
    );

    // The same block committed: everything at once, and durable.
    a.batch_execute(
        "BEGIN; \
         CREATE TABLE fresh AS SELECT id, balance * 2 AS doubled FROM acct; \
         INSERT INTO fresh VALUES (9, 9); \
         CREATE VIEW rich AS SELECT id FROM fresh WHERE doubled > 100; \
         ALTER TABLE acct RENAME TO accounts; \
         INSERT INTO accounts VALUES (4, 1)",
    )
    .await
    .expect("ddl in a block");
    assert_eq!(names(&b).await, ["acct"]);
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(names(&b).await, ["accounts", "fresh", "rich"]);
    assert_eq!(count(&b, "fresh").await, 4);
    assert_eq!(count(&b, "rich").await, 3);
    assert_eq!(count(&b, "accounts").await, 4);
    drop((a, b));
    drop(server);
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    assert_eq!(names(&c).await, ["accounts", "fresh", "rich"]);
    assert_eq!(count(&c, "rich").await, 3);

    // A drop in a block: the others keep the table until COMMIT; ROLLBACK keeps it.
    let d = server.connect().await;
    c.batch_execute("BEGIN; DROP VIEW rich; DROP TABLE fresh")
        .await
        .expect("drops");
    assert_eq!(names(&c).await, ["accounts"]);
    assert_eq!(count(&d, "rich").await, 3);
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count(&c, "rich").await, 3);
    c.batch_execute("BEGIN; DROP VIEW rich; DROP TABLE fresh; COMMIT")
        .await
        .expect("drops");
    assert_eq!(names(&d).await, ["accounts"]);
}

/// The swap dbt's table and view materialisations run in one block (create the new
/// relation, rename the old one away, rename the new one in, commit, drop the old): readers
/// see the old relation until COMMIT and the new one after, never neither.
#[tokio::test]
async fn a_dbt_style_swap_in_a_block_is_atomic() {
    let server = TestServer::start();
    let a = setup(&server).await;
    let b = server.connect().await;
    a.batch_execute("CREATE VIEW model AS SELECT id FROM acct WHERE id = 1")
        .await
        .expect("old model");
    a.batch_execute(
        "BEGIN; \
         CREATE VIEW model__dbt_tmp AS SELECT id FROM acct; \
         ALTER TABLE model RENAME TO model__dbt_backup; \
         ALTER TABLE model__dbt_tmp RENAME TO model",
    )
    .await
    .expect("swap");
    assert_eq!(count(&a, "model").await, 3, "the block reads the new model");
    assert_eq!(count(&b, "model").await, 1, "others the old one");
    a.batch_execute("COMMIT; DROP VIEW IF EXISTS model__dbt_backup")
        .await
        .expect("commit");
    assert_eq!(count(&b, "model").await, 3);
    assert_eq!(names(&b).await, ["acct", "model"]);

    // A table model the same way, replacing a table of rows.
    a.batch_execute(
        "CREATE TABLE tmodel AS SELECT 1 AS v; \
         BEGIN; \
         CREATE TABLE tmodel__dbt_tmp AS SELECT id AS v FROM acct; \
         ALTER TABLE tmodel RENAME TO tmodel__dbt_backup; \
         ALTER TABLE tmodel__dbt_tmp RENAME TO tmodel; \
         COMMIT; \
         DROP TABLE IF EXISTS tmodel__dbt_backup CASCADE",
    )
    .await
    .expect("table swap");
    assert_eq!(count(&b, "tmodel").await, 3);
}

/// A block's DDL conflicts like its rewrites: if another session took the name it creates,
/// or changed a table it drops, after it looked, COMMIT fails with 40001 and nothing of the
/// block lands (its writes to other tables neither). A savepoint undoes DDL after it.
#[tokio::test]
async fn ddl_conflicts_fail_the_commit_whole() {
    let server = TestServer::start();
    let a = setup(&server).await;
    let b = server.connect().await;
    a.batch_execute("BEGIN; CREATE TABLE taken (x BIGINT); INSERT INTO acct VALUES (50, 5)")
        .await
        .expect("a");
    b.batch_execute("CREATE TABLE taken (y TEXT)")
        .await
        .expect("b first");
    let e = a.simple_query("COMMIT").await.expect_err("conflict");
    assert_eq!(sqlstate(&e), "40001", "{e:?}");
    assert_eq!(
        count(&b, "acct").await,
        3,
        "the block's insert did not land"
    );
    let cols = b
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'taken'",
            &[],
        )
        .await
        .expect("columns");
    assert_eq!(cols.len(), 1);
    assert_eq!(cols[0].get::<_, String>(0), "y", "b's table stands");

    // Dropping a table another session appended to since the block saw it.
    a.batch_execute("BEGIN; SELECT count(*) FROM acct; DROP TABLE acct")
        .await
        .expect("a drops");
    b.batch_execute("INSERT INTO acct VALUES (60, 6)")
        .await
        .expect("b appends");
    let e = a.simple_query("COMMIT").await.expect_err("conflict");
    assert_eq!(sqlstate(&e), "40001", "{e:?}");
    assert_eq!(count(&b, "acct").await, 4, "the table and b's row stay");

    // Savepoints undo DDL too.
    a.batch_execute(
        "BEGIN; CREATE TABLE kept (x BIGINT); SAVEPOINT s; CREATE TABLE undone (x BIGINT); \
         DROP TABLE kept; ROLLBACK TO SAVEPOINT s; COMMIT",
    )
    .await
    .expect("savepoint");
    assert_eq!(names(&b).await, ["acct", "kept", "taken"]);
}
