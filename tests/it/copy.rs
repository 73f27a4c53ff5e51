//! COPY FROM STDIN (text and CSV) and COPY TO STDOUT; PostgreSQL's array literals, in COPY
//! and wherever SQL casts text to an array.

use bytes::Bytes;
use futures::{SinkExt, StreamExt, pin_mut};

use crate::common::{TestServer, answer, scalar_i64, sqlstate, text_rows};

async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await?;
    sink.finish().await
}

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.unwrap();
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn copy_in_text_and_csv_then_copy_out() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE c (id BIGINT, name TEXT, price DOUBLE PRECISION, ok BOOLEAN)")
        .await
        .unwrap();
    let n = copy_in(
        &client,
        "COPY c FROM STDIN",
        "1\talpha\t1.5\tt\n2\t\\N\t2\tf\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let n = copy_in(
        &client,
        "COPY c (id, name) FROM STDIN WITH (FORMAT csv, HEADER true)",
        "id,name\n3,\"with, comma\"\n4,\"quote \"\"q\"\"\"\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let rows = client
        .query("SELECT id, name, price, ok FROM c ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1].get::<_, Option<String>>(1), None);
    assert_eq!(rows[2].get::<_, String>(1), "with, comma");
    assert_eq!(rows[3].get::<_, String>(1), "quote \"q\"");
    assert_eq!(rows[3].get::<_, Option<f64>>(2), None);
    assert_eq!(rows[0].get::<_, Option<bool>>(3), Some(true));

    let text = copy_out(
        &client,
        "COPY (SELECT id, name FROM c ORDER BY id) TO STDOUT",
    )
    .await;
    assert_eq!(text, "1\talpha\n2\t\\N\n3\twith, comma\n4\tquote \"q\"\n");
    let csv = copy_out(
        &client,
        "COPY (SELECT id, name FROM c WHERE id >= 3 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)",
    )
    .await;
    assert_eq!(csv, "id,name\n3,\"with, comma\"\n4,\"quote \"\"q\"\"\"\n");
    let whole = copy_out(&client, "COPY c TO STDOUT WITH (FORMAT csv)").await;
    assert_eq!(whole.lines().count(), 4);
}

#[tokio::test]
async fn a_malformed_line_fails_the_copy_with_its_line_number_and_loads_nothing() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE m (id BIGINT, v DOUBLE PRECISION)")
        .await
        .unwrap();
    copy_in(&client, "COPY m FROM STDIN", "1\t1.0\n")
        .await
        .unwrap();
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\t{i}.5\n"));
    }
    data.push_str("oops\t1.0\n");
    let e = copy_in(&client, "COPY m FROM STDIN", &data)
        .await
        .expect_err("bad line");
    assert_eq!(sqlstate(&e), "22P02", "{e:?}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("line 5001"), "{msg}");
    let e = copy_in(&client, "COPY m FROM STDIN WITH (FORMAT csv)", "1,2,3\n")
        .await
        .expect_err("extra column");
    assert_eq!(sqlstate(&e), "22P04", "{e:?}");
    let n = scalar_i64(&client, "SELECT count(*) FROM m").await;
    assert_eq!(n, 1, "nothing of the failed COPYs is visible");
}

