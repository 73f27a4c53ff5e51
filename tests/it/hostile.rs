//! What a hostile or careless client sends must not hurt the server or anyone else on it:
//! connections that come and go leave no memory behind, a statement too deep to run is
//! refused (54001) rather than aborting the process, and host files outside the directories
//! the operator allows cannot be read or written.

use tokio_postgres::SimpleQueryMessage;

use crate::common::{TestServer, connect, scalar_i64, sqlstate};

/// The server's resident memory in KiB.
fn rss_kib(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("/proc status of the server");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

async fn one_session(server: &TestServer) {
    let client = server.connect().await;
    assert_eq!(scalar_i64(&client, "SELECT 1::BIGINT").await, 1);
}

/// 1,000 connections that each run a statement and leave: resident memory stays flat. Each
/// session used to stay in memory for good (about 5 MB each) through a reference cycle.
#[tokio::test]
async fn sessions_that_close_leave_no_memory_behind() {
    let server = TestServer::start();
    // Warm up: the first sessions build what is shared (pg_catalog's static tables, caches).
    for _ in 0..50 {
        one_session(&server).await;
    }
    let before = rss_kib(&server);
    for _ in 0..1_000 {
        one_session(&server).await;
    }
    let after = rss_kib(&server);
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    // A leak of even 100 KiB per session would show as ~100 MiB here.
    assert!(
        grown_mib < 24.0,
        "RSS grew by {grown_mib:.1} MiB over 1,000 sessions ({before} → {after} KiB)"
    );
}

async fn code_or_rows(client: &tokio_postgres::Client, sql: &str) -> Result<usize, String> {
    match client.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count()),
        Err(e) => Err(sqlstate(&e)),
    }
}

/// Operator chains, CASE and subqueries nested 10,000 deep, and a chain of 200,000 terms, are
/// refused with 54001 (or answered); the server and the connection carry on.
#[tokio::test]
async fn statements_too_deep_are_refused_and_the_server_carries_on() {
    let server = TestServer::start();
    let client = server.connect().await;
    let chain = |n: usize, op: &str| format!("SELECT 1{}", format!(" {op} 1").repeat(n - 1));
    let nested = |n: usize, open: &str, close: &str| {
        format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
    };
    let cases = [
        ("5,000-term sum", chain(5_000, "+")),
        ("10,000-term sum", chain(10_000, "+")),
        (
            "10,000-term OR",
            format!("SELECT {}", vec!["user_id = 1"; 10_000].join(" OR ")) + " FROM users LIMIT 1",
        ),
        (
            "10,000 casts",
            format!("SELECT 1{}", "::BIGINT".repeat(10_000)),
        ),
        ("200,000-term sum", chain(200_000, "+")),
        (
            "10,000 nested CASE",
            nested(10_000, "CASE WHEN true THEN ", " END"),
        ),
        ("10,000 nested subqueries", nested(10_000, "(SELECT ", ")")),
        ("10,000 nested parentheses", nested(10_000, "(", ")")),
    ];
    for (what, sql) in &cases {
        match code_or_rows(&client, sql).await {
            Ok(rows) => assert_eq!(rows, 1, "{what}"),
            Err(code) => assert_eq!(code, "54001", "{what}"),
        }
        assert_eq!(
            scalar_i64(&client, "SELECT 2::BIGINT").await,
            2,
            "after {what}"
        );
    }
    // Chains over 1,000 levels are refused (planning them costs the square of their
    // length); shorter ones run, and a long list written as IN (…) has no such limit.
    for n in [200_000, 5_000, 1_001] {
        assert_eq!(
            code_or_rows(&client, &chain(n, "+")).await,
            Err("54001".to_string()),
            "{n} terms"
        );
    }
    assert_eq!(code_or_rows(&client, &chain(900, "+")).await, Ok(1));
    let in_list = (0..10_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        code_or_rows(
            &client,
            &format!("SELECT count(*) FROM users WHERE user_id IN ({in_list})")
        )
        .await,
        Ok(1)
    );
    // Through the extended protocol too.
    let err = client
        .query(chain(200_000, "+").as_str(), &[])
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&err), "54001");
    let other = connect(&server.url()).await.expect("a new connection");
    assert_eq!(scalar_i64(&other, "SELECT 3::BIGINT").await, 3);
}

