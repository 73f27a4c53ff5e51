//! MERGE and INSERT … ON CONFLICT compared with PostgreSQL itself: seeded random statements
//! run on both servers over the same rows, and each must give the same outcome (row count
//! or SQLSTATE) and leave the same table behind.
//!
//! PostgreSQL (`initdb` and `postgres`, 15 or later) is started in a temporary directory.
//! Without it the test skips with a message, unless `FLASHSQL_REQUIRE_POSTGRES` is set (CI
//! sets it). `FLASHSQL_MERGE_CASES` (default 150) and `FLASHSQL_MERGE_SEED` (1) size it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::{TestServer, available, connect, sqlstate};

/// A PostgreSQL server of our own, stopped when dropped.
struct Postgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn bin(name: &str) -> Option<PathBuf> {
        let on_path = Command::new(name)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from(name));
        on_path.or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.exists())
                .collect();
            found.sort();
            found.pop()
        })
    }

    /// Runs a PostgreSQL program, as the `postgres` user when we are root (PostgreSQL
    /// refuses to run as root).
    fn command(bin: &Path) -> Command {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    }

    fn start() -> Option<Postgres> {
        let (initdb, postgres) = (Self::bin("initdb")?, Self::bin("postgres")?);
        let dir = tempfile::tempdir().ok()?;
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).ok()?;
        // The postgres user must own the directory (and reach it).
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let ok = Self::command(&initdb)
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Self::command(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-k", &dir.path().to_string_lossy(), "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Postgres {
            child,
            port,
            _dir: dir,
        })
    }

    async fn connect(&self) -> Client {
        let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port);
        for _ in 0..200 {
            if let Ok(c) = connect(&url).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "PostgreSQL did not accept connections on port {}",
            self.port
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM: a smart shutdown, then the directory goes.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// What a statement did: its row count, or its SQLSTATE.
async fn outcome(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(messages) => messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(format!("{n} rows")),
                _ => None,
            })
            .unwrap_or_else(|| "no count".into()),
        Err(e) => sqlstate(&e),
    }
}

/// A table's rows as sorted text (NULL as `∅`), numbers as PostgreSQL prints them.
async fn contents(client: &Client, table: &str) -> Vec<String> {
    let sql = format!("SELECT k, g, v, s FROM {table}");
    let mut rows: Vec<String> = client
        .simple_query(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..4)
                    .map(|i| r.get(i).unwrap_or("∅").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

fn value(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.1) {
        "NULL".into()
    } else {
        rng.random_range(-5..30).to_string()
    }
}

fn text(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.1) {
        "NULL".into()
    } else {
        format!("'{}'", ["a", "b", "c", "zz"][rng.random_range(0..4)])
    }
}

