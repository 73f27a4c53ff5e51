//! What is acknowledged survives a restart; a process killed mid-write leaves no partial
//! rows and no stray files.

use std::time::Duration;

use crate::common::{TestServer, scalar_i64};

fn files_with_suffix(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn catalog_changes_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let csv = tmp.path().join("ext.csv");
    std::fs::write(&csv, "a,b\n1,x\n2,y\n3,z\n").unwrap();
    let allow = ["--allow-path".to_string(), tmp.path().display().to_string()];
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let server = TestServer::try_start(&dir, &[], &allow).expect("server starts");
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS mart;
             CREATE SCHEMA IF NOT EXISTS mart;
             CREATE TABLE mart.buyers AS SELECT user_id, segment FROM users WHERE user_id <= 20;
             INSERT INTO mart.buyers VALUES (5000, 'vip');
             INSERT INTO mart.buyers SELECT user_id, segment FROM users WHERE user_id BETWEEN 21 AND 30;
             INSERT INTO mart.buyers VALUES (6000, 'gone');
             DELETE FROM mart.buyers WHERE segment = 'gone';
             CREATE TABLE empty_one (x BIGINT NOT NULL, y TEXT);
             CREATE VIEW mart.vip AS SELECT user_id FROM mart.buyers WHERE segment = 'vip';
             CREATE OR REPLACE VIEW mart.vip AS SELECT user_id, segment FROM mart.buyers WHERE segment = 'vip';
             CREATE TABLE to_rename AS SELECT 1 AS one;
             ALTER TABLE to_rename RENAME TO renamed;
             CREATE TABLE to_drop AS SELECT 1 AS one;
             DROP TABLE to_drop;
             DROP TABLE IF EXISTS never_was CASCADE;
             CREATE EXTERNAL TABLE ext (a BIGINT, b TEXT) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true');
             CREATE EXTERNAL TABLE ext_items STORED AS PARQUET LOCATION '{}/tables/t2/';
             CREATE TEMP TABLE tmp_only AS SELECT 1 AS one;",
            csv.display(),
            dir.display()
        ))
        .await
        .unwrap();
    let vip_before = scalar_i64(&client, "SELECT count(*) FROM mart.vip").await;
    drop(client);
    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    let server = TestServer::try_start(&dir, &[], &allow).expect("server restarts");
    let client = server.connect().await;
    let q = |sql: &'static str| scalar_i64(&client, sql);
    assert_eq!(q("SELECT count(*) FROM mart.buyers").await, 31);
    assert_eq!(q("SELECT count(*) FROM mart.vip").await, vip_before);
    assert_eq!(q("SELECT count(*) FROM empty_one").await, 0);
    assert_eq!(q("SELECT count(*) FROM renamed").await, 1);
    assert_eq!(q("SELECT sum(a) FROM ext").await, 6);
    // An external Parquet folder (here: the generated items table's own files).
    assert_eq!(q("SELECT count(*) FROM ext_items").await, 100);
    assert_eq!(
        q("SELECT count(*) FROM users").await,
        1000,
        "the world is not regenerated"
    );
    for missing in [
        "SELECT * FROM to_drop",
        "SELECT * FROM to_rename",
        "SELECT * FROM tmp_only",
    ] {
        let e = client.simple_query(missing).await.expect_err(missing);
        assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{missing}");
    }
    // NOT NULL survives too.
    let e = client
        .simple_query("INSERT INTO empty_one VALUES (NULL, 'n')")
        .await
        .expect_err("not null");
    assert_eq!(e.code().map(|c| c.code()), Some("23502"));
    let cols: Vec<(String, String)> = client
        .query(
            "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'empty_one' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        cols,
        vec![("x".into(), "NO".into()), ("y".into(), "YES".into())]
    );
    assert!(files_with_suffix(&dir, ".tmp").is_empty());
}

