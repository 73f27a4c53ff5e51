//! The protocol fuzzer: valid frontend conversations (startup, simple and extended queries,
//! COPY, SSL and cancel requests) with one to four random mutations each — flipped bits,
//! lengths and counts overwritten with edge values, bytes inserted, cut or repeated — sent on
//! raw sockets, four at a time, to a server under a memory cap. After its bytes, each
//! connection half-closes: the server must close it (after whatever errors it sends) within
//! a few seconds, never hang, never die, and still answer `SELECT 1` from a normal client.
//! Runs for `FLASHSQL_FUZZ_SECS` from `FLASHSQL_FUZZ_SEED`, like the SQL fuzzer.

use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, scalar_i64};
use crate::frontend::{
    bind, copy_data, copy_done, describe_portal, execute, message, parse, query, request, startup,
    sync, terminate,
};
use crate::fuzz_sql::{budget, peak_rss_mib, seed};

/// The conversations mutations start from, and where each one's startup packet ends (the
/// mutations mostly land after it, so that they reach an authenticated session).
fn corpus() -> Vec<(Vec<u8>, usize)> {
    let s = startup();
    let after = s.len();
    let with = |rest: Vec<Vec<u8>>| {
        let mut out = s.clone();
        for m in rest {
            out.extend(m);
        }
        (out, after)
    };
    let param: &[u8] = b"41";
    let cancel = {
        let mut out = 16i32.to_be_bytes().to_vec();
        out.extend(80_877_102i32.to_be_bytes());
        out.extend(1234i32.to_be_bytes());
        out.extend(5678i32.to_be_bytes());
        out
    };
    let mut ssl_then_startup = request(80_877_103);
    ssl_then_startup.extend(s.clone());
    ssl_then_startup.extend(query("SELECT 1"));
    vec![
        with(vec![query("SELECT 1"), terminate()]),
        with(vec![query(
            "SELECT count(*), max(ts) FROM events; SELECT item_id FROM items LIMIT 3",
        )]),
        with(vec![
            parse("", "SELECT $1::BIGINT + 1"),
            bind("", &[0], &[Some(param)], &[1]),
            describe_portal(),
            execute(0),
            sync(),
        ]),
        with(vec![
            parse("s1", "SELECT user_id FROM events WHERE user_id = $1"),
            bind("s1", &[1], &[Some(&7i64.to_be_bytes())], &[]),
            execute(2),
            execute(-1),
            sync(),
            parse("s1", "SELECT 2"),
            sync(),
        ]),
        with(vec![
            query("CREATE TABLE IF NOT EXISTS fw (k BIGINT, s TEXT)"),
            query("COPY fw FROM STDIN"),
            copy_data(b"1\tx\n2\ty\n"),
            copy_data(b"3\t\\N\n"),
            copy_done(),
            query("SELECT count(*) FROM fw"),
        ]),
        with(vec![
            query("BEGIN"),
            query("INSERT INTO fw VALUES (9, 'z')"),
            message(b'H', &[]),
            query("COMMIT"),
        ]),
        (cancel, 0),
        (ssl_then_startup, 8),
        (request(80_877_104), 0),
    ]
}

const EDGE_I32: [i32; 10] = [0, -1, 1, 3, 4, 5, i32::MAX, i32::MIN, 65_536, 1 << 30];
const EDGE_I16: [i16; 6] = [0, -1, -5, 7, i16::MAX, i16::MIN];

fn mutate(rng: &mut ChaCha8Rng, input: &mut Vec<u8>, protect: usize) {
    let from = if rng.random_bool(0.8) {
        protect.min(input.len())
    } else {
        0
    };
    if input.len() <= from {
        return;
    }
    let at = rng.random_range(from..input.len());
    match rng.random_range(0..8) {
        0 => input[at] ^= 1 << rng.random_range(0..8),
        1 => input[at] = rng.random(),
        2 => {
            let v = *EDGE_I32.choose(rng).expect("edges");
            for (i, b) in v.to_be_bytes().iter().enumerate() {
                if let Some(x) = input.get_mut(at + i) {
                    *x = *b;
                }
            }
        }
        3 => {
            let v = *EDGE_I16.choose(rng).expect("edges");
            for (i, b) in v.to_be_bytes().iter().enumerate() {
                if let Some(x) = input.get_mut(at + i) {
                    *x = *b;
                }
            }
        }
        4 => {
            let n = rng.random_range(1..16);
            let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(at..at, junk);
        }
        5 => {
            let end = rng.random_range(at..=input.len());
            input.drain(at..end);
        }
        6 => input.truncate(at),
        _ => {
            let end = rng.random_range(at..=input.len().min(at + 64));
            let piece = input[at..end].to_vec();
            input.splice(at..at, piece);
        }
    }
}

/// What happened to one input.
enum Outcome {
    /// The server closed the connection (after any replies) within the time allowed.
    Closed,
    /// Still open, nothing more coming, after the time allowed.
    Hung,
}

async fn send(addr: std::net::SocketAddr, input: &[u8]) -> Outcome {
    let Ok(mut socket) = TcpStream::connect(addr).await else {
        return Outcome::Closed;
    };
    // The server may close before reading everything: a failed write is a closed connection.
    let _ = socket.write_all(input).await;
    let _ = socket.shutdown().await;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Outcome::Hung,
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            },
        }
    }
}

#[tokio::test]
async fn mutated_protocol_messages_never_take_the_server_down() {
    let mut server = TestServer::start_with_args(&["--memory-mb", "256"]);
    let corpus = corpus();
    let (seed, budget) = (seed(), budget());
    let started = Instant::now();
    let until = started + budget;
    let addr = server.addr;
    let url = server.url();
    let tasks: Vec<_> = (0..4u64)
        .map(|w| {
            let corpus = corpus.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000).wrapping_add(w));
                let (mut inputs, mut hung) = (0u64, Vec::new());
                while Instant::now() < until {
                    let (base, protect) = corpus.choose(&mut rng).expect("corpus");
                    let mut input = base.clone();
                    for _ in 0..rng.random_range(1..=4) {
                        mutate(&mut rng, &mut input, *protect);
                    }
                    inputs += 1;
                    if let Outcome::Hung = send(addr, &input).await {
                        hung.push(format!("worker {w} input {inputs}: {input:02x?}"));
                    }
                    if inputs % 50 == 0 {
                        let healthy = crate::common::connect(&url).await.expect("connect");
                        assert_eq!(
                            scalar_i64(&healthy, "SELECT 1::BIGINT").await,
                            1,
                            "a normal client is answered after input {inputs} of worker {w}"
                        );
                    }
                }
                (inputs, hung)
            })
        })
        .collect();
    let (mut inputs, mut hung) = (0u64, Vec::new());
    for t in tasks {
        let (n, h) = t.await.expect("worker");
        inputs += n;
        hung.extend(h);
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "protocol fuzzer, seed {seed}: {inputs} inputs in {elapsed:.0} s ({:.1}/s), peak RSS \
         {} MiB",
        inputs as f64 / elapsed,
        peak_rss_mib(server.child.id())
    );
    assert!(server.alive(), "the server is running");
    let fresh = server.connect().await;
    assert_eq!(scalar_i64(&fresh, "SELECT 1::BIGINT").await, 1);
    drop(fresh);
    let (status, log) = server.stop_with_log();
    assert!(
        hung.is_empty(),
        "connections not closed 20 s after their input ended:\n{}",
        hung.join("\n")
    );
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panic")).collect();
    assert!(panics.is_empty(), "panics logged:\n{}", panics.join("\n"));
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}");
}