/// `n` rows of (k, g, v, s); keys in 0..keys, unique when `unique`.
fn rows(rng: &mut ChaCha8Rng, n: usize, keys: i64, unique: bool) -> Vec<String> {
    let mut used = std::collections::HashSet::new();
    (0..n)
        .filter_map(|_| {
            let k = rng.random_range(0..keys);
            if unique && !used.insert(k) {
                return None;
            }
            Some(format!(
                "({k}, {}, {}, {})",
                rng.random_range(0..3),
                value(rng),
                text(rng)
            ))
        })
        .collect()
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

/// A random MERGE of `src` into `tgt`.
fn merge(rng: &mut ChaCha8Rng) -> String {
    let on = pick(
        rng,
        &[
            "t.k = s.k",
            "t.k = s.k",
            "t.k = s.k AND t.g = s.g",
            "t.k = s.k + 1",
            "t.k = s.k AND s.v > 10",
            "FALSE",
            "t.k < s.k - 25",
        ],
    );
    let condition = |rng: &mut ChaCha8Rng| {
        pick(
            rng,
            &[
                "",
                "",
                " AND s.v > t.v",
                " AND t.g = 1",
                " AND s.v IS NULL",
                " AND t.s = 'a'",
                " AND s.s IS NOT DISTINCT FROM t.s",
            ],
        )
        .to_string()
    };
    let mut sql = format!("MERGE INTO tgt t USING src s ON {on}");
    // At least one clause (PostgreSQL's grammar wants one).
    let matched = rng.random_range(0..3);
    let inserts = rng.random_range(if matched == 0 { 1 } else { 0 }..3);
    for _ in 0..matched {
        let c = condition(rng);
        if rng.random_bool(0.3) {
            sql += &format!(" WHEN MATCHED{c} THEN DELETE");
        } else {
            let mut sets = Vec::new();
            if rng.random_bool(0.7) {
                sets.push(format!(
                    "v = {}",
                    pick(
                        rng,
                        &["t.v + s.v", "s.v", "NULL", "t.v * 2", "coalesce(s.v, -1)"]
                    )
                ));
            }
            if rng.random_bool(0.5) {
                sets.push(format!(
                    "s = {}",
                    pick(rng, &["t.s || s.s", "s.s", "'u'", "upper(t.s)"])
                ));
            }
            if sets.is_empty() || rng.random_bool(0.2) {
                sets.push("g = s.g".into());
            }
            sql += &format!(" WHEN MATCHED{c} THEN UPDATE SET {}", sets.join(", "));
        }
    }
    for _ in 0..inserts {
        let c = condition(rng).replace("t.", "s.");
        let (cols, vals) = pick2(
            rng,
            &[
                ("", "s.k, s.g, s.v, s.s"),
                ("(k, v)", "s.k + 100, s.v"),
                ("(s, k, g)", "'ins', s.k, 0"),
                ("(k, g, v, s)", "k, g, v, s"),
            ],
        );
        sql += &format!(" WHEN NOT MATCHED{c} THEN INSERT {cols} VALUES ({vals})");
    }
    sql
}

fn pick2<'a>(rng: &mut ChaCha8Rng, options: &[(&'a str, &'a str)]) -> (&'a str, &'a str) {
    options[rng.random_range(0..options.len())]
}

