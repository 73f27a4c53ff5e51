//! Simple and extended query protocol with tokio-postgres.

use futures::{StreamExt, pin_mut};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::common::{TestServer, scalar_i64, text_rows};

#[tokio::test]
async fn simple_protocol_runs_several_statements_in_order() {
    let server = TestServer::start();
    let client = server.connect().await;
    let messages = client
        .simple_query(
            "CREATE TABLE s1 (id BIGINT, name TEXT); \
             INSERT INTO s1 VALUES (1, 'a'), (2, 'b'); \
             SELECT count(*) AS n FROM s1; \
             SELECT name FROM s1 ORDER BY id",
        )
        .await
        .expect("multi-statement query");
    let rows = text_rows(&messages);
    assert_eq!(
        rows,
        vec![
            vec![Some("2".to_string())],
            vec![Some("a".to_string())],
            vec![Some("b".to_string())]
        ]
    );
    let completions: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completions, vec![0, 2, 1, 2]);
}

/// A VALUES list may hold subqueries (DataFusion computes VALUES before they run; flashsql
/// plans such a list as SELECTs), in INSERT and on its own, with PostgreSQL's column names.
#[tokio::test]
async fn values_lists_may_hold_subqueries() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE v1 (id BIGINT, latest TIMESTAMP, n BIGINT); \
             INSERT INTO v1 VALUES (1, (SELECT max(ts) FROM events), (SELECT count(*) FROM users)), \
                                   (2, NULL, 7)",
        )
        .await
        .expect("INSERT … VALUES with subqueries");
    let expected = scalar_i64(&client, "SELECT count(*) FROM users").await;
    let rows = client
        .query("SELECT id, latest IS NOT NULL, n FROM v1 ORDER BY id", &[])
        .await
        .expect("read back");
    let got: Vec<(i64, bool, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(1, true, expected), (2, false, 7)]);
    let row = client
        .query_one(
            "SELECT column1, column2 FROM (VALUES (1, (SELECT min(user_id) FROM users))) AS v",
            &[],
        )
        .await
        .expect("VALUES with a subquery as a query");
    let min_user = scalar_i64(&client, "SELECT min(user_id) FROM users").await;
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, min_user));
}

#[tokio::test]
async fn extended_protocol_with_typed_parameters_and_binary_results() {
    let server = TestServer::start();
    let client = server.connect().await;
    let total = scalar_i64(&client, "SELECT count(*) FROM events").await;
    assert!(total > 10_000, "{total}");

    let stmt = client
        .prepare("SELECT count(*) FROM events WHERE user_id = $1 AND event_type = $2")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT8, Type::TEXT]);
    assert_eq!(stmt.columns()[0].type_(), &Type::INT8);
    // The same prepared statement, executed repeatedly with different parameters, agrees
    // with the literal query.
    for user in [1i64, 2, 3, 50, 999] {
        let via_param: i64 = client
            .query_one(&stmt, &[&user, &"view"])
            .await
            .unwrap()
            .get(0);
        let literal = client
            .simple_query(&format!(
                "SELECT count(*) FROM events WHERE user_id = {user} AND event_type = 'view'"
            ))
            .await
            .unwrap();
        let literal: i64 = literal
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .unwrap();
        assert_eq!(via_param, literal, "user {user}");
    }

    // Binary decoding of the common column types.
    let row = client
        .query_one(
            "SELECT user_id, signup_ts, segment FROM users WHERE user_id = $1",
            &[&1i64],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    let _ts: std::time::SystemTime = row.get(1);
    let seg: String = row.get(2);
    assert_eq!(id, 1);
    assert!(["new", "active", "dormant", "vip"].contains(&seg.as_str()));
    let row = client
        .query_one(
            "SELECT base_price, inventory FROM items WHERE item_id = $1",
            &[&3i64],
        )
        .await
        .unwrap();
    let price: f64 = row.get(0);
    assert!(price > 0.0);
}

