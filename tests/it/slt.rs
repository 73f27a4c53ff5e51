//! SQL behaviour in `.slt` files, each run twice: in-process through the same session type
//! the wire handlers use, and over the wire against the real server (tokio-postgres, simple
//! protocol, PostgreSQL's text format).
//!
//! The files' expected values are written as Arrow prints them. Over the wire a value is
//! PostgreSQL's text, so [`same_values`] compares the two forms of one value: numbers by
//! value, `t`/`true`, `{1,2}`/`[1, 2]`, a timestamp's space or `T`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use flashsql_engine::{Engine, EngineConfig};
use flashsql_sql::parser::CompatParser;
use flashsql_sql::{PgSession, SqlError, StatementResult};
use futures::StreamExt;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

struct InProcess {
    session: PgSession,
}

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct SltError {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl From<SqlError> for SltError {
    fn from(e: SqlError) -> Self {
        let c = flashsql_sql::errors::classify_sql(&e);
        SltError {
            code: c.code.to_string(),
            message: c.message,
        }
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError::from(SqlError::from(e)))?;
        for r in 0..b.num_rows() {
            rows.push(
                fmts.iter()
                    .zip(b.columns())
                    .map(|(f, c)| {
                        if c.is_null(r) {
                            "NULL".to_string()
                        } else {
                            let s = f.value(r).to_string();
                            if s.is_empty() {
                                "(empty)".to_string()
                            } else {
                                s
                            }
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait]
impl AsyncDB for InProcess {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mut statements = self.session.parse(sql)?;
        let last = statements.pop().ok_or_else(|| SltError {
            code: "42601".into(),
            message: "empty statement".into(),
        })?;
        for s in statements {
            self.session.execute(s, None).await?;
        }
        let (schema_len, batches) = match self.session.execute(last, None).await? {
            StatementResult::Rows(df) => {
                let n = df.schema().fields().len();
                let mut stream = df.execute_stream().await.map_err(SqlError::from)?;
                let mut batches = Vec::new();
                while let Some(b) = stream.next().await {
                    batches.push(b.map_err(SqlError::from)?);
                }
                (n, batches)
            }
            StatementResult::Batches(schema, batches) => (schema.fields().len(), batches),
            StatementResult::Command { rows, .. } => {
                return Ok(DBOutput::StatementComplete(rows.unwrap_or(0)));
            }
            _ => return Ok(DBOutput::StatementComplete(0)),
        };
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; schema_len],
            rows: render(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "flashsql"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// A connection to the real server.
pub(crate) struct Wire {
    pub(crate) client: tokio_postgres::Client,
}

#[async_trait]
impl AsyncDB for Wire {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        use tokio_postgres::SimpleQueryMessage;
        let messages = self.client.simple_query(sql).await.map_err(|e| SltError {
            code: crate::common::sqlstate(&e),
            message: e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string()),
        })?;
        // The last statement's result, as in-process.
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(d) => {
                    columns = Some(d.len());
                    rows.clear();
                }
                SimpleQueryMessage::Row(r) => {
                    columns.get_or_insert(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| match r.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "flashsql-wire"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Whether a row read over the wire (PostgreSQL's text) holds the values an expected line
/// writes in Arrow's form.
pub(crate) fn same_values(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(row, line)| {
            let got: Vec<String> = row
                .iter()
                .flat_map(|cell| {
                    arrow_form(cell)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            let want: Vec<String> = normalizer(line)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| same_token(g, w))
        })
}

/// A PostgreSQL text value written the way Arrow writes it: arrays in brackets with `, `,
/// timestamps with `T`.
fn arrow_form(cell: &str) -> String {
    let b = cell.as_bytes();
    if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' {
        return format!("{}T{}", &cell[..10], &cell[11..]);
    }
    if cell.starts_with('{') && cell.ends_with('}') {
        return format!("[{}]", cell[1..cell.len() - 1].replace(',', ", "));
    }
    cell.to_string()
}

/// Two tokens of a row: equal, the same boolean, or the same number (to 1e-12 relative)
/// with the same punctuation around it.
fn same_token(got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    let boolean = |s: &str| match s {
        "t" | "true" => Some(true),
        "f" | "false" => Some(false),
        _ => None,
    };
    if let (Some(a), Some(b)) = (boolean(got), boolean(want)) {
        return a == b;
    }
    fn core(s: &str) -> (&str, &str, &str) {
        let start = s.len() - s.trim_start_matches(['[', '{', '(']).len();
        let end = s.trim_end_matches([']', '}', ')', ',']).len().max(start);
        (&s[..start], &s[start..end], &s[end..])
    }
    let (gp, gc, gs) = core(got);
    let (wp, wc, ws) = core(want);
    match (gc.parse::<f64>(), wc.parse::<f64>()) {
        (Ok(a), Ok(b)) => {
            gp == wp
                && gs == ws
                && (a == b
                    || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
                    || (a.is_nan() && b.is_nan()))
        }
        _ => false,
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Runs one `.slt` file in-process over a fresh tiny world.
async fn run_slt(name: &str) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(format!("{name}.slt"));
    let tmp = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(tmp.path().join("data"));
    config.seed_world = Some((flashsql_datasets::Scale::Tiny, 7));
    let engine = Arc::new(Engine::open(config).await.unwrap());
    let parser = Arc::new(CompatParser::new());
    let mut runner = sqllogictest::Runner::new(|| {
        let engine = engine.clone();
        let parser = parser.clone();
        async move {
            Ok(InProcess {
                session: PgSession::new(&engine, parser, "flashsql", None)?,
            })
        }
    });
    runner
        .run_file_async(&file)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// Runs one `.slt` file over the wire against the real server over a fresh tiny world.
async fn run_slt_over_the_wire(name: &str) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(format!("{name}.slt"));
    let server = crate::common::TestServer::start();
    let url = server.url();
    let mut runner = sqllogictest::Runner::new(|| {
        let url = url.clone();
        async move {
            let client = crate::common::connect(&url).await.map_err(|e| SltError {
                code: crate::common::sqlstate(&e),
                message: e.to_string(),
            })?;
            Ok(Wire { client })
        }
    });
    runner.with_validator(same_values);
    runner
        .run_file_async(&file)
        .await
        .unwrap_or_else(|e| panic!("{} (over the wire): {e}", file.display()));
}

/// Two tests per file (in-process, and `wire_…` over the wire), so a failure names its
/// file and the others still run; `LISTED` holds the names for
/// [`every_slt_file_has_a_test`].
macro_rules! slt_tests {
    ($($name:ident),* $(,)?) => {
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[tokio::test]
            async fn $name() {
                run_slt(stringify!($name)).await;
            }
        )*
        mod wire {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run_slt_over_the_wire(stringify!($name)).await;
                }
            )*
        }
    };
}

slt_tests!(
    ddl, dml, merge, metrics, models, operators, optimize, read_only, sale, sequence, session,
    subqueries, vectors, world
);

#[test]
fn every_slt_file_has_a_test() {
    for file in slt_files() {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert!(
            LISTED.contains(&stem),
            "{} has no test: add {stem} to slt_tests! in tests/it/slt.rs",
            file.display()
        );
    }
}
