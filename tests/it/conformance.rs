//! PostgreSQL conformance: DataFusion's own `pg_compat/*.slt` files (the records DataFusion
//! checks against PostgreSQL's answers) run over the wire against the real server, record
//! by record, so one failure does not hide the rest.
//!
//! The files come from the published `datafusion-sqllogictest` crate of the DataFusion
//! version flashsql is built on; `.ci/run` fetches it into `target/pg_compat`
//! (`FLASHSQL_PG_COMPAT_DIR` overrides). Without them the test skips, unless
//! `FLASHSQL_REQUIRE_PG_COMPAT` is set (CI sets it). It prints how many records pass and why
//! the others fail, and fails if fewer pass than [`PASSING`] (measured; raise it as
//! conformance improves). `FLASHSQL_PG_COMPAT_REPORT=FILE` also writes the list of failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use sqllogictest::{Condition, DefaultColumnType, Record};

use crate::common::{TestServer, available, connect, sqlstate};
use crate::slt::{SltError, Wire, same_values};

/// Records that passed when this was last measured (see `docs/conformance.md`).
const PASSING: usize = 35;

fn files() -> Option<Vec<PathBuf>> {
    let dir = std::env::var("FLASHSQL_PG_COMPAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pg_compat"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    (!files.is_empty()).then_some(files)
}

/// Why a record failed, in a few words (the first line of the error, numbers and quoted
/// names kept, so that the same cause groups together).
fn reason(error: &str) -> String {
    let mut lines = error.lines();
    let first = lines.next().unwrap_or_default();
    // A mismatch names its statement on the next line.
    let what = if first.contains("mismatch") {
        lines.next().unwrap_or_default()
    } else {
        ""
    };
    format!("{first} {what}").trim().chars().take(160).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_pg_compat_files_over_the_wire() {
    let files = files();
    if !available(
        files.is_some(),
        "FLASHSQL_REQUIRE_PG_COMPAT",
        "DataFusion's pg_compat files are not in target/pg_compat (see .ci/run to fetch them)",
    ) {
        return;
    }
    let mut report = String::new();
    let (mut passed, mut total) = (0, 0);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for file in files.expect("checked") {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let records = sqllogictest::parse_file::<DefaultColumnType>(&file)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let server = TestServer::start();
        let url = server.url();
        let mut runner = sqllogictest::Runner::new(|| {
            let url = url.clone();
            async move {
                let client = connect(&url).await.map_err(|e| SltError {
                    code: sqlstate(&e),
                    message: e.to_string(),
                })?;
                Ok(Wire { client })
            }
        });
        runner.with_validator(same_values);
        let (mut file_passed, mut file_total) = (0, 0);
        for record in records {
            let runs = match &record {
                Record::Statement { conditions, .. } | Record::Query { conditions, .. } => {
                    // Records for PostgreSQL itself (`onlyif postgres`) are not ours.
                    !conditions
                        .iter()
                        .any(|c| matches!(c, Condition::OnlyIf { .. }))
                }
                _ => false,
            };
            let result = runner.run_async(record).await;
            if !runs {
                continue;
            }
            file_total += 1;
            match result {
                Ok(_) => file_passed += 1,
                Err(e) => {
                    let text = e.display(false).to_string();
                    let why = reason(&text);
                    *reasons.entry(why.clone()).or_default() += 1;
                    let _ = writeln!(report, "- {name}: {why}");
                }
            }
        }
        eprintln!("{name}: {file_passed} of {file_total} records pass");
        passed += file_passed;
        total += file_total;
    }
    eprintln!("pg_compat over the wire: {passed} of {total} records pass");
    let mut by_reason: Vec<_> = reasons.into_iter().collect();
    by_reason.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (why, n) in by_reason.iter().take(40) {
        eprintln!("{n:5}  {why}");
    }
    if let Ok(path) = std::env::var("FLASHSQL_PG_COMPAT_REPORT") {
        std::fs::write(&path, &report).expect("report written");
    }
    assert!(
        passed >= PASSING,
        "{passed} records pass, fewer than the {PASSING} measured before"
    );
}