#[tokio::test]
async fn portal_suspension_returns_rows_in_pages() {
    let server = TestServer::start();
    let mut client = server.connect().await;
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT user_id FROM users ORDER BY user_id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let page = tx.query_portal(&portal, 300).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 300);
        seen.extend(page.iter().map(|r| r.get::<_, i64>(0)));
    }
    tx.commit().await.unwrap();
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());
}

#[tokio::test]
async fn raw_streaming_and_statement_reuse_across_many_executions() {
    let server = TestServer::start();
    let client = server.connect().await;
    let stmt = client
        .prepare("SELECT item_id, base_price FROM items WHERE category_id = $1")
        .await
        .unwrap();
    let mut total = 0;
    for cat in 0..12i64 {
        let rows = client.query_raw(&stmt, [cat]).await.unwrap();
        pin_mut!(rows);
        while let Some(r) = rows.next().await {
            let r = r.unwrap();
            assert!(r.get::<_, f64>(1) > 0.0);
            total += 1;
        }
    }
    assert_eq!(total, 100, "every item is in one of the 12 tiny categories");
}

#[tokio::test]
async fn looks_like_postgres_to_clients() {
    let server = TestServer::start();
    let client = server.connect().await;
    let v: String = client
        .query_one("SELECT pg_catalog.version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(v.starts_with("PostgreSQL 16."), "{v}");
    assert!(v.contains("flashsql"), "{v}");
    let rows = client.simple_query("SHOW server_version").await.unwrap();
    let sv = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    assert!(sv.starts_with("16."), "{sv}");
    let schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, "public");
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "flashsql");
    for stmt in [
        "SET extra_float_digits = 3",
        "SET application_name = 'it'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SHOW TRANSACTION ISOLATION LEVEL",
        "SHOW standard_conforming_strings",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "DISCARD ALL",
        "COMMENT ON TABLE events IS 'behaviour log'",
    ] {
        client
            .simple_query(stmt)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let setting: String = client
        .query_one("SELECT current_setting('standard_conforming_strings')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, "on");
    // information_schema speaks PostgreSQL type names.
    let rows = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'events' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(cols[0], ("user_id".into(), "bigint".into()));
    assert_eq!(cols[3], ("event_type".into(), "text".into()));
    assert_eq!(cols[4], ("ts".into(), "timestamp without time zone".into()));
    assert_eq!(cols[5], ("price".into(), "double precision".into()));
    let schemas: Vec<String> = client
        .query(
            "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(schemas.contains(&"public".to_string()) && schemas.contains(&"truth".to_string()));
    // Unaliased result columns are named as PostgreSQL names them.
    let stmt = client
        .prepare("SELECT count(*), max(user_id), 1 + 1, '7'::int FROM users")
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "max", "?column?", "int4"]);
    // Three-part names resolve in the flashsql database.
    let n = scalar_i64(&client, "SELECT count(*) FROM flashsql.truth.response").await;
    assert_eq!(n, 4);
}

