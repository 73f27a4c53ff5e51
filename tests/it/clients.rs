//! Drivers other than tokio-postgres, run as their users run them, against the real server.
//! Each skips (saying so) where its driver is not installed, unless FLASHSQL_REQUIRE_CLIENTS=1
//! (CI installs them).

use std::path::PathBuf;
use std::process::Command;

use crate::common::TestServer;

fn python_has(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("FLASHSQL_REQUIRE_CLIENTS").is_err(),
            "python module {module} is required (FLASHSQL_REQUIRE_CLIENTS is set) but missing"
        );
        eprintln!("SKIPPED: python3 cannot import {module}; pip install it to run this test");
    }
    found
}

/// psycopg 3: parameters and server-side prepares, executemany, binary results, COPY,
/// typed exceptions and named (server-side) cursors.
#[test]
fn psycopg() {
    if !python_has("psycopg") {
        return;
    }
    let server = TestServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .env(
            "FLASHSQL_DSN",
            format!(
                "host={} port={} user=flashsql dbname=flashsql",
                server.addr.ip(),
                server.addr.port()
            ),
        )
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psycopg script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("psycopg: ok"), "{stdout}");
}
