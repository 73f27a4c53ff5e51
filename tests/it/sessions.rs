//! One session per connection: settings and temporary tables stay private; statements can
//! be cancelled or time out and fail alone.

use std::time::{Duration, Instant};

use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::common::{TestServer, scalar_i64, sqlstate};

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .simple_query(&format!("SHOW {name}"))
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn settings_and_temporary_tables_are_private_to_a_connection() {
    let server = TestServer::start();
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute("SET application_name = 'alpha'; SET TIME ZONE 'Asia/Shanghai'")
        .await
        .unwrap();
    assert_eq!(show(&a, "application_name").await, "alpha");
    assert_eq!(show(&b, "application_name").await, "");
    assert_eq!(show(&a, "timezone").await, "Asia/Shanghai");
    assert_eq!(show(&b, "timezone").await, "UTC");
    // DataFusion settings are per session too.
    a.batch_execute("SET datafusion.execution.batch_size = 1024")
        .await
        .unwrap();
    assert_eq!(show(&a, "datafusion.execution.batch_size").await, "1024");
    assert_eq!(show(&b, "datafusion.execution.batch_size").await, "8192");

    a.batch_execute(
        "CREATE TEMPORARY TABLE scratch AS SELECT user_id FROM users WHERE user_id <= 10",
    )
    .await
    .unwrap();
    let n = scalar_i64(&a, "SELECT count(*) FROM scratch").await;
    assert_eq!(n, 10);
    let e = b
        .simple_query("SELECT count(*) FROM scratch")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    // A temporary table shadows a durable one of the same name for its session only.
    a.batch_execute("CREATE TEMP TABLE items AS SELECT 1 AS only_one")
        .await
        .unwrap();
    let n = scalar_i64(&a, "SELECT count(*) FROM items").await;
    assert_eq!(n, 1);
    let n = scalar_i64(&b, "SELECT count(*) FROM items").await;
    assert_eq!(n, 100);
    // Gone with the session.
    drop(a);
    let c = server.connect().await;
    let e = c
        .simple_query("SELECT count(*) FROM scratch")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
}

/// Hundreds of millions of joined rows: minutes of work unless stopped.
const SLOW: &str = "SELECT count(*) FROM events a JOIN events b ON a.category_id = b.category_id \
                    WHERE a.user_id + b.user_id < 0";

#[tokio::test]
async fn a_cancel_request_stops_the_running_statement() {
    let server = TestServer::start();
    let client = server.connect().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let t0 = Instant::now();
    let e = client.simple_query(SLOW).await.expect_err("cancelled");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    canceller.await.unwrap().unwrap();
    // The connection goes on.
    let n = scalar_i64(&client, "SELECT count(*) FROM users").await;
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn statement_timeout_cancels_with_57014() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let e = client.query(SLOW, &[]).await.expect_err("timed out");
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(e.to_string().contains("timeout") || format!("{e:?}").contains("timeout"));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let n = scalar_i64(&client, "SELECT count(*) FROM items").await;
    assert_eq!(n, 100);
}
