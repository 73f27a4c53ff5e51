//! The PostgreSQL wire-protocol front door of flashsql.
//!
//! [`server::Server`] accepts connections; each gets a [`session::PgSession`] over the shared
//! engine. The same session type runs SQL in-process (the SQL logic tests use it), so the
//! wire and the in-process paths cannot drift apart.

pub mod auth;
pub mod auth_backoff;
pub mod colnames;
pub mod compat;
pub mod complexity;
pub mod copy;
pub mod cursors;
pub mod errors;
pub mod frames;
pub mod handler;
pub mod load_call;
pub mod merge;
pub mod named_arguments;
pub mod parser;
pub mod pg_catalog;
pub mod pg_text;
pub mod point_lookup;
pub mod portal_stream;
pub mod protocol_checks;
pub mod read_only;
pub mod rewrite;
pub mod scalar_subquery;
pub mod sendable;
pub mod server;
pub mod session;
pub mod settings;
pub mod storage_params;
pub mod users;
pub mod wire;

pub use errors::SqlError;
pub use server::{ServeError, Server, ServerConfig};
pub use session::{PgSession, StatementResult};

/// An in-process session over an empty data directory, for the crate's own tests (with
/// the engine, kept open as long as the caller holds it).
#[cfg(test)]
pub(crate) async fn test_session() -> (
    tempfile::TempDir,
    flashsql_engine::Engine,
    session::PgSession,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = flashsql_engine::EngineConfig::new(dir.path().join("data"));
    config.seed_world = None;
    let engine = flashsql_engine::Engine::open(config).await.expect("engine");
    let parser = std::sync::Arc::new(parser::CompatParser::new());
    let session = session::PgSession::new(&engine, parser, "flashsql", None).expect("session");
    (dir, engine, session)
}