/// Array columns take PostgreSQL's array literals in text and CSV — what COPY TO writes
/// reads back as the same lists — and a malformed one fails the COPY with 22P02, naming
/// its line, and loads nothing.
#[tokio::test]
async fn array_columns_take_postgresql_array_literals() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE arrays (k BIGINT, f DOUBLE PRECISION[], i INT[], t TEXT[], b BIGINT[])",
    )
    .await
    .unwrap();
    let text = "1\t{1.5,2.5,-3e2}\t{1,2}\t{a,\"b c\",\"d,e\",NULL,\"NULL\"}\t{9007199254740993}\n\
                2\t{}\t{ 3 , NULL }\t{}\t\\N\n\
                3\t\\N\t{}\t{\"q\\\\\"x\"}\t{}\n";
    assert_eq!(
        copy_in(&c, "COPY arrays FROM STDIN", text).await.unwrap(),
        3
    );
    let csv = "4,\"{0.25,NULL}\",\"{7}\",\"{\"\"x,y\"\",z}\",\"{-1,1}\"\n";
    assert_eq!(
        copy_in(&c, "COPY arrays FROM STDIN WITH (FORMAT csv)", csv)
            .await
            .unwrap(),
        1
    );
    let rows = text_rows(
        &c.simple_query(
            "SELECT k, f, i, t, b, cardinality(f), f[2], t[4] IS NULL FROM arrays ORDER BY k",
        )
        .await
        .unwrap(),
    );
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s("1"),
                s("{1.5,2.5,-300.0}"),
                s("{1,2}"),
                s(r#"{a,"b c","d,e",NULL,"NULL"}"#),
                s("{9007199254740993}"),
                s("3"),
                s("2.5"),
                s("t"),
            ],
            vec![
                s("2"),
                s("{}"),
                s("{3,NULL}"),
                s("{}"),
                None,
                s("0"),
                None,
                s("t")
            ],
            vec![
                s("3"),
                None,
                s("{}"),
                s(r#"{"q\"x"}"#),
                s("{}"),
                None,
                None,
                s("t")
            ],
            vec![
                s("4"),
                s("{0.25,NULL}"),
                s("{7}"),
                s(r#"{"x,y",z}"#),
                s("{-1,1}"),
                s("2"),
                None,
                s("t"),
            ],
        ]
    );
    // What COPY TO writes, COPY FROM reads back as the same table.
    for format in ["text", "csv"] {
        let out = copy_out(
            &c,
            &format!("COPY (SELECT * FROM arrays ORDER BY k) TO STDOUT WITH (FORMAT {format})"),
        )
        .await;
        c.batch_execute("CREATE TABLE arrays_back (k BIGINT, f DOUBLE PRECISION[], i INT[], t TEXT[], b BIGINT[])")
            .await
            .unwrap();
        assert_eq!(
            copy_in(
                &c,
                &format!("COPY arrays_back FROM STDIN WITH (FORMAT {format})"),
                &out
            )
            .await
            .unwrap(),
            4
        );
        assert_eq!(
            scalar_i64(
                &c,
                "SELECT count(*) FROM (SELECT * FROM arrays EXCEPT SELECT * FROM arrays_back) d"
            )
            .await,
            0,
            "{format}: {out}"
        );
        c.batch_execute("DROP TABLE arrays_back").await.unwrap();
    }
    // Malformed literals and bad elements fail the whole COPY, naming the line.
    for (data, needle) in [
        ("5\t{1,x}\t{}\t{}\t{}\n", "line 1"),
        ("5\t{}\t{}\t{}\t{}\n6\t1.5\t{}\t{}\t{}\n", "line 2"),
        ("5\t{}\t{1,,2}\t{}\t{}\n", "malformed array literal"),
        ("5\t{}\t{}\t{\"open}\t{}\n", "malformed array literal"),
    ] {
        let e = copy_in(&c, "COPY arrays FROM STDIN", data)
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "22P02", "{data:?}: {e:?}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(needle), "{data:?}: {message}");
    }
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM arrays").await, 4);
}

/// Text cast to an array in SQL reads as PostgreSQL reads an array literal: in INSERT and
/// UPDATE into array columns, in `CAST` and `::`, over literals and columns; a malformed one
/// is 22P02.
#[tokio::test]
async fn sql_casts_text_to_arrays_as_postgresql_does() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE lit (k BIGINT, f DOUBLE PRECISION[], i INT[], t TEXT[])")
        .await
        .unwrap();
    c.batch_execute(
        "INSERT INTO lit VALUES (1, '{1.5,2.5}', '{1,NULL}', '{a,\"b c\"}'), (2, '{}', NULL, '{x}'); \
         UPDATE lit SET i = '{7, 8}' WHERE k = 2",
    )
    .await
    .unwrap();
    assert_eq!(
        answer(&c, "SELECT k, f, i, t, cardinality(f) FROM lit ORDER BY k").await,
        ["1|{1.5,2.5}|{1,NULL}|{a,\"b c\"}|2", "2|{}|{7,8}|{x}|0"]
    );
    assert_eq!(
        answer(
            &c,
            "SELECT CAST('{1,2}' AS INT[]), '{3,4}'::BIGINT[], CAST(s AS TEXT[]) \
             FROM (VALUES ('{p,q}'), ('{}'), (NULL)) AS v(s) ORDER BY 3"
        )
        .await,
        ["{1,2}|{3,4}|{}", "{1,2}|{3,4}|{p,q}", "{1,2}|{3,4}|NULL"]
    );
    for sql in [
        "SELECT CAST('{1,x}' AS INT[])",
        "INSERT INTO lit (k, i) VALUES (3, '1,2')",
        "SELECT CAST(s AS INT[]) FROM (VALUES ('{1}'), ('{2,,3}')) AS v(s)",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "22P02", "{sql}: {e:?}");
    }
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM lit").await, 2);
}