/// External tables and COPY … TO reach only the directories the operator allows.
#[tokio::test]
async fn host_files_outside_the_allowed_directories_are_out_of_reach() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let server = TestServer::try_start(&dir, &[], &[]).expect("server starts");
    let client = server.connect().await;
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.csv"), "line\ntop secret\n").expect("write");
    let denied = [
        "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '/etc/shadow'".to_string(),
        "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION 'file:///etc/passwd'"
            .to_string(),
        format!(
            "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '{}/secret.csv'",
            outside.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '{}/import/../../outside/secret.csv'",
            dir.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '{}/'",
            outside.display()
        ),
        // DataFusion's own COPY … TO a file (reached through its parser).
        format!(
            "COPY (SELECT 'EXTERNAL TABLE' AS x) TO '{}/written.csv' STORED AS CSV",
            outside.display()
        ),
    ];
    for sql in &denied {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
    }
    assert!(!outside.join("written.csv").exists(), "nothing was written");
    assert!(
        client.simple_query("SELECT * FROM s").await.is_err(),
        "no table was created"
    );

    // The data directory's import/ folder is allowed; external tables there are read-only.
    std::fs::write(
        dir.join("import/users.csv"),
        "user_id,segment\n1,vip\n2,new\n",
    )
    .expect("write");
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE imported (user_id BIGINT, segment TEXT) STORED AS CSV LOCATION '{}/import/users.csv' OPTIONS ('format.has_header' 'true')",
            dir.display()
        ))
        .await
        .expect("import/ is allowed");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM imported").await,
        2
    );
    let e = client
        .batch_execute("INSERT INTO imported VALUES (3, 'x')")
        .await
        .expect_err("read-only");
    assert_eq!(sqlstate(&e), "42809", "{e:?}");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM imported").await,
        2
    );
    client
        .batch_execute("CREATE TABLE loaded AS SELECT * FROM imported")
        .await
        .expect("loading goes through CREATE TABLE AS");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM loaded").await, 2);
    drop(client);
    drop(server);

    // An operator-allowed directory.
    let folder = outside.display().to_string();
    let server = TestServer::try_start(&dir, &[], &["--allow-path", &folder]).expect("restart");
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE s (line TEXT) STORED AS CSV LOCATION '{folder}/secret.csv' OPTIONS ('format.has_header' 'true')"
        ))
        .await
        .expect("allowed by --allow-path");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM s").await, 1);
    drop(client);
    drop(server);

    // Allowed no more: the table stays in the catalog but cannot be read.
    let server = TestServer::try_start(&dir, &[], &[]).expect("restart");
    let client = server.connect().await;
    assert!(client.simple_query("SELECT * FROM s").await.is_err());
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM imported").await,
        2
    );
}

/// CPU seconds the server process has used (user + system).
fn cpu_seconds(server: &TestServer) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))
        .expect("/proc stat of the server");
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th of them.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// A client that goes away in the middle of a long statement takes the statement with it:
/// the server stops working on it instead of computing for nobody.
#[tokio::test]
async fn a_statement_stops_when_its_client_goes_away() {
    let server = TestServer::start();
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let conn_task = tokio::spawn(connection);
    // Minutes of work: a cross join of the behaviour log with itself.
    let long = tokio::spawn(async move {
        let _ = client
            .simple_query("SELECT count(*) FROM events a, events b WHERE a.ts < b.ts")
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // It is running (other tests may share the cores, so a low bar).
    let busy_from = cpu_seconds(&server);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        cpu_seconds(&server) - busy_from > 0.2,
        "the statement is running"
    );
    // The client vanishes without a word (its socket closes).
    conn_task.abort();
    long.abort();
    let _ = conn_task.await;
    // Work stops at the join's next batch, not after the minutes the statement would take.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let idle_from = cpu_seconds(&server);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = cpu_seconds(&server) - idle_from;
    assert!(
        used < 0.5,
        "the server still worked {used:.2} CPU-s in 2 s for a client that left"
    );
    let other = server.connect().await;
    assert_eq!(scalar_i64(&other, "SELECT 1::BIGINT").await, 1);
}

/// A statement that times out stops working at once, even a join that would compute for
/// minutes inside one poll (a condition that matches no pair scans the whole build side for
/// every probe batch), and the server keeps answering others.
#[tokio::test]
async fn a_timed_out_join_stops_working() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE wide AS SELECT value AS v FROM generate_series(1, 300000)")
        .await
        .expect("create");
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .expect("set");
    for _ in 0..3 {
        let err = client
            .simple_query("SELECT count(*) FROM wide a, wide b WHERE a.v - b.v > 1000000")
            .await
            .expect_err("times out");
        assert_eq!(sqlstate(&err), "57014", "{err:?}");
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let from = cpu_seconds(&server);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = cpu_seconds(&server) - from;
    assert!(
        used < 0.5,
        "the joins went on: {used:.2} CPU-s in 2 s after their timeouts"
    );
    let other = server.connect().await;
    let one = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        scalar_i64(&other, "SELECT 1::BIGINT"),
    )
    .await
    .expect("answered within 5 s");
    assert_eq!(one, 1);
}

