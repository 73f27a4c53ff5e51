//! TLS: psql connects with sslmode=require and verify-full against a certificate made here;
//! on a public address with TLS configured, an unencrypted login is refused.

use std::path::Path;
use std::process::Command;

use crate::common::TestServer;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key).
fn make_certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

fn psql(port: u16, options: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={port} user=flashsql dbname=flashsql {options}"
        ))
        .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .env("PGPASSWORD", "s3cret")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs")
}

#[test]
fn psql_connects_over_tls_and_plain_text_is_refused() {
    if Command::new("psql").arg("--version").output().is_err() {
        assert!(
            std::env::var("FLASHSQL_REQUIRE_PSQL").is_err(),
            "psql is required (FLASHSQL_REQUIRE_PSQL is set) but not installed"
        );
        eprintln!("SKIPPED: psql is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let (cert, key) = make_certificate(tmp.path());
    let server = TestServer::try_start(
        &tmp.path().join("data"),
        &[("FLASHSQL_PASSWORD", "s3cret")],
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
    .expect("server starts");
    let port = server.addr.port();

    for options in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-full sslrootcert={cert}"),
    ] {
        let out = psql(port, &options, "SELECT 41 + 1");
        assert!(
            out.status.success(),
            "{options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    let info = psql(port, "sslmode=require", "\\conninfo");
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("SSL connection"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    // The certificate is really checked: another authority's root does not verify it.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let (other_root, _) = make_certificate(&other);
    let wrong = psql(
        port,
        &format!("sslmode=verify-full sslrootcert={other_root}"),
        "SELECT 1",
    );
    assert!(
        !wrong.status.success(),
        "a certificate from another root is refused"
    );
    // Unencrypted: refused before the password is asked for.
    let plain = psql(port, "sslmode=disable", "SELECT 1");
    assert!(!plain.status.success());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("encrypted connections only"), "{stderr}");

    // At shutdown an open TLS session is told why it ends, inside TLS (plain bytes under a
    // TLS stream read as a broken record).
    let mut session = Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={port} user=flashsql dbname=flashsql sslmode=require"
        ))
        .args(["-At"])
        .env("PGPASSWORD", "s3cret")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut input = session.stdin.take().expect("stdin");
    {
        use std::io::Write;
        writeln!(input, "SELECT 1;").expect("write");
        std::thread::sleep(std::time::Duration::from_secs(1));
        let stopped = server.stop();
        assert!(stopped.success(), "{stopped:?}");
        let _ = writeln!(input, "SELECT 2;");
    }
    drop(input);
    let out = session.wait_with_output().expect("psql ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("terminating connection due to administrator command"),
        "{stderr}"
    );
    assert!(!stderr.contains("SSL error"), "{stderr}");
}
