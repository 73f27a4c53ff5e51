//! Malformed frontend messages, written byte by byte: each gets an ErrorResponse with
//! PostgreSQL's code (08P01, 22P03, 42P05) instead of a dead connection task, and the server
//! carries on for everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, scalar_i64};
use crate::frontend::{bind, cstr, execute, message, parse, startup, sync};

struct Raw {
    socket: TcpStream,
}

/// Backend messages up to (and including) the next ReadyForQuery, or until the server
/// closes the connection.
#[derive(Debug, Default)]
struct Reply {
    codes: Vec<String>,
    kinds: Vec<u8>,
    closed: bool,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let mut socket = TcpStream::connect(server.addr).await.expect("connect");
        socket.write_all(&startup()).await.expect("startup");
        let mut raw = Raw { socket };
        let r = raw.until_ready().await;
        assert!(r.codes.is_empty() && !r.closed, "start-up: {r:?}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("send");
    }

    /// Runs `sql` through Parse, Bind, Execute and Sync; the reply up to ReadyForQuery.
    async fn extended(&mut self, sql: &str) -> Reply {
        self.send(&[parse("", sql), bind("", &[], &[], &[]), execute(0), sync()].concat())
            .await;
        self.until_ready().await
    }

    async fn until_ready(&mut self) -> Reply {
        let mut reply = Reply::default();
        loop {
            let mut head = [0u8; 5];
            let read =
                tokio::time::timeout(Duration::from_secs(30), self.socket.read_exact(&mut head))
                    .await;
            match read {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    reply.closed = true;
                    return reply;
                }
                Err(_) => panic!("no reply within 30 s: {reply:?}"),
            }
            let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
            let mut body = vec![0u8; len];
            if self.socket.read_exact(&mut body).await.is_err() {
                reply.closed = true;
                return reply;
            }
            reply.kinds.push(head[0]);
            if head[0] == b'E' {
                let mut fields = body.split(|b| *b == 0);
                let code = fields
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).to_string())
                    .unwrap_or_default();
                reply.codes.push(code);
            }
            if head[0] == b'Z' {
                return reply;
            }
        }
    }
}