#[tokio::test]
async fn a_kill_during_writes_leaves_whole_statements_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = TestServer::start_in(&dir, &[]);
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE grow AS SELECT user_id, item_id, event_type, ts FROM events")
        .await
        .unwrap();
    let base = scalar_i64(&client, "SELECT count(*) FROM grow").await;
    // Keep doubling the table; each INSERT is one statement that writes one file.
    let writer = tokio::spawn(async move {
        let mut acknowledged = 1i64;
        loop {
            match client
                .simple_query("INSERT INTO grow SELECT * FROM grow")
                .await
            {
                Ok(_) => acknowledged *= 2,
                Err(_) => return acknowledged,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill();
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged >= 2,
        "the writer made progress before the kill ({acknowledged}x)"
    );

    let server = TestServer::start_in(&dir, &[]);
    let client = server.connect().await;
    let n = scalar_i64(&client, "SELECT count(*) FROM grow").await;
    // Every acknowledged insert is there; an unacknowledged one is either all there or not
    // at all — never part of it.
    assert!(
        n == base * acknowledged || n == base * acknowledged * 2,
        "count {n} is not {base} x {acknowledged} (or the in-flight doubling)"
    );
    assert!(
        files_with_suffix(&dir, ".tmp").is_empty(),
        "partial files are removed at start-up"
    );
    // The table is still writable.
    client
        .batch_execute("INSERT INTO grow SELECT * FROM grow LIMIT 1")
        .await
        .unwrap();
}

/// A table fed one row at a time does not collect a file per row: small files are merged in
/// the background, nothing is lost or doubled, and the catalog names the few files left.
#[tokio::test]
async fn ten_thousand_single_row_inserts_leave_few_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = TestServer::start_in(&dir, &[]);
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE log (id BIGINT, note TEXT)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO log VALUES ($1, 'row')")
        .await
        .unwrap();
    for id in 0..10_000i64 {
        client.execute(&insert, &[&id]).await.unwrap();
    }
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM log").await,
        10_000
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(DISTINCT id) FROM log").await,
        10_000
    );
    // The merge runs behind the inserts; give the last one a moment to land.
    let catalog = dir.join("catalog.json");
    let files_of_log = || -> usize {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&catalog).unwrap()).unwrap();
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "log")
            .map(|t| t["files"].as_array().unwrap().len())
            .unwrap()
    };
    let mut files = files_of_log();
    for _ in 0..100 {
        if files < 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        files = files_of_log();
    }
    assert!(files < 16, "{files} files after 10,000 single-row inserts");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM log").await,
        10_000
    );
    assert_eq!(
        scalar_i64(&client, "SELECT sum(id) FROM log").await,
        49_995_000
    );
    // A restart keeps exactly what was acknowledged.
    drop(client);
    assert!(server.stop().success());
    let server = TestServer::start_in(&dir, &[]);
    let client = server.connect().await;
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM log").await,
        10_000
    );
    assert_eq!(
        scalar_i64(&client, "SELECT sum(id) FROM log").await,
        49_995_000
    );
}

/// A size-limited filesystem (tmpfs) mounted for one test, unmounted when dropped. Mounting
/// needs root with CAP_SYS_ADMIN: without it the test is skipped, unless
/// `FLASHSQL_REQUIRE_TMPFS` is set.
struct SmallDisk {
    dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("disk");
        std::fs::create_dir(&dir).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !crate::common::available(
            mounted,
            "FLASHSQL_REQUIRE_TMPFS",
            "cannot mount a tmpfs (needs root with CAP_SYS_ADMIN)",
        ) {
            return None;
        }
        Some(SmallDisk { dir, _tmp: tmp })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// A full disk fails the write that ran out of space with 53100, removes what it had
/// written, and loses nothing committed: the server goes on answering, reads every table,
/// and writes again once space is free.
#[tokio::test]
async fn a_full_disk_fails_the_write_with_53100_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let dir = disk.dir.join("data");
    let server = TestServer::try_start(&dir, &[], &[]).expect("server starts");
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE kept AS SELECT * FROM events")
        .await
        .expect("a table that fits");
    let kept = scalar_i64(&client, "SELECT count(*) FROM kept").await;
    // Random text does not compress: about 60 MiB, more than the disk holds.
    let too_big = "CREATE TABLE too_big AS SELECT v, md5(CAST(v AS TEXT)) || md5(CAST(v * 7 AS TEXT)) AS a, \
                   md5(CAST(v * 13 AS TEXT)) AS b FROM generate_series(1, 600000) AS t(v)";
    for statement in [
        too_big.to_string(),
        "INSERT INTO kept SELECT k.user_id, k.item_id, k.category_id, md5(concat_ws('/', k.ts, k.user_id, k.item_id, g)), \
         k.ts, k.price, k.discount, k.campaign_id FROM kept AS k, generate_series(1, 40) AS s(g)"
            .to_string(),
    ] {
        let e = client
            .batch_execute(&statement)
            .await
            .expect_err("out of space");
        assert_eq!(crate::common::sqlstate(&e), "53100", "{statement}: {e:?}");
    }
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM kept").await, kept);
    let gone = client
        .simple_query("SELECT * FROM too_big")
        .await
        .expect_err("never created");
    assert_eq!(crate::common::sqlstate(&gone), "42P01");
    // The failed writes left no files behind: a write that fits succeeds now.
    client
        .batch_execute("INSERT INTO kept SELECT * FROM kept LIMIT 10")
        .await
        .expect("space is free again");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM kept").await,
        kept + 10
    );
    // And everything survives a restart.
    drop(client);
    server.stop();
    let server = TestServer::try_start(&dir, &[], &[]).expect("restarts");
    let client = server.connect().await;
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM kept").await,
        kept + 10
    );
}
