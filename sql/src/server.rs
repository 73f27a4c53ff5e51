//! The listener: accepts connections, gives each its own handlers, shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use flashsql_engine::Engine;
use pgwire::api::RandomPidSecretKeyGenerator;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::auth::ScramSecret;
use crate::handler::{CancelRegistry, Connection, Handlers};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, clients authenticate with SCRAM-SHA-256 as user `flashsql`.
    pub password: Option<String>,
}

/// What every connection shares.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub parser: Arc<PostgresCompatibilityParser>,
    pub secret: Option<ScramSecret>,
    pub pids: Arc<RandomPidSecretKeyGenerator>,
    pub cancels: CancelRegistry,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without a password: set --password-file or FLASHSQL_PASSWORD, or listen on a loopback address"
    )]
    PasswordRequired(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving, server: lets callers learn the port before serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    pub async fn bind(engine: Arc<Engine>, config: ServerConfig) -> Result<Server, ServeError> {
        if config.password.is_none() && !config.listen.ip().is_loopback() {
            return Err(ServeError::PasswordRequired(config.listen));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let shared = Arc::new(Shared {
            engine,
            parser: Arc::new(PostgresCompatibilityParser::new()),
            secret: config.password.as_deref().map(ScramSecret::new),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            cancels: CancelRegistry::default(),
        });
        Ok(Server { listener, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives open connections a
    /// grace period to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    debug!(%peer, "connection");
                    let handlers = Handlers(Connection::new(self.shared.clone()));
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        info!(
            open = connections.len(),
            "shutting down: no new connections"
        );
        let grace = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = connections.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    warn!(open = connections.len(), "closing connections still open after 5 s");
                    connections.shutdown().await;
                    break;
                }
            }
        }
        Ok(())
    }
}