/// At SIGTERM, connections still open after the grace period are told why they end
/// (FATAL 57P01), as PostgreSQL's fast shutdown does.
#[tokio::test]
async fn shutdown_tells_open_connections_why_they_end() {
    let server = TestServer::start();
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let conn_task = tokio::spawn(connection);
    assert_eq!(scalar_i64(&client, "SELECT 1::BIGINT").await, 1);
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop");
    assert!(status.success(), "{status:?}");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), conn_task)
        .await
        .expect("the connection ended")
        .expect("join");
    let err = ended.expect_err("the server ended the connection with an error");
    assert_eq!(sqlstate(&err), "57P01", "{err:?}");
}

/// flashsql's own table functions account for their input in the execution memory pool:
/// over more rows than `--memory-mb` allows they fail with 53200, and the server carries on.
#[tokio::test]
async fn relation_functions_stay_within_the_memory_limit() {
    let server = TestServer::start_with_args(&["--memory-mb", "16"]);
    let client = server.connect().await;
    // 2 million demand-curve rows: far more than 16 MiB once collected.
    let big = "SELECT * FROM optimize_discounts((SELECT value AS item_id, 0.1 AS discount, \
               1.0 AS expected_units, 10.0 AS price, 5.0 AS unit_cost, CAST(NULL AS BIGINT) AS inventory \
               FROM generate_series(1, 2000000)), budget => 100)";
    let err = client.simple_query(big).await.expect_err("over the limit");
    assert_eq!(sqlstate(&err), "53200", "{err:?}");
    // A small call still runs.
    let small = big.replace("2000000", "100");
    let rows = client.simple_query(&small).await.expect("within the limit");
    assert_eq!(
        rows.iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count(),
        100
    );
}

/// A simulation far too long to wait for stops at the statement timeout, and stops working.
#[tokio::test]
async fn a_long_simulation_stops_at_its_timeout() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("SET statement_timeout = '1s'")
        .await
        .expect("set");
    let err = client
        .simple_query(
            "SELECT count(*) FROM simulate_flash_sale(scenario => 'ferreira_single', \
             policy => 'ts_update', horizon => 1000000, trials => 1000, seed => 1)",
        )
        .await
        .expect_err("times out");
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let from = cpu_seconds(&server);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = cpu_seconds(&server) - from;
    assert!(
        used < 0.5,
        "the simulation went on: {used:.2} CPU-s in 2 s after the timeout"
    );
}

/// The data directory and the files the server writes are its user's alone.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let server = TestServer::try_start(&dir, &[], &[]).expect("server starts");
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE private_rows AS SELECT 1 AS one")
        .await
        .expect("write");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("catalog.json")), 0o600, "catalog");
    let mut files = vec![dir.join("tables")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            assert_eq!(mode(&p) & 0o077, 0, "{}", p.display());
            files.extend(
                std::fs::read_dir(&p)
                    .expect("read_dir")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

/// The files of table `name` in the data directory `dir`, from its catalog.
fn table_files(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("catalog.json")).expect("catalog.json"))
            .expect("catalog json");
    let table = catalog["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == name)
        .expect("the table is in the catalog");
    let id = table["id"].as_u64().expect("id");
    table["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| dir.join(format!("tables/t{id}/{}", f.as_str().expect("file name"))))
        .collect()
}

/// A damaged Parquet file (cut short, or bytes overwritten) fails the statements that read
/// it with XX001 naming the table; other tables and sessions carry on.
#[tokio::test]
async fn a_damaged_file_fails_its_table_alone_with_xx001() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let server = TestServer::try_start(&dir, &[], &[]).expect("server starts");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE cut_short AS SELECT user_id, segment FROM users; \
             CREATE TABLE overwritten AS SELECT * FROM events",
        )
        .await
        .expect("tables");
    let cut = table_files(&dir, "cut_short");
    let len = std::fs::metadata(&cut[0]).expect("file").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cut[0])
        .expect("open");
    f.set_len(len / 3).expect("truncate");
    let over = table_files(&dir, "overwritten");
    // Every byte of the pages, between the leading magic number and the footer (whose
    // length the last eight bytes give).
    let mut bytes = std::fs::read(&over[0]).expect("read");
    let n = bytes.len();
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    for b in &mut bytes[4..n - 8 - footer] {
        *b ^= 0x5a;
    }
    std::fs::write(&over[0], bytes).expect("write");

    for (sql, table) in [
        ("SELECT count(*) FROM cut_short", "cut_short"),
        ("SELECT * FROM cut_short", "cut_short"),
        (
            "SELECT sum(user_id), max(event_type) FROM overwritten",
            "overwritten",
        ),
        ("SELECT * FROM overwritten WHERE user_id = 3", "overwritten"),
    ] {
        for extended in [false, true] {
            let e = if extended {
                client.query(sql, &[]).await.map(|_| ()).expect_err(sql)
            } else {
                client.simple_query(sql).await.map(|_| ()).expect_err(sql)
            };
            assert_eq!(sqlstate(&e), "XX001", "{sql}: {e:?}");
            let message = e.as_db_error().map(|d| d.message().to_string());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains(&format!("\"public.{table}\""))),
                "{sql}: {message:?}"
            );
        }
    }
    // Everything else still answers, on this connection and on a new one.
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM users").await,
        1_000
    );
    let other = server.connect().await;
    assert!(scalar_i64(&other, "SELECT count(*) FROM events").await > 0);
}

