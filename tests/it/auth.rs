//! Password authentication (SCRAM-SHA-256) and the loopback rule.

use crate::common::{TestServer, connect, scalar_i64};

#[tokio::test]
async fn scram_password_is_required_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let pw_file = tmp.path().join("pw");
    std::fs::write(&pw_file, "s3cret\n").unwrap();
    let pw = pw_file.to_string_lossy().to_string();
    let server =
        TestServer::try_start(&tmp.path().join("d"), &[], &["--password-file", &pw]).unwrap();
    let base = server.url();
    let ok = connect(&format!("{base} password=s3cret"))
        .await
        .expect("right password");
    let n = scalar_i64(&ok, "SELECT count(*) FROM items").await;
    assert_eq!(n, 100);
    let e = connect(&format!("{base} password=wrong"))
        .await
        .expect_err("wrong password");
    assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{e:?}");
    let e = connect(&base).await.expect_err("no password");
    assert!(format!("{e:?}").contains("password missing"), "{e:?}");
}

#[tokio::test]
async fn a_public_address_without_a_password_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = TestServer::try_start(&tmp.path().join("d"), &[], &["--listen", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.contains("without a password"), "{err}");
    // A password alone is not enough: it would cross the network in the clear.
    let err = TestServer::try_start(
        &tmp.path().join("d"),
        &[("FLASHSQL_PASSWORD", "pw")],
        &["--listen", "0.0.0.0:0"],
    )
    .err()
    .expect("refused without TLS");
    assert!(err.contains("--tls-cert"), "{err}");
    // With a password and --allow-insecure it listens (tests/it/tls.rs covers TLS).
    let server = TestServer::try_start(
        &tmp.path().join("d"),
        &[("FLASHSQL_PASSWORD", "pw")],
        &["--listen", "0.0.0.0:0", "--allow-insecure"],
    )
    .unwrap();
    let url = format!(
        "host=127.0.0.1 port={} user=flashsql dbname=flashsql password=pw",
        server.addr.port()
    );
    connect(&url).await.expect("connects with the password");
}

/// Password guessing is slowed down: after five failures from an address, each login from it
/// waits (0.5 s, then 1 s, …) before it is heard; the right password still works, and the
/// failure message names the user, not the password.
#[tokio::test]
async fn repeated_failures_slow_down_further_logins() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::try_start(
        &tmp.path().join("d"),
        &[("FLASHSQL_PASSWORD", "s3cret")],
        &[],
    )
    .unwrap();
    let base = server.url();
    for _ in 0..5 {
        let e = connect(&format!("{base} password=guess"))
            .await
            .expect_err("wrong password");
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{e:?}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(
            message.contains("\"flashsql\"") && !message.contains("guess"),
            "{message}"
        );
    }
    let t = std::time::Instant::now();
    connect(&format!("{base} password=guess"))
        .await
        .expect_err("wrong password");
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(450),
        "the sixth attempt was not delayed: {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let ok = connect(&format!("{base} password=s3cret"))
        .await
        .expect("the right password still works");
    assert!(t.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(scalar_i64(&ok, "SELECT 1::BIGINT").await, 1);
}