/// A random INSERT … ON CONFLICT (k) into `ukey` (unique k in PostgreSQL).
fn upsert(rng: &mut ChaCha8Rng) -> String {
    let (n, unique) = (rng.random_range(1..6), rng.random_bool(0.7));
    let proposed = rows(rng, n, 20, unique);
    let action = match rng.random_range(0..5) {
        0 => "DO NOTHING".to_string(),
        1 => "DO UPDATE SET v = excluded.v".to_string(),
        2 => "DO UPDATE SET v = u.v + excluded.v, s = excluded.s".to_string(),
        3 => "DO UPDATE SET g = excluded.g WHERE u.v IS NOT NULL".to_string(),
        _ => "DO UPDATE SET s = 'up', v = NULL WHERE excluded.g = 1".to_string(),
    };
    format!(
        "INSERT INTO ukey AS u VALUES {} ON CONFLICT (k) {action}",
        proposed.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_on_conflict_match_postgresql() {
    let pg = Postgres::start();
    if !available(
        pg.is_some(),
        "FLASHSQL_REQUIRE_POSTGRES",
        "PostgreSQL (initdb, postgres) is not installed; install postgresql to compare MERGE with it",
    ) {
        return;
    }
    let pg = pg.expect("checked");
    let reference = pg.connect().await;
    let server = TestServer::start();
    let ours = server.connect().await;
    let cases: usize = std::env::var("FLASHSQL_MERGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seed: u64 = std::env::var("FLASHSQL_MERGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let table = "(k BIGINT, g BIGINT, v BIGINT, s TEXT)";
    for c in [&reference, &ours] {
        for t in ["tgt", "src", "ukey"] {
            c.batch_execute(&format!("CREATE TABLE {t} {table}"))
                .await
                .expect("create");
        }
    }
    reference
        .batch_execute("CREATE UNIQUE INDEX ukey_k ON ukey (k)")
        .await
        .expect("index");
    let (mut errors, mut counted) = (0, 0);
    for case in 0..cases {
        // Fresh rows for both servers: the same statements, so the same rows.
        let (n, unique) = (rng.random_range(0..12), rng.random_bool(0.5));
        let target = rows(&mut rng, n, 20, unique);
        let (n, unique) = (rng.random_range(0..10), rng.random_bool(0.6));
        let source = rows(&mut rng, n, 20, unique);
        let n = rng.random_range(0..10);
        let keyed = rows(&mut rng, n, 20, true);
        let mut setup = String::from("DELETE FROM tgt; DELETE FROM src; DELETE FROM ukey;");
        for (t, r) in [("tgt", &target), ("src", &source), ("ukey", &keyed)] {
            if !r.is_empty() {
                setup += &format!("INSERT INTO {t} VALUES {};", r.join(", "));
            }
        }
        let (sql, table) = if rng.random_bool(0.6) {
            (merge(&mut rng), "tgt")
        } else {
            (upsert(&mut rng), "ukey")
        };
        let mut results = Vec::new();
        for c in [&reference, &ours] {
            c.batch_execute(&setup).await.expect("setup");
            let done = outcome(c, &sql).await;
            results.push((done, contents(c, table).await));
        }
        assert_eq!(
            results[0], results[1],
            "case {case} (seed {seed}) differs from PostgreSQL (left):\n{setup}\n{sql}"
        );
        if results[0].0.ends_with("rows") {
            counted += 1;
        } else {
            errors += 1;
        }
    }
    eprintln!("{cases} statements agree with PostgreSQL: {counted} counted, {errors} errors");
    assert!(counted > cases / 2, "most statements succeed");
    assert!(errors > 0, "some statements fail (repeated matches)");
}

/// A service's upsert: prepared once, run with bound parameters (extended protocol, binary
/// parameters), in and out of a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_and_merges_take_parameters() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE plan (item_id BIGINT NOT NULL, discount DOUBLE PRECISION, version BIGINT)")
        .await
        .expect("create");
    let upsert = client
        .prepare(
            "INSERT INTO plan VALUES ($1, $2, $3) ON CONFLICT (item_id) \
             DO UPDATE SET discount = excluded.discount, version = plan.version + 1",
        )
        .await
        .expect("an upsert prepares");
    for round in 0..3i64 {
        for item in 0..4i64 {
            let n = client
                .execute(&upsert, &[&item, &(0.1 * round as f64), &1i64])
                .await
                .expect("upsert");
            assert_eq!(n, 1, "one row inserted or updated");
        }
    }
    let merge = client
        .prepare(
            "MERGE INTO plan p USING (SELECT $1::BIGINT AS item_id, $2::DOUBLE PRECISION AS discount) s \
             ON p.item_id = s.item_id \
             WHEN MATCHED AND s.discount IS NULL THEN DELETE \
             WHEN MATCHED THEN UPDATE SET discount = s.discount \
             WHEN NOT MATCHED THEN INSERT VALUES (s.item_id, s.discount, 0)",
        )
        .await
        .expect("a MERGE prepares");
    client
        .execute(&merge, &[&9i64, &Some(0.9f64)])
        .await
        .expect("insert");
    client
        .execute(&merge, &[&0i64, &None::<f64>])
        .await
        .expect("delete");
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute(&merge, &[&1i64, &Some(0.5f64)])
        .await
        .expect("update in a block");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let rows: Vec<(i64, f64, i64)> = client
        .query(
            "SELECT item_id, discount, version FROM plan ORDER BY item_id",
            &[],
        )
        .await
        .expect("read")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![(1, 0.2, 3), (2, 0.2, 3), (3, 0.2, 3), (9, 0.9, 0)],
        "three upsert rounds, one MERGE insert and delete; the rolled-back update is gone"
    );
}
