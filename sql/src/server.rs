//! The listener: accepts connections (up to a cap), gives each its own handlers, notices
//! clients that went away, and shuts down gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flashsql_engine::Engine;
use pgwire::api::RandomPidSecretKeyGenerator;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::handler::{CancelRegistry, Connection, Handlers};
use crate::parser::CompatParser;
use crate::users::{Logins, Role, UserDef};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, clients may authenticate with SCRAM-SHA-256 as user `flashsql`.
    pub password: Option<String>,
    /// Further users (`--users-file`), each with a password and a role.
    pub users: Vec<crate::users::UserDef>,
    /// Connections served at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// How long a client may take to connect and log in before its socket is closed.
    pub authentication_timeout: Duration,
    /// Certificate chain and private key (PEM files) for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Accept plain-text connections with a password on a non-loopback address.
    pub allow_insecure: bool,
}

/// PostgreSQL's default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// How long connections may finish their work after a shutdown signal before they are
/// terminated with SQLSTATE 57P01.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every connection shares.
pub struct Shared {
    /// Whether a connection must be encrypted to log in.
    pub require_tls: bool,
    /// Failed logins per address (password guessing is slowed down).
    pub backoff: crate::auth_backoff::AuthBackoff,
    pub engine: Arc<Engine>,
    pub parser: Arc<CompatParser>,
    /// Who may log in; empty when no password is asked (loopback only).
    pub logins: Arc<Logins>,
    pub pids: Arc<RandomPidSecretKeyGenerator>,
    pub cancels: CancelRegistry,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without a password: set --password-file or FLASHSQL_PASSWORD, or listen on a loopback address"
    )]
    PasswordRequired(SocketAddr),
    #[error(
        "refusing plain-text passwords on {0}: give --tls-cert and --tls-key, or --allow-insecure to accept unencrypted connections"
    )]
    TlsRequired(SocketAddr),
    #[error("user \"flashsql\" is given both by the password file and by the users file: keep one")]
    UserTwice,
    #[error("TLS: {0}")]
    Tls(String),
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
    max_connections: usize,
    authentication_timeout: Duration,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

/// An open connection, as the listener keeps it: its handlers, and a second handle on its
/// socket to notice a client that went away and to close a connection stuck at shutdown.
struct Open {
    connection: std::sync::Weak<Connection>,
    socket: std::net::TcpStream,
}

