//! Generation speed of the embedded world and the server's start-up time.
//!
//! `cargo bench --bench startup` (release build). Prints a Markdown table; record the figures
//! in benches/RESULTS.md.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashsql_datasets::{Scale, generate};
use flashsql_engine::Store;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Starts the server on `dir` and returns the seconds until it reports ready.
fn start_server(dir: &std::path::Path, scale: &str) -> f64 {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flashsql"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--scale",
            scale,
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut ready = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains(" is ready on ") {
            ready = Some(t0.elapsed());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    ready.unwrap_or(Duration::MAX).as_secs_f64()
}

fn main() {
    let runs = 3;
    let mut gen_s = Vec::new();
    let mut events = 0;
    let mut rows_total = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let d = generate(Scale::Small, 42).expect("generate");
        gen_s.push(t0.elapsed().as_secs_f64());
        events = d
            .table("public", "events")
            .map(|t| t.num_rows())
            .unwrap_or(0);
        rows_total = d.tables.iter().map(|t| t.num_rows()).sum();
    }
    let d = generate(Scale::Small, 42).expect("generate");
    let mut write_s = Vec::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("store");
        let t0 = Instant::now();
        store.load_dataset(&d).expect("write");
        write_s.push(t0.elapsed().as_secs_f64());
    }
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        cold.push(start_server(&dir, "small"));
        warm.push(start_server(&dir, "small"));
    }
    let g = median(gen_s);
    println!("| measurement (scale small, seed 42, median of {runs}) | value |");
    println!("|---|---|");
    println!(
        "| generate the world in memory ({rows_total} rows, {events} events) | {g:.2} s ({:.1} M events/s) |",
        events as f64 / g / 1e6
    );
    println!(
        "| write it as Parquet tables (zstd, fsync) | {:.2} s |",
        median(write_s)
    );
    println!(
        "| server cold start on an empty directory (generate + write + listen) | {:.2} s |",
        median(cold)
    );
    println!(
        "| server warm start on the generated directory | {:.3} s |",
        median(warm)
    );
}
