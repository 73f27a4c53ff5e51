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

/// psycopg2, SQLAlchemy 2's engine and inspector, and pandas' read_sql/to_sql.
#[test]
fn sqlalchemy_and_pandas() {
    if !python_has("sqlalchemy") || !python_has("pandas") || !python_has("psycopg2") {
        return;
    }
    let server = TestServer::start();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sqlalchemy_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .env(
            "FLASHSQL_URL",
            format!(
                "postgresql+psycopg2://flashsql@{}:{}/flashsql",
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
        "SQLAlchemy script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sqlalchemy: ok"), "{stdout}");
}

/// Where pgjdbc's jar is (Debian's libpostgresql-jdbc-java), if it and a JDK are installed.
fn pgjdbc_jar() -> Option<PathBuf> {
    let jar = std::env::var_os("FLASHSQL_PGJDBC_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/postgresql.jar"));
    let java = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if java && jar.exists() {
        return Some(jar);
    }
    assert!(
        std::env::var("FLASHSQL_REQUIRE_CLIENTS").is_err(),
        "java and pgjdbc ({}) are required (FLASHSQL_REQUIRE_CLIENTS is set) but missing",
        jar.display()
    );
    eprintln!(
        "SKIPPED: java or pgjdbc missing; apt install libpostgresql-jdbc-java to run this test"
    );
    None
}

/// pgjdbc: prepared statements past prepareThreshold (binary), fetch-size reads inside a
/// transaction, numeric and timestamp round trips, and the DatabaseMetaData calls BI tools
/// make (getTables/getColumns/getPrimaryKeys/getImportedKeys/getIndexInfo/getTypeInfo).
#[test]
fn jdbc() {
    let Some(jar) = pgjdbc_jar() else {
        return;
    };
    let server = TestServer::start();
    let program = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/JdbcClient.java");
    let out = Command::new("java")
        .arg("-cp")
        .arg(&jar)
        .arg(&program)
        .arg(format!(
            "jdbc:postgresql://{}:{}/flashsql",
            server.addr.ip(),
            server.addr.port()
        ))
        .output()
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "JDBC program failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("jdbc: ok"), "{stdout}");
}

/// node-postgres: parameterised queries, typed results, a named prepared statement, SQLSTATEs
/// on errors, and a pool of 10 clients. Its `pg` package is installed into
/// `tests/clients/node/node_modules` (`npm install --prefix tests/clients/node`).
#[test]
fn node_postgres() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node");
    let ready = dir.join("node_modules/pg").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var("FLASHSQL_REQUIRE_CLIENTS").is_err(),
            "node and pg are required (FLASHSQL_REQUIRE_CLIENTS is set) but missing"
        );
        eprintln!(
            "SKIPPED: node or pg missing; run npm install --prefix tests/clients/node to run this test"
        );
        return;
    }
    let server = TestServer::start();
    let out = Command::new("node")
        .arg(dir.join("node_client.js"))
        .env(
            "FLASHSQL_NODE_URL",
            format!(
                "postgresql://flashsql@{}:{}/flashsql",
                server.addr.ip(),
                server.addr.port()
            ),
        )
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node program failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("node: ok"), "{stdout}");
}
