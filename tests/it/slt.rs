//! SQL behaviour in `.slt` files, run in-process through the same session type the wire
//! handlers use (so the files can later run against the wire endpoint unchanged).

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
struct SltError {
    code: String,
    message: String,
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

/// One test per file, so a failure names its file and the others still run; `LISTED` holds
/// their names for [`every_slt_file_has_a_test`].
macro_rules! slt_tests {
    ($($name:ident),* $(,)?) => {
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[tokio::test]
            async fn $name() {
                run_slt(stringify!($name)).await;
            }
        )*
    };
}

slt_tests!(
    ddl, dml, merge, metrics, models, optimize, read_only, sale, sequence, session, subqueries,
    vectors, world
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