#[tokio::test]
async fn malformed_messages_get_postgres_error_codes() {
    let server = TestServer::start();

    // Recoverable violations: an error, then the connection goes on.
    let mut c = Raw::connect(&server).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an extra Bind parameter",
            [
                parse("", "SELECT $1::BIGINT"),
                bind("", &[], &[Some(b"1"), Some(b"2")], &[]),
                execute(0),
                sync(),
            ]
            .concat(),
            "08P01",
        ),
        (
            "a missing Bind parameter",
            [
                parse("", "SELECT $1::BIGINT + $2::BIGINT"),
                bind("", &[], &[Some(b"1")], &[]),
                execute(0),
                sync(),
            ]
            .concat(),
            "08P01",
        ),
        (
            "format code 7",
            [
                parse("", "SELECT $1::BIGINT"),
                bind("", &[7], &[Some(b"1")], &[]),
                execute(0),
                sync(),
            ]
            .concat(),
            "22P03",
        ),
        (
            "result format code 7",
            [
                parse("", "SELECT 1::BIGINT"),
                bind("", &[], &[], &[7]),
                execute(0),
                sync(),
            ]
            .concat(),
            "22P03",
        ),
        (
            "a negative row limit",
            [
                parse("", "SELECT 1::BIGINT"),
                bind("", &[], &[], &[]),
                execute(-1),
                sync(),
            ]
            .concat(),
            "08P01",
        ),
        (
            "a named statement parsed twice",
            [
                parse("twice", "SELECT 1::BIGINT"),
                parse("twice", "SELECT 2::BIGINT"),
                sync(),
            ]
            .concat(),
            "42P05",
        ),
    ];
    for (what, bytes, code) in cases {
        c.send(&bytes).await;
        let reply = c.until_ready().await;
        assert_eq!(reply.codes, vec![code.to_string()], "{what}: {reply:?}");
        assert!(!reply.closed, "{what}");
    }
    // Still usable: a well-formed round trip.
    let reply = c.extended("SELECT 41::BIGINT + 1").await;
    assert!(
        reply.codes.is_empty() && reply.kinds.contains(&b'D'),
        "{reply:?}"
    );

    // Lengths and counts that run past the message: FATAL 08P01 and the connection closes.
    let lying: Vec<(&str, Vec<u8>)> = vec![
        ("parameter length 2^31-1", {
            let mut body = cstr("");
            body.extend(cstr(""));
            body.extend(0i16.to_be_bytes());
            body.extend(1i16.to_be_bytes());
            body.extend(i32::MAX.to_be_bytes());
            body.extend(b"x");
            message(b'B', &body)
        }),
        ("parameter count -1", {
            let mut body = cstr("");
            body.extend(cstr(""));
            body.extend(0i16.to_be_bytes());
            body.extend((-1i16).to_be_bytes());
            message(b'B', &body)
        }),
        ("parameter count 32767", {
            let mut body = cstr("");
            body.extend(cstr(""));
            body.extend(0i16.to_be_bytes());
            body.extend(i16::MAX.to_be_bytes());
            message(b'B', &body)
        }),
        ("format-code count -5", {
            let mut body = cstr("");
            body.extend(cstr(""));
            body.extend((-5i16).to_be_bytes());
            message(b'B', &body)
        }),
    ];
    for (what, bytes) in lying {
        let mut c = Raw::connect(&server).await;
        c.send(&[parse("", "SELECT $1::BIGINT"), bytes, sync()].concat())
            .await;
        let reply = c.until_ready().await;
        assert!(
            reply.codes.contains(&"08P01".to_string()),
            "{what}: {reply:?}"
        );
        let other = server.connect().await;
        assert_eq!(
            scalar_i64(&other, "SELECT 1::BIGINT").await,
            1,
            "after {what}"
        );
    }
}

/// What pgwire left unanswered: an unknown message type closed the connection without a
/// word, invalid UTF-8 was replaced and run, a startup packet of impossible length waited
/// a minute for more. Each now gets PostgreSQL's answer at once.
#[tokio::test]
async fn unknown_types_bad_utf8_and_short_startups_get_postgres_answers() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE utf (s TEXT)")
        .await
        .expect("table");

    // Invalid UTF-8 in a query: ERROR 22021, nothing stored, the session goes on, in both
    // protocols.
    let mut c = Raw::connect(&server).await;
    c.send(&message(b'Q', b"INSERT INTO utf VALUES ('caf\xe9')\0"))
        .await;
    let reply = c.until_ready().await;
    assert_eq!(reply.codes, vec!["22021".to_string()], "{reply:?}");
    let mut bad_parse = cstr("");
    bad_parse.extend(b"SELECT '\xff\xfe'\0");
    bad_parse.extend(0i16.to_be_bytes());
    c.send(
        &[
            message(b'P', &bad_parse),
            bind("", &[], &[], &[]),
            execute(0),
            sync(),
        ]
        .concat(),
    )
    .await;
    let reply = c.until_ready().await;
    assert_eq!(
        reply.codes,
        vec!["22021".to_string()],
        "extended: {reply:?}"
    );
    let reply = c.extended("SELECT count(*) FROM utf").await;
    assert!(
        reply.codes.is_empty() && reply.kinds.contains(&b'D'),
        "{reply:?}"
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM utf WHERE s LIKE 'caf%'").await,
        0,
        "nothing of the refused statement was stored"
    );

    // An unknown message type: FATAL 08P01, then the connection closes.
    let mut c = Raw::connect(&server).await;
    c.send(&message(b'Z', b"")).await;
    let reply = c.until_ready().await;
    assert_eq!(reply.codes, vec!["08P01".to_string()], "{reply:?}");
    assert!(reply.closed, "{reply:?}");

    // Startup packets of length 3 and 4 (and an absurd one): FATAL 08P01 at once.
    for length in [3i32, 4, 1 << 30] {
        let mut socket = TcpStream::connect(server.addr).await.expect("connect");
        socket.write_all(&length.to_be_bytes()).await.expect("send");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("an answer within seconds, not the startup timeout")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.first() == Some(&b'E')
                && text.contains("08P01")
                && text.contains("invalid length of startup packet"),
            "length {length}: {text:?}"
        );
    }
    assert_eq!(scalar_i64(&client, "SELECT 1::BIGINT").await, 1);
}

