//! Start-up and authentication: trust on loopback without a password, SCRAM-SHA-256 when a
//! password is configured. Both announce flashsql's `server_version`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::server::Shared;

/// The user of `--password-file`, and the name clients use without a password.
pub const USER: &str = "flashsql";
const SCRAM_ITERATIONS: usize = 4096;

pub fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = crate::compat::server_version();
    p.time_zone = "UTC".into();
    p.date_style = "ISO, MDY".into();
    p
}

/// The salted SCRAM secret, computed once at start-up.
#[derive(Clone)]
pub struct ScramSecret {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl std::fmt::Debug for ScramSecret {
    /// The salted password logs a client in: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(..)")
    }
}

impl ScramSecret {
    pub fn new(password: &str) -> Self {
        let salt: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }
}

#[derive(Debug)]
struct Secrets(Arc<crate::users::Logins>);

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        match login.user().and_then(|u| self.0.get(u)) {
            Some(l) => Ok(Password::new(
                Some(l.secret.salt.clone()),
                l.secret.salted.clone(),
            )),
            None => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!(
                    "password authentication failed for user \"{}\"",
                    login.user().unwrap_or("")
                ),
            )))),
        }
    }
}

/// Start-up without authentication (loopback only; the server refuses other addresses).
pub struct Trust {
    params: DefaultServerParameterProvider,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

#[async_trait]
impl StartupHandler for Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, key) = self.pids.generate(client);
            client.set_pid_and_secret_key(pid, key);
            finish_authentication(client, &self.params).await?;
        }
        Ok(())
    }
}

/// The start-up handler of one connection.
pub struct Startup {
    method: Method,
    /// Whether TLS is required, and failed logins per address.
    shared: Arc<Shared>,
}

enum Method {
    Trust(Trust),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

impl Startup {
    pub fn new(shared: &Arc<Shared>) -> Self {
        let method = if shared.logins.is_empty() {
            Method::Trust(Trust {
                params: parameters(),
                pids: shared.pids.clone(),
            })
        } else {
            let mut scram = ScramAuth::new(Arc::new(Secrets(shared.logins.clone())));
            scram.set_iterations(SCRAM_ITERATIONS);
            Method::Scram(
                SASLAuthStartupHandler::new(Arc::new(parameters()))
                    .with_pid_secret_key_generator(shared.pids.clone())
                    .with_scram(scram),
            )
        };
        Startup {
            method,
            shared: shared.clone(),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            // An address that failed to log in too often waits before it is heard.
            let addr = client.socket_addr().ip();
            let delay = self.shared.backoff.delay(addr);
            if !delay.is_zero() {
                tracing::warn!(%addr, ?delay, "slowing down logins after repeated failures");
                tokio::time::sleep(delay).await;
            }
            if self.shared.require_tls && !client.is_secure() {
                let user = startup.parameters.get("user").map_or("", String::as_str);
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28000".into(),
                    format!(
                        "connection for user \"{user}\" refused: this server accepts encrypted connections only (connect with sslmode=require)"
                    ),
                ))));
            }
        }
        match &self.method {
            Method::Trust(t) => t.on_startup(client, message).await,
            Method::Scram(s) => s.on_startup(client, message).await,
        }
    }
}
