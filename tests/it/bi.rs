//! The start-up and schema-browsing queries of BI tools and shells — pgcli, DBeaver,
//! Metabase, Grafana and pgAdmin — replayed against the real server. The queries are the
//! tools' own, copied from their sources into `tests/bi/<tool>.sql` (each preceded by a
//! `-- source:` line naming the file it comes from, and followed by a line `;;`).
//!
//! Each query runs over the simple protocol (psycopg, libpq) and, when it is one statement,
//! over the extended protocol with binary results (pgjdbc, pgx), as the tools send them.
//! A query must not fail, except those listed in `KNOWN_GAPS` with the reason — and those
//! must still fail, so that the list stays true.

use std::path::Path;

use tokio_postgres::Client;

use crate::common::TestServer;

/// Queries that still fail, by tool and a phrase of their `-- source:` line, with the
/// reason (none at present: every replayed query runs).
const KNOWN_GAPS: [(&str, &str, &str); 0] = [];

/// One replayed query.
struct Replay {
    source: String,
    sql: String,
}

fn replays(text: &str) -> Vec<Replay> {
    let mut out = Vec::new();
    let mut source = String::new();
    let mut sql = String::new();
    for line in text.lines() {
        if line.trim() == ";;" {
            out.push(Replay {
                source: std::mem::take(&mut source),
                sql: std::mem::take(&mut sql),
            });
        } else if sql.is_empty() && line.starts_with("-- source:") {
            source = line.trim_start_matches("-- source:").trim().to_string();
        } else {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

/// The oids the tools would have read before sending these queries, as literals.
async fn oids(client: &Client) -> Vec<(&'static str, String)> {
    let one = |sql: &'static str| async move {
        client
            .simple_query(sql)
            .await
            .expect("oid lookup")
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .expect("an oid")
    };
    vec![
        (
            "{items_oid}",
            one(
                "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                 ON n.oid = c.relnamespace WHERE c.relname = 'items' AND n.nspname = 'public'",
            )
            .await,
        ),
        (
            "{public_oid}",
            one("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'").await,
        ),
        (
            "{database_oid}",
            one("SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()").await,
        ),
    ]
}

/// Whether the text holds exactly one statement worth preparing (not comments or `;` only).
fn one_statement(sql: &str) -> bool {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let body = code.trim().trim_end_matches(';');
    !body.trim().is_empty() && !body.contains(';')
}

async fn replay_tool(tool: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/bi/{tool}.sql"));
    let text = std::fs::read_to_string(&path).expect("replay file");
    let queries = replays(&text);
    assert!(queries.len() >= 10, "{tool}: {} queries", queries.len());
    let server = TestServer::start();
    let client = server.connect().await;
    let oids = oids(&client).await;
    let mut failures = Vec::new();
    let mut gaps_seen = Vec::new();
    for q in &queries {
        assert!(!q.source.is_empty(), "{tool}: a query without its source");
        let mut sql = q.sql.clone();
        for (placeholder, oid) in &oids {
            sql = sql.replace(placeholder, oid);
        }
        let mut error = client.simple_query(&sql).await.err().map(|e| ("simple", e));
        if error.is_none() && one_statement(&sql) {
            error = client.query(&sql, &[]).await.err().map(|e| ("extended", e));
        }
        let gap = KNOWN_GAPS
            .iter()
            .find(|(t, phrase, _)| *t == tool && q.source.contains(phrase));
        match (error, gap) {
            (None, None) => {}
            (Some(_), Some(gap)) => gaps_seen.push(gap.1),
            (Some((protocol, e)), None) => failures.push(format!(
                "{} [{protocol}]: {}",
                q.source,
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            )),
            (None, Some(gap)) => failures.push(format!(
                "{}: listed as a known gap ({}) but it runs now: remove it from KNOWN_GAPS",
                q.source, gap.2
            )),
        }
        // A failed statement must not leave the session in a failed block.
        client.batch_execute("ROLLBACK").await.ok();
    }
    for (t, phrase, _) in KNOWN_GAPS.iter().filter(|(t, ..)| *t == tool) {
        assert!(
            gaps_seen.contains(phrase),
            "{t}: the known gap \"{phrase}\" matches no failing query"
        );
    }
    assert!(
        failures.is_empty(),
        "{tool}: {} of {} queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn pgcli_starts_and_describes_tables() {
    replay_tool("pgcli").await;
}

#[tokio::test]
async fn dbeaver_connects_and_browses() {
    replay_tool("dbeaver").await;
}

#[tokio::test]
async fn metabase_connects_and_syncs() {
    replay_tool("metabase").await;
}

#[tokio::test]
async fn grafana_checks_health_and_lists_tables() {
    replay_tool("grafana").await;
}

#[tokio::test]
async fn pgadmin_connects_and_browses() {
    replay_tool("pgadmin").await;
}

/// pgAdmin reads the connected role's rights from `pg_roles` where `rolname = current_user`
/// (with its memberships, transitively): it must find the session's role, as it is.
#[tokio::test]
async fn pgadmin_finds_the_connected_role() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bi/pgadmin.sql");
    let text = std::fs::read_to_string(path).expect("replay file");
    let query = replays(&text)
        .into_iter()
        .find(|q| q.source.contains("_set_user_info"))
        .expect("pgAdmin's role query");
    let server = TestServer::start();
    let client = server.connect().await;
    let rows: Vec<_> = client
        .simple_query(&query.sql)
        .await
        .expect("runs")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "one role: the session's");
    assert_eq!(rows[0].get("name"), Some("flashsql"));
    assert_eq!(rows[0].get("is_superuser"), Some("t"));
    assert_eq!(rows[0].get("can_signal_backend"), Some("f"));
}
