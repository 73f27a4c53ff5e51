//! Starting the real `flashsql` binary on an ephemeral port over a `tiny` world.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A running server process; killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
    /// Everything the server writes to stderr, sent when the process ends.
    log: Option<mpsc::Receiver<String>>,
}

impl TestServer {
    /// A fresh tiny world in a new temporary directory.
    pub fn start() -> TestServer {
        Self::start_with_args(&[])
    }

    /// A fresh tiny world in a new temporary directory, served with extra arguments (e.g.
    /// `--memory-mb 64`).
    pub fn start_with_args(args: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut s = Self::try_start(&tmp.path().join("data"), &[], args).expect("server starts");
        s._tmp = Some(tmp);
        s
    }

    /// A server over `dir` (generated as a tiny world if empty) with extra arguments and
    /// environment.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> TestServer {
        Self::try_start(dir, env, &[]).expect("server starts")
    }

    pub fn try_start(
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<TestServer, String> {
        let mut cmd = Command::new(server_binary());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--scale", "tiny", "--seed", "7"])
            .args(if args.contains(&"--listen") {
                vec![]
            } else {
                vec!["--listen", "127.0.0.1:0"]
            })
            .args(args)
            .env_remove("FLASHSQL_PASSWORD")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" is ready on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
            }
            let _ = etx.send(all);
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(TestServer {
                child,
                addr: addr
                    .parse()
                    .map_err(|e| format!("bad address {addr}: {e}"))?,
                _tmp: None,
                log: Some(erx),
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default())
            }
        }
    }

    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=flashsql dbname=flashsql",
            self.addr.ip(),
            self.addr.port()
        )
    }

    pub async fn connect(&self) -> Client {
        connect(&self.url()).await.expect("connect")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// Sends SIGTERM, waits for the exit and returns it with what the server logged.
    pub fn stop_with_log(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        let log = self
            .log
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(10)).ok())
            .unwrap_or_default();
        (status, log)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// The single BIGINT a query returns.
pub async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Whether a client tool a test needs is there. When it is not, the test skips with a
/// message — unless `require_var` is set (CI sets it), where a missing tool fails the test.
pub fn available(found: bool, require_var: &str, missing: &str) -> bool {
    if !found {
        assert!(
            std::env::var(require_var).is_err(),
            "{missing} ({require_var} is set, so this is a failure)"
        );
        eprintln!("SKIPPED: {missing}");
    }
    found
}

/// Whether psql is installed (required where FLASHSQL_REQUIRE_PSQL is set).
pub fn psql_available() -> bool {
    available(
        Command::new("psql").arg("--version").output().is_ok(),
        "FLASHSQL_REQUIRE_PSQL",
        "psql is not installed; install postgresql-client to run this test",
    )
}

/// psql connected to `server` as user flashsql, stopping at the first error.
pub fn psql_command(server: &TestServer) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-h"])
        .arg(server.addr.ip().to_string())
        .args(["-p", &server.addr.port().to_string()])
        .args(["-U", "flashsql", "-d", "flashsql", "-v", "ON_ERROR_STOP=1"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD");
    cmd
}

/// The server the tests start: this build's, or `FLASHSQL_SERVER_BINARY` (so that
/// `scripts/fuzz.sh` can fuzz the release binary without a release build of the tests).
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("FLASHSQL_SERVER_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashsql")))
}

/// The rows of a simple-protocol answer, as text (None for NULL).
pub fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Every row of `sql` as text, for comparing answers: a row's values joined by `|`, NULL
/// as `NULL`.
pub async fn answer(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .expect("query")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}
