//! One connection on the wire: the SSL/GSSAPI requests, TLS, and the message loop.
//!
//! This is pgwire's `process_socket` with the socket's bytes going through [`Checked`]
//! before pgwire decodes them, and with the answers PostgreSQL gives where pgwire gives none:
//! - a startup packet whose length is impossible (say 3) is answered at once with FATAL
//!   08P01, instead of the connection waiting out the startup timeout;
//! - a malformed message gets FATAL 08P01 (pgwire's decoder would panic on many), an unknown
//!   message type too (pgwire closed the socket without a word), and invalid UTF-8 an ERROR
//!   22021 the session survives (pgwire replaced the bytes and ran the statement);
//! - pgwire never decodes a byte before it is checked, TLS negotiation included.
//!
//! The message dispatch itself is pgwire's (`process_message`, `process_error`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use pgwire::api::{
    ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::frames::{Checked, MAX_STARTUP_LENGTH, Violation};
use crate::handler::TERMINATING;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
/// The first byte of a TLS handshake: a client that starts TLS without asking first.
const TLS_HANDSHAKE: u8 = 0x16;

/// The stream after the requests that come before the startup packet, and the bytes of that
/// packet already read.
struct Negotiated {
    stream: MaybeTls,
    already_read: BytesMut,
}

impl Negotiated {
    fn encrypted(stream: pgwire::tokio::tokio_rustls::server::TlsStream<TcpStream>) -> Negotiated {
        Negotiated {
            stream: MaybeTls::Tls(Box::new(stream)),
            already_read: BytesMut::new(),
        }
    }
}

/// A FATAL ErrorResponse in plain bytes, for answers before any session exists.
pub fn fatal_bytes(code: &str, message: &str) -> Vec<u8> {
    use pgwire::messages::Message;
    let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
    let mut buf = BytesMut::new();
    // A short message always fits.
    let _ = pgwire::messages::response::ErrorResponse::from(info).encode(&mut buf);
    buf.to_vec()
}

/// Answers SSL and GSSAPI encryption requests (TLS when an acceptor is configured, refusal
/// otherwise) until the startup packet begins. `None`: the client left, or asked for
/// something this server cannot do and was told so.
async fn negotiate(mut tcp: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<Option<Negotiated>> {
    loop {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] == TLS_HANDSHAKE {
            let Some(acceptor) = tls else {
                return Ok(None);
            };
            let stream = acceptor.accept(tcp).await?;
            // Direct TLS must name the protocol (ALPN "postgresql"), as PostgreSQL requires.
            if stream.get_ref().1.alpn_protocol() != Some(b"postgresql") {
                return Ok(None);
            }
            return Ok(Some(Negotiated::encrypted(stream)));
        }
        let mut head = [0u8; 8];
        if tcp.read_exact(&mut head[..4]).await.is_err() {
            return Ok(None);
        }
        let length = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if !usize::try_from(length).is_ok_and(|l| (8..=MAX_STARTUP_LENGTH).contains(&l)) {
            let fatal = fatal_bytes(
                "08P01",
                &format!("invalid length of startup packet: {length}"),
            );
            let _ = tcp.write_all(&fatal).await;
            return Ok(None);
        }
        if tcp.read_exact(&mut head[4..]).await.is_err() {
            return Ok(None);
        }
        let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        match (length, code) {
            (8, SSL_REQUEST) => match &tls {
                Some(acceptor) => {
                    tcp.write_all(b"S").await?;
                    let stream = acceptor.clone().accept(tcp).await?;
                    return Ok(Some(Negotiated::encrypted(stream)));
                }
                None => tcp.write_all(b"N").await?,
            },
            (8, GSSENC_REQUEST) => tcp.write_all(b"N").await?,
            _ => {
                return Ok(Some(Negotiated {
                    stream: MaybeTls::Plain(tcp),
                    already_read: BytesMut::from(&head[..]),
                }));
            }
        }
    }
}

/// Serves one client connection to its end. A client that has not logged in within
/// `login_within` (PostgreSQL's `authentication_timeout`) is dropped; when `shutdown` is cancelled (after the
/// running statement was ended with 57P01), the client is told so with a FATAL 57P01 through
/// the connection's own stream — encrypted where the connection is — and the loop ends.
pub async fn serve<H: PgWireServerHandlers>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handlers: H,
    shutdown: CancellationToken,
    login_within: Duration,
) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(login_within);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        n = negotiate(tcp, tls) => n?,
    };
    let Some(Negotiated {
        stream,
        already_read,
    }) = negotiated
    else {
        return Ok(());
    };
    let secure = matches!(stream, MaybeTls::Tls(_));
    let mut socket = Framed::new(
        Checked::new(stream, already_read),
        PgWireMessageServerCodec::new(DefaultClient::new(peer, secure)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);

    let startup_handler = handlers.startup_handler();
    let simple_query_handler = handlers.simple_query_handler();
    let extended_query_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    let error_handler = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let info = ErrorInfo::new("FATAL".into(), "57P01".into(), TERMINATING.into());
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
            _ = &mut startup_deadline, if starting => None,
            m = socket.next() => m,
        };
        match next {
            None => break,
            Some(Ok(PgWireFrontendMessage::Terminate(_))) => break,
            Some(Ok(message)) => {
                let extended = match socket.state() {
                    PgWireConnectionState::CopyInProgress(extended) => extended,
                    _ => message.is_extended_query(),
                };
                if let Err(mut e) = process_message(
                    message,
                    &mut socket,
                    startup_handler.clone(),
                    simple_query_handler.clone(),
                    extended_query_handler.clone(),
                    copy_handler.clone(),
                    cancel_handler.clone(),
                )
                .await
                {
                    error_handler.on_error(&socket, &mut e);
                    process_error(&mut socket, e, extended).await?;
                }
            }
            Some(Err(PgWireError::IoError(io))) if Violation::of(&io).is_some() => {
                let v = Violation::of(&io).cloned().expect("checked above");
                debug!(%peer, code = v.code, message = %v.message, "refused a frontend message");
                if v.fatal {
                    let info = ErrorInfo::new("FATAL".into(), v.code.into(), v.message);
                    let _ = socket
                        .send(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await;
                    break;
                }
                let mut e = PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    v.code.into(),
                    v.message,
                )));
                error_handler.on_error(&socket, &mut e);
                process_error(&mut socket, e, v.extended).await?;
                // The stream reports an error once and then ends; a new one over the same
                // socket and buffers goes on after the refused message.
                socket = Framed::from_parts(socket.into_parts());
            }
            Some(Err(e)) => {
                // Framing is checked before decoding, so this is the decoder's own refusal.
                let info = ErrorInfo::new("FATAL".into(), "08P01".into(), e.to_string());
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
        }
    }
    let _ = socket.close().await;
    Ok(())
}
