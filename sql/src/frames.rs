//! Frontend messages checked before the protocol library decodes them.
//!
//! pgwire's decoder trusts the lengths and counts inside a message: a Bind whose parameter
//! length runs past the message, a Parse cut short or a COPY message of length 3 make it
//! panic; it replaces invalid UTF-8 silently; an unknown message type ends the connection
//! without a word. [`Checked`] sits between the (decrypted) socket and the decoder, cuts the
//! byte stream into messages itself and checks each one's layout the way PostgreSQL's
//! `pq_getmsg*` functions do. A message that is well framed but wrong inside (invalid UTF-8,
//! a function call) is dropped and reported as an ERROR the session survives; one whose
//! framing cannot be trusted (bad length, unknown type, counts past the end) is a FATAL
//! 08P01, as in PostgreSQL, after which nothing more is read.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// PostgreSQL's limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub(crate) const MAX_STARTUP_LENGTH: usize = 10_000;
/// PostgreSQL's limit on any other message (`PQ_LARGE_MESSAGE_LIMIT`, 1 GB − 1).
const MAX_MESSAGE_LENGTH: usize = (1 << 30) - 1;

const PROTOCOL_3: i32 = 3;
const CANCEL_REQUEST: i32 = 80_877_102;

/// Why a message was refused: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
    /// The connection ends after it (the stream can no longer be trusted).
    pub fatal: bool,
    /// It was an extended-protocol message: the session skips to the next Sync.
    pub extended: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Violation {}

impl Violation {
    fn fatal(message: impl Into<String>) -> Violation {
        Violation {
            code: "08P01",
            message: message.into(),
            fatal: true,
            extended: false,
        }
    }

    /// The violation an I/O error from [`Checked`] carries, if it is one.
    pub fn of(e: &io::Error) -> Option<&Violation> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Violation>())
    }
}

/// A reader over one message's body that refuses to run past its end.
struct Body<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Body<'a> {
    fn short(&self) -> Violation {
        Violation::fatal(format!("invalid {} message format", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        if self.bytes.len() < n {
            return Err(self.short());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, Violation> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, Violation> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count that must not be negative.
    fn count(&mut self) -> Result<usize, Violation> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| self.short())
    }

    /// A NUL-terminated string; its bytes (without the NUL).
    fn cstr(&mut self) -> Result<&'a [u8], Violation> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.short())?;
        let s = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), Violation> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.short())
        }
    }
}

/// Text a client sent must be UTF-8 (the only client encoding flashsql speaks): PostgreSQL's
/// 22021, an error the session survives.
fn utf8(bytes: &[u8], extended: bool) -> Result<(), Violation> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            let at = e.valid_up_to();
            let bad: Vec<String> = bytes[at..]
                .iter()
                .take(e.error_len().unwrap_or(1))
                .map(|b| format!("0x{b:02x}"))
                .collect();
            Err(Violation {
                code: "22021",
                message: format!(
                    "invalid byte sequence for encoding \"UTF8\": {}",
                    bad.join(" ")
                ),
                fatal: false,
                extended,
            })
        }
    }
}

/// Checks a typed message's body against its type's layout.
fn check_message(kind: u8, body: &[u8]) -> Result<(), Violation> {
    let what = match kind {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'E' => "Execute",
        b'D' => "Describe",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'p' => "authentication",
        b'F' => {
            return Err(Violation {
                code: "0A000",
                message: "function call messages are not supported".into(),
                fatal: false,
                extended: false,
            });
        }
        other => {
            return Err(Violation::fatal(format!(
                "invalid frontend message type {other}"
            )));
        }
    };
    let mut b = Body { bytes: body, what };
    match kind {
        b'Q' => {
            let sql = b.cstr()?;
            b.end()?;
            utf8(sql, false)?;
        }
        b'P' => {
            let name = b.cstr()?;
            let sql = b.cstr()?;
            let types = b.count()?;
            b.take(types * 4)?;
            b.end()?;
            utf8(name, true)?;
            utf8(sql, true)?;
        }
        b'B' => {
            let portal = b.cstr()?;
            let statement = b.cstr()?;
            let formats = b.count()?;
            b.take(formats * 2)?;
            let params = b.count()?;
            for _ in 0..params {
                match b.i32()? {
                    -1 => {}
                    n if n >= 0 => {
                        b.take(n as usize)?;
                    }
                    _ => return Err(b.short()),
                }
            }
            let results = b.count()?;
            b.take(results * 2)?;
            b.end()?;
            utf8(portal, true)?;
            utf8(statement, true)?;
        }
        b'E' => {
            let portal = b.cstr()?;
            b.i32()?;
            b.end()?;
            utf8(portal, true)?;
        }
        b'D' | b'C' => {
            let target = b.take(1)?[0];
            if target != b'S' && target != b'P' {
                return Err(Violation::fatal(format!(
                    "invalid {what} message subtype {target}"
                )));
            }
            let name = b.cstr()?;
            b.end()?;
            utf8(name, true)?;
        }
        b'S' | b'H' | b'X' | b'c' => b.end()?,
        b'f' => {
            b.cstr()?;
            b.end()?;
        }
        // CopyData is opaque; authentication responses are checked by the authenticator.
        _ => {}
    }
    Ok(())
}