/// An endless result over the extended protocol, read by a client that takes its time:
/// rows reach the client as they are produced and the server holds no more of them than
/// the socket lets it write ahead. The protocol library collected a portal's whole result
/// before sending its first row, so the client saw nothing but the timeout while the
/// server's memory grew by hundreds of MiB outside the pool.
#[tokio::test]
async fn a_large_result_streams_over_the_extended_protocol() {
    let server = TestServer::start_with_args(&["--memory-mb", "64"]);
    let client = server.connect().await;
    client
        .batch_execute("SET statement_timeout = '20s'")
        .await
        .expect("timeout");
    let before = rss_kib(&server);
    let sql = "SELECT k, repeat('x', 200) AS pad FROM generate_series(1, 2147483647) AS a(k)";
    let mut rows = Box::pin(
        client
            .query_raw(sql, std::iter::empty::<i64>())
            .await
            .expect("the query starts"),
    );
    let first = futures::StreamExt::next(&mut rows)
        .await
        .expect("a row")
        .expect("a row before the statement times out");
    assert_eq!(first.get::<_, i64>(0), 1);
    // The client stops reading for a while; the server waits on the socket.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let grown_mib = rss_kib(&server).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 128,
        "the server grew by {grown_mib} MiB while its client was not reading"
    );
    // Reading on gives the rows in order.
    for want in 2..=1000i64 {
        let row = futures::StreamExt::next(&mut rows)
            .await
            .expect("a row")
            .expect("row");
        assert_eq!(row.get::<_, i64>(0), want);
    }
    drop(rows);
    drop(client);
    let fresh = server.connect().await;
    assert_eq!(scalar_i64(&fresh, "SELECT 1::BIGINT").await, 1);
}

/// The server's peak resident memory in KiB since the last [`reset_peak`].
fn peak_rss_kib(server: &TestServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("/proc status of the server");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

/// Starts a new peak for [`peak_rss_kib`] at the present resident size.
fn reset_peak(server: &TestServer) {
    std::fs::write(format!("/proc/{}/clear_refs", server.child.id()), "5")
        .expect("reset the server's peak resident size");
}

/// A MERGE whose condition matches every target row to every source row (2,000 × 2,000
/// pairs) fails with 21000 within the memory limit. Its repeated matches used to be
/// counted by window functions that held every joined pair outside the pool: 3,000 rows
/// each took the server from 158 to 992 MiB before the error.
#[tokio::test]
async fn a_merge_matching_every_pair_fails_within_the_memory_limit() {
    let server = TestServer::start_with_args(&["--memory-mb", "64"]);
    let client = server.connect().await;
    for t in ["m1", "m2"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {t} (k BIGINT, s TEXT); \
                 INSERT INTO {t} SELECT v, 'row ' || v FROM generate_series(1, 2000) AS g(v)"
            ))
            .await
            .expect("setup");
    }
    let before = rss_kib(&server);
    reset_peak(&server);
    let sql = "MERGE INTO m2 t USING m1 s ON ('' ~ '') \
               WHEN MATCHED AND t.k < 100 THEN DELETE \
               WHEN MATCHED THEN UPDATE SET k = s.k \
               WHEN NOT MATCHED THEN INSERT (k, s) VALUES (s.k, s.s)";
    assert_eq!(
        code_or_rows(&client, sql).await,
        Err("21000".to_string()),
        "every target row is matched 2,000 times"
    );
    let grown_mib = peak_rss_kib(&server).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 128,
        "the MERGE took the server's peak {grown_mib} MiB above where it was"
    );
    // Nothing was written, and the same statement over one match per row succeeds.
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM m2").await, 2000);
    let one = "MERGE INTO m2 t USING m1 s ON t.k = s.k \
               WHEN MATCHED AND t.k < 100 THEN DELETE \
               WHEN MATCHED THEN UPDATE SET s = 'new ' || s.k";
    assert_eq!(client.execute(one, &[]).await.expect("merge"), 2000);
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM m2").await, 1901);
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM m2 WHERE s LIKE 'new %'").await,
        1901
    );
}
