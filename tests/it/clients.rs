//! Drivers other than tokio-postgres, run as their users run them, against the real server.
//! Each skips (saying so) where its driver is not installed, unless FLASHSQL_REQUIRE_CLIENTS=1
//! (CI installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestServer, available};

fn project_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn python_has(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    available(
        found,
        "FLASHSQL_REQUIRE_CLIENTS",
        &format!("python3 cannot import {module}; pip install it"),
    )
}

/// Runs a client program (`program` with `args`) against a fresh server whose address
/// `env_var` gives as `url(server)`; the program must succeed and print `done`.
fn run_client(
    program: &str,
    args: &[&std::ffi::OsStr],
    env_var: &str,
    url: impl Fn(&TestServer) -> String,
    done: &str,
) {
    let server = TestServer::start();
    let out = Command::new(program)
        .args(args)
        .env(env_var, url(&server))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(done), "{stdout}");
}

/// psycopg 3: parameters and server-side prepares, executemany, binary results, COPY,
/// typed exceptions and named (server-side) cursors.
#[test]
fn psycopg() {
    if !python_has("psycopg") {
        return;
    }
    let script = project_file("tests/clients/psycopg_client.py");
    run_client(
        "python3",
        &[script.as_os_str()],
        "FLASHSQL_DSN",
        |s| {
            format!(
                "host={} port={} user=flashsql dbname=flashsql",
                s.addr.ip(),
                s.addr.port()
            )
        },
        "psycopg: ok",
    );
}

/// psycopg2, SQLAlchemy 2's engine and inspector, and pandas' read_sql/to_sql.
#[test]
fn sqlalchemy_and_pandas() {
    if !python_has("sqlalchemy") || !python_has("pandas") || !python_has("psycopg2") {
        return;
    }
    let script = project_file("tests/clients/sqlalchemy_client.py");
    run_client(
        "python3",
        &[script.as_os_str()],
        "FLASHSQL_URL",
        |s| {
            format!(
                "postgresql+psycopg2://flashsql@{}:{}/flashsql",
                s.addr.ip(),
                s.addr.port()
            )
        },
        "sqlalchemy: ok",
    );
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
    available(
        java && jar.exists(),
        "FLASHSQL_REQUIRE_CLIENTS",
        &format!(
            "java or pgjdbc ({}) is missing; apt install default-jdk-headless libpostgresql-jdbc-java",
            jar.display()
        ),
    )
    .then_some(jar)
}

/// pgjdbc: prepared statements past prepareThreshold (binary), fetch-size reads inside a
/// transaction, numeric and timestamp round trips, and the DatabaseMetaData calls BI tools
/// make (getTables/getColumns/getPrimaryKeys/getImportedKeys/getIndexInfo/getTypeInfo).
#[test]
fn jdbc() {
    let Some(jar) = pgjdbc_jar() else {
        return;
    };
    let program = project_file("tests/clients/JdbcClient.java");
    run_client(
        "java",
        &["-cp".as_ref(), jar.as_os_str(), program.as_os_str()],
        "FLASHSQL_JDBC_URL",
        |s| {
            format!(
                "jdbc:postgresql://{}:{}/flashsql",
                s.addr.ip(),
                s.addr.port()
            )
        },
        "jdbc: ok",
    );
}

/// node-postgres: parameterised queries, typed results, a named prepared statement, SQLSTATEs
/// on errors, and a pool of 10 clients. Its `pg` package is installed into
/// `tests/clients/node/node_modules` (`npm ci` in that folder).
#[test]
fn node_postgres() {
    let dir = project_file("tests/clients/node");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available(
        node && Path::new(&dir.join("node_modules/pg")).exists(),
        "FLASHSQL_REQUIRE_CLIENTS",
        "node or pg is missing; run npm ci in tests/clients/node",
    ) {
        return;
    }
    let script = dir.join("node_client.js");
    run_client(
        "node",
        &[script.as_os_str()],
        "FLASHSQL_NODE_URL",
        |s| {
            format!(
                "postgresql://flashsql@{}:{}/flashsql",
                s.addr.ip(),
                s.addr.port()
            )
        },
        "node: ok",
    );
}