/// Checks the startup packet (no type byte): a protocol 3 startup with its parameters, or a
/// cancel request. Encryption requests come before it and are answered by the connection
/// loop (`wire`) before this stream exists.
fn check_startup(packet: &[u8]) -> Result<(), Violation> {
    let mut b = Body {
        bytes: &packet[4..],
        what: "startup packet",
    };
    let code = b.i32()?;
    match code {
        // The key is 4 bytes in protocol 3.0, up to 256 in 3.2.
        CANCEL_REQUEST if (12..=264).contains(&packet.len()) => Ok(()),
        CANCEL_REQUEST => Err(Violation::fatal("invalid length of cancel request")),
        _ if code >> 16 == PROTOCOL_3 => {
            loop {
                let name = b.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = b.cstr()?;
                for s in [name, value] {
                    // Before a session exists, nothing can go on after an error.
                    utf8(s, false).map_err(|v| Violation { fatal: true, ..v })?;
                }
            }
            if !b.bytes.is_empty() {
                return Err(Violation::fatal(
                    "invalid startup packet layout: expected terminator as last byte",
                ));
            }
            Ok(())
        }
        _ => Err(Violation::fatal(format!(
            "unsupported frontend protocol {}.{}: server supports 3.0 to 3.2",
            code >> 16,
            code & 0xffff
        ))),
    }
}

/// Where the next whole message in `pending` ends, if it is all there, or why its framing
/// is wrong.
fn frame_length(pending: &[u8], startup: bool) -> Result<Option<usize>, Violation> {
    let (offset, max) = if startup {
        (0, MAX_STARTUP_LENGTH)
    } else {
        (1, MAX_MESSAGE_LENGTH)
    };
    if pending.len() < offset + 4 {
        return Ok(None);
    }
    let raw = &pending[offset..offset + 4];
    let length = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let min = if startup { 8 } else { 4 };
    let length = usize::try_from(length)
        .ok()
        .filter(|l| (min..=max).contains(l))
        .ok_or_else(|| {
            Violation::fatal(if startup {
                format!("invalid length of startup packet: {length}")
            } else {
                format!("invalid message length {length}")
            })
        })?;
    let whole = offset + length;
    Ok((pending.len() >= whole).then_some(whole))
}

/// The stream a connection's decoder reads: only messages whose layout was checked.
pub struct Checked<S> {
    inner: S,
    /// Bytes read from the socket and not yet checked.
    pending: BytesMut,
    /// Checked bytes for the decoder.
    ready: BytesMut,
    /// Whether the next packet is a startup-phase one (no type byte).
    startup: bool,
    /// A non-fatal violation: reported once the checked bytes before it are consumed, so
    /// that the messages before it run first; checking goes on after it.
    deferred: Option<Violation>,
    /// A fatal violation: reported once the checked bytes before it are consumed; nothing
    /// after it is read.
    failed: Option<Violation>,
}

impl<S> Checked<S> {
    /// Wraps a stream whose next packet is the startup packet; `already_read` holds bytes
    /// read from it before (during TLS negotiation), which are checked like the rest.
    pub fn new(inner: S, already_read: BytesMut) -> Checked<S> {
        Checked {
            inner,
            pending: already_read,
            ready: BytesMut::new(),
            startup: true,
            deferred: None,
            failed: None,
        }
    }

    /// Moves whole messages from `pending` to `ready` until one fails its check: that one is
    /// dropped and kept to be reported after the messages before it (for a fatal one,
    /// nothing more is taken).
    fn cut(&mut self) {
        while self.failed.is_none() && self.deferred.is_none() {
            let whole = match frame_length(&self.pending, self.startup) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(v) => {
                    self.pending.clear();
                    self.failed = Some(v);
                    return;
                }
            };
            let checked = if self.startup {
                self.startup = false;
                check_startup(&self.pending[..whole])
            } else {
                check_message(self.pending[0], &self.pending[5..whole])
            };
            let message = self.pending.split_to(whole);
            match checked {
                Ok(()) => self.ready.extend_from_slice(&message),
                Err(v) if v.fatal => {
                    self.pending.clear();
                    self.failed = Some(v);
                }
                Err(v) => self.deferred = Some(v),
            }
        }
    }
}

