//! The SQL fuzzer: statements from [`crate::sql_grammar`] sent by two sessions at once, over
//! both protocols, to a server under a memory cap (`--memory-mb 256`) with a 3 s
//! `statement_timeout`. Whatever a statement does, it is answered (rows or an error with a
//! SQLSTATE) within the timeout plus a margin, no connection dies, no panic is logged, the
//! server still answers `SELECT 1` and exits cleanly at the end.
//!
//! It runs for `FLASHSQL_FUZZ_SECS` seconds (20 by default, the CI run) from seed
//! `FLASHSQL_FUZZ_SEED` (1); `scripts/fuzz.sh` runs it longer on the release build. A failure
//! prints the statement and its worker, seed and index, so it can be replayed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::common::{TestServer, connect, scalar_i64};
use crate::sql_grammar::{SqlGen, setup};

/// How long the fuzzers run, from `FLASHSQL_FUZZ_SECS`.
pub fn budget() -> Duration {
    let secs = std::env::var("FLASHSQL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    Duration::from_secs(secs)
}

/// The fuzzers' seed, from `FLASHSQL_FUZZ_SEED`.
pub fn seed() -> u64 {
    std::env::var("FLASHSQL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The server's peak resident memory (VmHWM) in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// The most the server's peak memory may reach under `--memory-mb 256`: the pool, the
/// world's tables and models, and what is allocated outside the pool by design (one batch's
/// results of a size-limited function, at most 256 MiB, on each of two sessions).
pub const PEAK_RSS_LIMIT_MIB: u64 = 1536;

const STATEMENT_TIMEOUT: &str = "3s";
/// How long past the statement timeout an answer may take (a debug build on two busy cores
/// still answers a cancelled statement in well under this).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Tally {
    inputs: u64,
    ok: u64,
    codes: BTreeMap<String, u64>,
    /// XX000 messages (first 160 characters) with a count and one statement that caused it.
    internal: BTreeMap<String, (u64, String)>,
    /// Statements after which the connection was gone, or that got no answer in time.
    lost: Vec<String>,
    hung: Vec<String>,
    /// Statements during which the server's peak memory grew by more than 256 MiB.
    grew: Vec<String>,
}

async fn session(server_url: &str) -> Client {
    let client = connect(server_url).await.expect("connect");
    client
        .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        .await
        .expect("statement_timeout");
    client
}

/// What each worker is running now: growth of the server's shared peak is seen by whichever
/// worker looks, so a growth names every worker's statement of the moment.
type Running = Arc<Mutex<Vec<String>>>;

async fn worker(
    url: String,
    pid: u32,
    worker: u64,
    seed: u64,
    until: Instant,
    running: Running,
) -> Tally {
    let mut generator = SqlGen::new(seed.wrapping_mul(1_000).wrapping_add(worker));
    let mut client = session(&url).await;
    let mut tally = Tally::default();
    let mut index = 0u64;
    while Instant::now() < until {
        let sql = generator.statement();
        index += 1;
        if let Ok(dir) = std::env::var("FLASHSQL_FUZZ_DUMP") {
            let _ = std::fs::write(format!("{dir}/w{worker}-{index:06}.sql"), &sql);
        }
        tally.inputs += 1;
        let extended = index.is_multiple_of(3);
        let shown: String = sql.chars().take(400).collect();
        let label = format!(
            "worker {worker} input {index} ({}): {shown}",
            if extended { "extended" } else { "simple" }
        );
        if let Ok(mut now) = running.lock() {
            now[worker as usize].clone_from(&label);
        }
        let peak_before = peak_rss_mib(pid);
        let answer = tokio::time::timeout(ANSWER_WITHIN, async {
            if extended {
                client.query(sql.as_str(), &[]).await.map(|_| ())
            } else {
                client.simple_query(&sql).await.map(|_| ())
            }
        })
        .await;
        let peak_after = peak_rss_mib(pid);
        if peak_after > peak_before + 256 {
            let others = running
                .lock()
                .map(|now| {
                    now.iter()
                        .enumerate()
                        .filter(|(w, _)| *w as u64 != worker)
                        .map(|(_, s)| format!("\n    while {s}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            tally.grew.push(format!(
                "{peak_before} -> {peak_after} MiB: {label}{others}"
            ));
        }
        match answer {
            Ok(Ok(())) => tally.ok += 1,
            Ok(Err(e)) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code().to_string();
                    if code == "XX000" {
                        let key: String = db.message().chars().take(160).collect();
                        let entry = tally
                            .internal
                            .entry(key)
                            .or_insert_with(|| (0, label.clone()));
                        entry.0 += 1;
                    }
                    if code == "25P02" {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    *tally.codes.entry(code).or_default() += 1;
                }
                // The driver refused to send it (a NUL in the text, a parameter count it
                // checks itself): the connection is fine.
                None if !client.is_closed() => {}
                None => {
                    tally.lost.push(format!("{label}: {e}"));
                    client = session(&url).await;
                }
            },
            Err(_) => {
                tally.hung.push(label.clone());
                client = session(&url).await;
            }
        }
    }
    tally
}

#[tokio::test]
async fn random_sql_never_takes_the_server_down() {
    let mut server = TestServer::start_with_args(&["--memory-mb", "256"]);
    let client = server.connect().await;
    for sql in setup() {
        client.batch_execute(&sql).await.expect("scratch tables");
    }
    let (seed, budget) = (seed(), budget());
    let started = Instant::now();
    let until = started + budget;
    let url = server.url();
    let running: Running = Arc::new(Mutex::new(vec![String::new(); 2]));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            tokio::spawn(worker(
                url.clone(),
                server.child.id(),
                w,
                seed,
                until,
                running.clone(),
            ))
        })
        .collect();
    let mut total = Tally::default();
    for w in workers {
        let t = match w.await {
            Ok(t) => t,
            Err(e) => {
                // A worker that could not go on (the server refused a new connection): the
                // server's own last words say why.
                let (status, log) = server.stop_with_log();
                let tail: String = log
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("at ") && !l.contains(": <"))
                    .rev()
                    .take(60)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("a worker failed ({e}); server {status:?}, its log ends:\n{tail}");
            }
        };
        total.inputs += t.inputs;
        total.ok += t.ok;
        for (c, n) in t.codes {
            *total.codes.entry(c).or_default() += n;
        }
        for (m, (n, example)) in t.internal {
            total.internal.entry(m).or_insert((0, example)).0 += n;
        }
        total.lost.extend(t.lost);
        total.hung.extend(t.hung);
        total.grew.extend(t.grew);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib(server.child.id());
    eprintln!(
        "SQL fuzzer, seed {seed}: {} statements in {elapsed:.0} s ({:.1}/s), {} answered \
         with rows, peak RSS {peak} MiB",
        total.inputs,
        total.inputs as f64 / elapsed,
        total.ok
    );
    eprintln!("SQLSTATEs: {:?}", total.codes);
    for g in &total.grew {
        eprintln!("peak memory grew: {g}");
    }
    for (message, (n, example)) in &total.internal {
        eprintln!("XX000 x{n}: {message}\n    e.g. {example}");
    }

    assert!(server.alive(), "the server is running");
    let fresh = server.connect().await;
    assert_eq!(scalar_i64(&fresh, "SELECT 1::BIGINT").await, 1);
    drop((fresh, client));
    let (status, log) = server.stop_with_log();
    assert!(
        total.hung.is_empty(),
        "statements without an answer within {STATEMENT_TIMEOUT} + {ANSWER_WITHIN:?}:\n{}",
        total.hung.join("\n")
    );
    assert!(
        total.lost.is_empty(),
        "statements that cost their connection:\n{}",
        total.lost.join("\n")
    );
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panic")).collect();
    assert!(panics.is_empty(), "panics logged:\n{}", panics.join("\n"));
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}");
    assert!(
        peak <= PEAK_RSS_LIMIT_MIB,
        "peak memory {peak} MiB under --memory-mb 256; grew during:\n{}",
        total.grew.join("\n")
    );
    assert!(
        total.internal.is_empty(),
        "errors without a proper SQLSTATE (XX000): {:?}",
        total.internal.keys().collect::<Vec<_>>()
    );
}