impl Open {
    /// Tells the client why its connection ends (a FATAL error), and closes the socket.
    fn close_with(&self, code: &str, message: &str) {
        use std::io::Write;
        let _ = (&self.socket).write_all(&crate::wire::fatal_bytes(code, message));
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl Server {
    pub async fn bind(engine: Arc<Engine>, config: ServerConfig) -> Result<Server, ServeError> {
        let public = !config.listen.ip().is_loopback();
        let mut users = config.users.clone();
        if let Some(password) = &config.password {
            if users.iter().any(|u| u.name == crate::auth::USER) {
                return Err(ServeError::UserTwice);
            }
            users.push(UserDef {
                name: crate::auth::USER.to_string(),
                role: Role::ReadWrite,
                password: password.clone(),
            });
        }
        if users.is_empty() && public {
            return Err(ServeError::PasswordRequired(config.listen));
        }
        if public && config.tls.is_none() && !config.allow_insecure {
            return Err(ServeError::TlsRequired(config.listen));
        }
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let shared = Arc::new(Shared {
            require_tls: public && tls.is_some() && !config.allow_insecure,
            backoff: Default::default(),
            engine,
            parser: Arc::new(CompatParser::new()),
            logins: Arc::new(Logins::new(&users)),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            cancels: CancelRegistry::default(),
        });
        Ok(Server {
            listener,
            shared,
            max_connections: config.max_connections.max(1),
            authentication_timeout: config.authentication_timeout,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives open connections
    /// [`SHUTDOWN_GRACE`] to finish and terminates the rest with SQLSTATE 57P01.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let mut connections = JoinSet::new();
        let mut open: HashMap<tokio::task::Id, Open> = HashMap::new();
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
                    if connections.len() >= self.max_connections {
                        warn!(%peer, max = self.max_connections, "refusing a connection: too many clients");
                        refuse(socket, "53300", "sorry, too many clients already");
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    debug!(%peer, "connection");
                    let (watch, keep) = match second_handle(&socket)
                        .and_then(|k| Ok((k.try_clone()?, k)))
                    {
                        Ok(handles) => handles,
                        Err(e) => {
                            warn!(%peer, error = %e, "cannot watch a connection; refusing it");
                            continue;
                        }
                    };
                    let connection = Connection::new(self.shared.clone());
                    let weak = Arc::downgrade(&connection);
                    let handlers = Handlers(connection.clone());
                    let stop = connection.shutdown.clone();
                    let tls = self.tls.clone();
                    let login_within = self.authentication_timeout;
                    let handle = connections.spawn(async move {
                        let watcher = AbortOnDropHandle::new(tokio::spawn(cancel_when_gone(watch, Arc::downgrade(&connection))));
                        drop(connection);
                        if let Err(e) = crate::wire::serve(socket, peer, tls, handlers, stop, login_within).await {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                        drop(watcher);
                    });
                    open.insert(handle.id(), Open { connection: weak, socket: keep });
                }
                Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                    ended(&mut open, done);
                }
            }
        }
        info!(
            open = connections.len(),
            "shutting down: no new connections"
        );
        if !drain(&mut connections, &mut open, SHUTDOWN_GRACE).await {
            warn!(
                open = connections.len(),
                "terminating connections still open after the grace period"
            );
            terminate(&open);
            // Each connection's loop says why (FATAL 57P01) and closes; a moment for them.
            if !drain(&mut connections, &mut open, Duration::from_secs(1)).await {
                // One stuck in work that nothing interrupts loses its socket without a word:
                // plain bytes written under a TLS stream would be garbage.
                for o in open.values() {
                    let _ = o.socket.shutdown(std::net::Shutdown::Both);
                }
                connections.shutdown().await;
            }
        }
        Ok(())
    }
}

/// Forgets a connection that ended. One whose task panicked (a bug: malformed messages are
/// refused before the protocol library decodes them, see `frames`) gets a FATAL 08P01
/// before its socket closes; no other connection notices.
fn ended(
    open: &mut HashMap<tokio::task::Id, Open>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    match done {
        Ok((id, ())) => {
            open.remove(&id);
        }
        Err(e) => {
            if let Some(o) = open.remove(&e.id())
                && e.is_panic()
            {
                warn!("closing a connection after a malformed message");
                o.close_with("08P01", "invalid frontend message");
            }
        }
    }
}

/// The TLS acceptor for a certificate chain and key in PEM files.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("private key {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// A second handle on a connection's socket (a duplicated descriptor).
fn second_handle(socket: &tokio::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    Ok(std::net::TcpStream::from(
        socket.as_fd().try_clone_to_owned()?,
    ))
}

/// Says why a connection is not served, and closes it.
fn refuse(socket: tokio::net::TcpStream, code: &str, message: &str) {
    let bytes = crate::wire::fatal_bytes(code, message);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut socket = socket;
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&bytes)).await;
        let _ = socket.shutdown().await;
    });
}

/// Cancels the connection's running statement when its client goes away (the socket reaches
/// end of file or fails), so that no work outlives the client that asked for it.
async fn cancel_when_gone(socket: std::net::TcpStream, connection: std::sync::Weak<Connection>) {
    let Ok(socket) = tokio::net::TcpStream::from_std(socket) else {
        return;
    };
    let mut probe = [0u8; 1];
    loop {
        if socket.readable().await.is_err() {
            break;
        }
        match socket.peek(&mut probe).await {
            // Data the connection has not read yet (a pipelined message): look again later.
            Ok(n) if n > 0 => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(_) | Err(_) => break,
        }
    }
    if let Some(c) = connection.upgrade() {
        debug!("client went away: cancelling its statement");
        c.cancel();
    }
}

/// Waits up to `limit` for every connection to end; whether they all did.
async fn drain(
    connections: &mut JoinSet<()>,
    open: &mut HashMap<tokio::task::Id, Open>,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = connections.join_next_with_id() => match next {
                None => return true,
                Some(done) => ended(open, done),
            },
            _ = &mut deadline => return false,
        }
    }
}

/// Ends every open connection the way PostgreSQL's fast shutdown does: a running statement
/// fails with 57P01, then the connection's loop sends a FATAL 57P01 and closes.
fn terminate(open: &HashMap<tokio::task::Id, Open>) {
    for o in open.values() {
        if let Some(c) = o.connection.upgrade() {
            c.terminate();
        }
    }
}