fn violation(v: Violation) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, v)
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(v) = this.deferred.take() {
                return Poll::Ready(Err(violation(v)));
            }
            if let Some(v) = this.failed.clone() {
                return Poll::Ready(Err(violation(v)));
            }
            this.cut();
            if !this.ready.is_empty() || this.deferred.is_some() || this.failed.is_some() {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream; an incomplete message at the end is dropped, as PostgreSQL
                // does ("unexpected EOF on client connection").
                return Poll::Ready(Ok(()));
            }
            this.pending.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend(((body.len() + 4) as i32).to_be_bytes());
        out.extend(body);
        out
    }

    fn startup() -> Vec<u8> {
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend(b"user\0flashsql\0\0");
        let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    /// Feeds `bytes` through a `Checked` and returns what the decoder reads and the
    /// violations met on the way.
    async fn run(bytes: Vec<u8>) -> (Vec<u8>, Vec<Violation>) {
        use tokio::io::AsyncReadExt;
        let mut checked = Checked::new(std::io::Cursor::new(bytes), BytesMut::new());
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        loop {
            let mut buf = [0u8; 64];
            match checked.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend(&buf[..n]),
                Err(e) => {
                    let v = Violation::of(&e).expect("a violation").clone();
                    let fatal = v.fatal;
                    errors.push(v);
                    if fatal {
                        break;
                    }
                }
            }
        }
        (out, errors)
    }

    #[tokio::test]
    async fn well_formed_messages_pass_unchanged() {
        let mut input = startup();
        input.extend(message(b'Q', b"SELECT 1\0"));
        let mut bind = b"\0s\0".to_vec();
        bind.extend(1i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes());
        bind.extend(8i32.to_be_bytes());
        bind.extend(7i64.to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        input.extend(message(b'B', &bind));
        input.extend(message(b'S', b""));
        let (out, errors) = run(input.clone()).await;
        assert_eq!(errors, vec![]);
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn framing_errors_are_fatal_08p01_and_stop_reading() {
        for (input, words) in [
            (vec![0, 0, 0, 3], "invalid length of startup packet: 3"),
            (
                {
                    let mut v = startup();
                    v.extend(message(b'Z', b""));
                    v.extend(message(b'Q', b"SELECT 1\0"));
                    v
                },
                "invalid frontend message type 90",
            ),
            (
                {
                    let mut v = startup();
                    v.extend([b'Q', 0, 0, 0, 2]);
                    v
                },
                "invalid message length 2",
            ),
            (
                {
                    // A Bind whose parameter length runs past the message.
                    let mut v = startup();
                    let mut bind = b"\0\0".to_vec();
                    bind.extend(0i16.to_be_bytes());
                    bind.extend(1i16.to_be_bytes());
                    bind.extend(i32::MAX.to_be_bytes());
                    v.extend(message(b'B', &bind));
                    v
                },
                "invalid Bind message format",
            ),
            (
                {
                    let mut v = 8i32.to_be_bytes().to_vec();
                    v.extend(0x0004_0000i32.to_be_bytes());
                    v
                },
                "unsupported frontend protocol 4.0",
            ),
        ] {
            let (out, errors) = run(input.clone()).await;
            assert_eq!(errors.len(), 1, "{words}: {errors:?}");
            assert!(errors[0].fatal && errors[0].code == "08P01", "{errors:?}");
            assert!(errors[0].message.contains(words), "{errors:?}");
            assert!(
                !out.ends_with(b"SELECT 1\0"),
                "nothing after a fatal violation is passed on"
            );
        }
    }

    /// Messages before a refused one reach the decoder before the refusal is reported, in
    /// one read as in several.
    #[tokio::test]
    async fn a_refusal_comes_after_the_messages_before_it() {
        use tokio::io::AsyncReadExt;
        let mut input = startup();
        input.extend(message(b'Q', b"SELECT 1\0"));
        let before = input.len();
        input.extend(message(b'Q', b"SELECT '\xff'\0"));
        input.extend(message(b'Q', b"SELECT 2\0"));
        let mut checked = Checked::new(std::io::Cursor::new(input.clone()), BytesMut::new());
        let mut got: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 4096];
        let error = loop {
            match checked.read(&mut buf).await {
                Ok(n) => got.extend(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(
            got,
            input[..before],
            "everything before the bad message, first"
        );
        assert_eq!(Violation::of(&error).map(|v| v.code), Some("22021"));
        let mut rest = Vec::new();
        checked.read_to_end(&mut rest).await.expect("the rest");
        assert_eq!(rest, message(b'Q', b"SELECT 2\0"));
    }

    #[tokio::test]
    async fn invalid_utf8_is_22021_and_the_stream_goes_on() {
        let mut input = startup();
        input.extend(message(b'Q', b"SELECT '\xff'\0"));
        input.extend(message(b'Q', b"SELECT 2\0"));
        let (out, errors) = run(input).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "22021");
        assert!(!errors[0].fatal);
        assert!(errors[0].message.contains("0xff"), "{}", errors[0].message);
        assert!(out.ends_with(&message(b'Q', b"SELECT 2\0")));
        assert!(!out.windows(1).any(|w| w == [0xff]));
    }
}
