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

/// Users from `--users-file`: each logs in with its own password; a `read_only` user reads
/// everything and is refused every kind of write with 42501 (no setting lifts it), while a
/// `read_write` user and `flashsql` (from `--password-file`) write.
#[tokio::test]
async fn read_only_users_read_and_are_refused_every_write() {
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users");
    std::fs::write(
        &users,
        "# name:role:password\nanalyst:read_only:look:only\netl:read_write:load it\n",
    )
    .unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "admin\n").unwrap();
    let import = tmp.path().join("d").join("import");
    let server = TestServer::try_start(
        &tmp.path().join("d"),
        &[],
        &[
            "--users-file",
            &users.to_string_lossy(),
            "--password-file",
            &pw.to_string_lossy(),
        ],
    )
    .unwrap();
    let as_user = |user: &str, password: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=flashsql password='{password}'",
            server.addr.port()
        )
    };
    let admin = connect(&as_user("flashsql", "admin")).await.expect("admin");
    admin
        .batch_execute("CREATE TABLE shared_rows AS SELECT 1::BIGINT AS id")
        .await
        .expect("admin writes");
    std::fs::write(import.join("rows.csv"), "id\n7\n").unwrap();

    let analyst = connect(&as_user("analyst", "look:only"))
        .await
        .expect("analyst");
    assert_eq!(
        scalar_i64(&analyst, "SELECT count(*) FROM items").await,
        100
    );
    assert_eq!(
        scalar_i64(&analyst, "SELECT count(*) FROM shared_rows").await,
        1
    );
    let shown = analyst
        .simple_query("SHOW default_transaction_read_only")
        .await
        .expect("show");
    assert!(
        shown.iter().any(|m| matches!(m,
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("on"))),
        "{shown:?}"
    );
    // Switching the session setting off does not lift the role.
    analyst
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .expect("set");
    let csv = import.join("rows.csv").to_string_lossy().to_string();
    let writes = [
        "INSERT INTO shared_rows VALUES (2)".to_string(),
        "UPDATE shared_rows SET id = 3".to_string(),
        "DELETE FROM shared_rows".to_string(),
        "TRUNCATE shared_rows".to_string(),
        "CREATE TABLE mine (id BIGINT)".to_string(),
        "CREATE TABLE mine AS SELECT 1 AS id".to_string(),
        "CREATE VIEW mine AS SELECT 1 AS id".to_string(),
        "CREATE SCHEMA mine".to_string(),
        "DROP TABLE shared_rows".to_string(),
        "ALTER TABLE shared_rows RENAME TO gone".to_string(),
        format!(
            "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '{csv}' OPTIONS ('format.has_header' 'true')"
        ),
        "SELECT * FROM train_model('m', (SELECT true AS label, [1] AS seq))".to_string(),
        "SELECT * FROM drop_model('m')".to_string(),
        format!("SELECT * FROM load_file('csv', '{csv}', table => 'loaded')"),
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM drop_model('m')".to_string(),
    ];
    for sql in &writes {
        for extended in [false, true] {
            let e = if extended {
                analyst.query(sql.as_str(), &[]).await.map(|_| ())
            } else {
                analyst.simple_query(sql).await.map(|_| ())
            }
            .expect_err(sql);
            assert_eq!(crate::common::sqlstate(&e), "42501", "{sql}: {e:?}");
        }
    }
    // Last on this connection: after a failed COPY, tokio-postgres's connection expects one
    // ReadyForQuery fewer than the protocol sends (PostgreSQL does the same).
    let copy = analyst
        .copy_in::<_, bytes::Bytes>("COPY shared_rows FROM STDIN")
        .await
        .map(|_| ())
        .expect_err("COPY FROM");
    assert_eq!(crate::common::sqlstate(&copy), "42501", "{copy:?}");
    assert_eq!(
        scalar_i64(&admin, "SELECT count(*) FROM shared_rows").await,
        1
    );

    // The read_write user writes; wrong passwords and unknown users are refused.
    let etl = connect(&as_user("etl", "load it")).await.expect("etl");
    etl.batch_execute("INSERT INTO shared_rows VALUES (2)")
        .await
        .expect("etl writes");
    let analyst = connect(&as_user("analyst", "look:only"))
        .await
        .expect("analyst");
    assert_eq!(
        scalar_i64(&analyst, "SELECT count(*) FROM shared_rows").await,
        2
    );
    for (user, password) in [("analyst", "admin"), ("nobody", "look:only")] {
        let e = connect(&as_user(user, password)).await.expect_err(user);
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{user}: {e:?}");
    }
}

/// A users file with a mistake stops the server at start-up, naming the line.
#[tokio::test]
async fn a_bad_users_file_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users");
    std::fs::write(&users, "analyst:read_only:x\netl:admin:y\n").unwrap();
    let err = TestServer::try_start(
        &tmp.path().join("d"),
        &[],
        &["--users-file", &users.to_string_lossy()],
    )
    .err()
    .expect("refused");
    assert!(err.contains("line 2: unknown role \"admin\""), "{err}");
}