/// Server-side cursors as drivers use them (psycopg's named cursors): DECLARE in a
/// transaction, FETCH in pieces over both protocols, CLOSE; without HOLD a cursor ends with
/// its transaction.
#[tokio::test]
async fn cursors_hand_out_a_result_in_pieces() {
    let server = TestServer::start();
    let client = server.connect().await;
    let ids =
        |rows: &[tokio_postgres::Row]| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "DECLARE c CURSOR FOR SELECT user_id FROM users WHERE user_id <= $1 ORDER BY user_id",
            &[&10i64],
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&client.query("FETCH 3 FROM c", &[]).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        ids(&client.query("FETCH FORWARD 2 FROM c", &[]).await.unwrap()),
        vec![4, 5]
    );
    assert_eq!(
        ids(&client.query("FETCH NEXT FROM c", &[]).await.unwrap()),
        vec![6]
    );
    assert_eq!(
        ids(&client.query("FETCH ALL FROM c", &[]).await.unwrap()),
        vec![7, 8, 9, 10]
    );
    assert!(
        client
            .query("FETCH 5 FROM c", &[])
            .await
            .unwrap()
            .is_empty()
    );
    // Simple protocol too; a second cursor alongside.
    client
        .batch_execute("DECLARE d CURSOR FOR SELECT item_id FROM items ORDER BY item_id")
        .await
        .unwrap();
    let rows = client.simple_query("FETCH 4 FROM d").await.unwrap();
    let fetched = rows
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(fetched, 4);
    // Each error aborts the block, as in PostgreSQL: a savepoint before it recovers.
    client.batch_execute("SAVEPOINT s").await.unwrap();
    let e = client
        .query("FETCH PRIOR FROM d", &[])
        .await
        .expect_err("forward only");
    assert_eq!(crate::common::sqlstate(&e), "0A000");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    client.batch_execute("CLOSE d").await.unwrap();
    let e = client
        .query("FETCH 1 FROM d", &[])
        .await
        .expect_err("closed");
    assert_eq!(crate::common::sqlstate(&e), "34000");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    let e = client
        .batch_execute("DECLARE c CURSOR FOR SELECT 1")
        .await
        .expect_err("name taken");
    assert_eq!(crate::common::sqlstate(&e), "42P03");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    // WITHOUT HOLD (the default): gone with the transaction; WITH HOLD stays.
    let e = client
        .query("FETCH 1 FROM c", &[])
        .await
        .expect_err("ended with COMMIT");
    assert_eq!(crate::common::sqlstate(&e), "34000");
    client
        .batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT user_id FROM users ORDER BY user_id")
        .await
        .unwrap();
    client.batch_execute("BEGIN; COMMIT").await.unwrap();
    assert_eq!(
        ids(&client.query("FETCH 2 FROM h", &[]).await.unwrap()),
        vec![1, 2]
    );
    // WITH HOLD declared in a block: kept by its COMMIT (and later blocks' ROLLBACKs),
    // closed by its ROLLBACK, as in PostgreSQL.
    client
        .batch_execute(
            "BEGIN; DECLARE kept CURSOR WITH HOLD FOR SELECT user_id FROM users ORDER BY user_id; \
             COMMIT; BEGIN; ROLLBACK",
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&client.query("FETCH 1 FROM kept", &[]).await.unwrap()),
        vec![1]
    );
    client
        .batch_execute(
            "BEGIN; DECLARE undone CURSOR WITH HOLD FOR SELECT user_id FROM users; ROLLBACK",
        )
        .await
        .unwrap();
    let e = client
        .query("FETCH 1 FROM undone", &[])
        .await
        .expect_err("closed by ROLLBACK");
    assert_eq!(crate::common::sqlstate(&e), "34000");
    assert_eq!(
        ids(&client.query("FETCH 1 FROM h", &[]).await.unwrap()),
        vec![3],
        "a cursor from outside the block stays"
    );
}

/// Time values read as PostgreSQL writes them: `timestamptz` (and `now()`) with its offset
/// and type, seconds without a zero fraction.
#[tokio::test]
async fn times_read_as_postgresql_writes_them() {
    let server = TestServer::start();
    let client = server.connect().await;
    let rows = text_rows(
        &client
            .simple_query(
                "SELECT '2018-01-01 12:00:00+02'::timestamptz, '2018-01-01 12:00:00'::timestamp, \
                 '12:00:01.5'::time, '12:00:01'::time",
            )
            .await
            .expect("query"),
    );
    assert_eq!(
        rows,
        vec![vec![
            Some("2018-01-01 10:00:00+00".to_string()),
            Some("2018-01-01 12:00:00".to_string()),
            Some("12:00:01.5".to_string()),
            Some("12:00:01".to_string()),
        ]]
    );
    let statement = client
        .prepare("SELECT now(), '2018-01-01 12:00:00+02'::timestamptz")
        .await
        .expect("prepare");
    for column in statement.columns() {
        assert_eq!(*column.type_(), Type::TIMESTAMPTZ);
    }
}