/// A socket that never logs in is closed after `--authentication-timeout`: one that says
/// nothing, one that stops half-way through its startup packet, and one that never answers
/// the password request. Logged-in sessions are not affected.
#[tokio::test]
async fn sockets_that_never_log_in_are_closed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = TestServer::try_start(
        &tmp.path().join("data"),
        &[("FLASHSQL_PASSWORD", "s3cret")],
        &["--authentication-timeout", "2"],
    )
    .expect("server starts");
    let silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut half = TcpStream::connect(server.addr).await.expect("connect");
    half.write_all(&startup()[..6]).await.expect("send");
    let mut no_password = TcpStream::connect(server.addr).await.expect("connect");
    no_password.write_all(&startup()).await.expect("send");
    let logged_in = crate::common::connect(&format!("{} password=s3cret", server.url()))
        .await
        .expect("login");
    for (what, mut socket) in [
        ("silent", silent),
        ("half a startup packet", half),
        ("no password", no_password),
    ] {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{what}: still open after 15 s");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(scalar_i64(&logged_in, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_53300() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = TestServer::try_start(&tmp.path().join("data"), &[], &["--max-connections", "3"])
        .expect("server starts");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.connect().await);
    }
    let refused = crate::common::connect(&server.url())
        .await
        .expect_err("over the cap");
    assert_eq!(crate::common::sqlstate(&refused), "53300", "{refused:?}");
    held.pop();
    // The slot frees once the connection's task has ended.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = crate::common::connect(&server.url()).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = again.expect("a slot frees when a client leaves");
    assert_eq!(scalar_i64(&again, "SELECT 1::BIGINT").await, 1);
}

/// One connection thread (the default on two cores) serves many clients at once: each
/// runs prepared point lookups and an aggregate concurrently, and every answer is right.
/// Zero threads is refused at start-up.
#[tokio::test]
async fn one_connection_thread_serves_many_clients_at_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    assert!(
        TestServer::try_start(
            &tmp.path().join("zero"),
            &[],
            &["--connection-threads", "0"]
        )
        .is_err()
    );
    let server = TestServer::try_start(
        &tmp.path().join("data"),
        &[],
        &["--connection-threads", "1"],
    )
    .expect("server starts");
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(server.connect().await);
    }
    let ids: Vec<i64> = clients[0]
        .query("SELECT item_id FROM items", &[])
        .await
        .expect("item ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ids = &ids;
    let answers = futures::future::join_all(clients.iter().enumerate().map(|(k, c)| async move {
        let lookup = c
            .prepare("SELECT item_id FROM items WHERE item_id = $1")
            .await
            .expect("prepare");
        let mut found = 0;
        for i in 0..20 {
            let id = ids[(k * 20 + i) % ids.len()];
            let rows = c.query(&lookup, &[&id]).await.expect("lookup");
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].get::<_, i64>(0), id);
            found += 1;
        }
        let events = scalar_i64(c, "SELECT count(*) FROM events").await;
        (found, events)
    }))
    .await;
    let events = scalar_i64(&clients[0], "SELECT count(*) FROM events").await;
    assert!(
        answers.iter().all(|&(found, n)| found == 20 && n == events),
        "{answers:?}"
    );
}
