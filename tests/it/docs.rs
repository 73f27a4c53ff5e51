//! Every SQL example in the README and `docs/` runs, in order, against a real server through
//! psql, so the documentation cannot drift from the product.
//!
//! Markers, in HTML comments on the lines just before a block:
//! - `<!-- setup: SQL -->` runs SQL first (the tables an example assumes the reader has);
//! - `<!-- not run: reason -->` skips the block, and the reason is required.
//!
//! Each file gets its own server over a fresh tiny world; a file's blocks share it, so a
//! block may use what an earlier one created.

use std::path::{Path, PathBuf};

use crate::common::{TestServer, psql_available, psql_command};

/// One ```sql block and what precedes it.
struct Block {
    line: usize,
    sql: String,
    setup: Vec<String>,
    skip: Option<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```sql") {
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && !lines[j].trim_start().starts_with("```") {
                j += 1;
            }
            // Markers: the HTML comments directly above the fence.
            let mut setup = Vec::new();
            let mut skip = None;
            let mut k = i;
            while k > 0 {
                let above = lines[k - 1].trim();
                if above.is_empty() {
                    k -= 1;
                    continue;
                }
                let Some(comment) = above
                    .strip_prefix("<!--")
                    .and_then(|c| c.strip_suffix("-->"))
                else {
                    break;
                };
                let comment = comment.trim();
                if let Some(sql) = comment.strip_prefix("setup:") {
                    setup.insert(0, sql.trim().to_string());
                } else if let Some(reason) = comment.strip_prefix("not run:") {
                    skip = Some(reason.trim().to_string());
                }
                k -= 1;
            }
            out.push(Block {
                line: start,
                sql: lines[start..j.min(lines.len())].join("\n"),
                setup,
                skip,
            });
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Runs `sql` as a psql script (meta-commands such as `\\dt` included; a transcript's
/// `flashsql=> ` prompts are dropped), stopping at the first error; the error text on failure.
fn run(server: &TestServer, sql: &str) -> Result<(), String> {
    use std::io::Write;
    let script: String = sql
        .lines()
        .map(|l| l.strip_prefix("flashsql=> ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mut child = psql_command(server)
        .args(["-q", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs a document's blocks; the failures, each with its file and line.
fn check_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("reads the document");
    let blocks = blocks(&text);
    if blocks.is_empty() {
        return vec![];
    }
    let server = TestServer::start();
    let mut failures = Vec::new();
    let mut ran = 0;
    for b in &blocks {
        if let Some(reason) = &b.skip {
            assert!(
                !reason.is_empty(),
                "{}:{}: a block marked not run needs a reason",
                path.display(),
                b.line
            );
            continue;
        }
        for s in &b.setup {
            if let Err(e) = run(&server, s) {
                failures.push(format!("{}:{} (setup): {e}", path.display(), b.line));
            }
        }
        if let Err(e) = run(&server, &b.sql) {
            failures.push(format!("{}:{}: {e}", path.display(), b.line));
        }
        ran += 1;
    }
    eprintln!(
        "{}: {ran} of {} SQL blocks ran",
        path.display(),
        blocks.len()
    );
    failures
}

fn documents() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

#[test]
fn markers_are_read() {
    let text = "x\n<!-- setup: CREATE TABLE t (a INT) -->\n```sql\nSELECT 1;\n```\n\n\
                <!-- not run: needs a GPU -->\n\n```sql\nSELECT 2;\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].setup, vec!["CREATE TABLE t (a INT)".to_string()]);
    assert_eq!(b[0].sql, "SELECT 1;");
    assert_eq!(b[1].skip.as_deref(), Some("needs a GPU"));
}

#[test]
fn every_sql_example_in_the_docs_runs() {
    if !psql_available() {
        return;
    }
    let failures: Vec<String> = documents().iter().flat_map(|d| check_file(d)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
