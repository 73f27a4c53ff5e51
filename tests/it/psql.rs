//! psql against the server: meta-commands, expanded output, \copy.
//! Skips (saying so) where psql is not installed, unless FLASHSQL_REQUIRE_PSQL=1 (CI).

use crate::common::{TestServer, psql_available, psql_command};

/// Runs each command with `-c`, in one psql session.
fn psql(server: &TestServer, script: &str) -> String {
    psql_all(server, &[script])
}

fn psql_all(server: &TestServer, commands: &[&str]) -> String {
    let out = psql_command(server)
        .args(commands.iter().flat_map(|c| ["-c", c]))
        .output()
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "psql failed on {commands:?}:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn psql_meta_commands_work() {
    if !psql_available() {
        return;
    }
    let server = TestServer::start();
    let dt = psql(&server, "\\dt");
    for t in ["events", "exposures", "campaigns", "users", "items"] {
        assert!(dt.contains(t), "\\dt lists {t}:\n{dt}");
    }
    let d = psql(&server, "\\d events");
    assert!(d.contains("timestamp without time zone"), "{d}");
    assert!(d.contains("double precision"), "{d}");
    assert!(d.contains("bigint"), "{d}");
    let dn = psql(&server, "\\dn");
    assert!(dn.contains("truth") && dn.contains("public"), "{dn}");
    let l = psql(&server, "\\l");
    assert!(l.contains("flashsql"), "{l}");
    psql(
        &server,
        "CREATE VIEW buyers AS SELECT DISTINCT user_id FROM exposures WHERE purchased",
    );
    let dv = psql(&server, "\\dv");
    assert!(dv.contains("buyers"), "{dv}");
    let x = psql_all(
        &server,
        &[
            "\\x on",
            "SELECT user_id, segment FROM users WHERE user_id = 1",
        ],
    );
    assert!(x.contains("-[ RECORD 1 ]"), "{x}");
    // Tab completion asks pg_catalog for relation names.
    let tab = psql(
        &server,
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
         AND substring(pg_catalog.quote_ident(c.relname),1,2)='ev' \
         AND pg_catalog.pg_table_is_visible(c.oid) LIMIT 1000",
    );
    assert!(tab.contains("events"), "{tab}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("u.csv");
    psql(
        &server,
        &format!(
            "\\copy (SELECT user_id FROM users WHERE user_id <= 3 ORDER BY 1) TO '{}' WITH (FORMAT csv)",
            file.display()
        ),
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n2\n3\n");
    psql(&server, "CREATE TABLE back (user_id BIGINT)");
    psql(
        &server,
        &format!("\\copy back FROM '{}' WITH (FORMAT csv)", file.display()),
    );
    let n = psql(&server, "SELECT sum(user_id) AS s FROM back");
    assert!(n.contains(" 6"), "{n}");
}

/// The schema-browsing meta-commands analysts type all run (each used to fail on a missing
/// catalog function or on `ARRAY(subquery)`), and views are listed as views.
#[test]
fn psql_browsing_commands_run_without_errors() {
    if !psql_available() {
        return;
    }
    let server = TestServer::start();
    psql_all(
        &server,
        &[
            "CREATE SCHEMA mart",
            "CREATE TABLE mart.buyers AS SELECT user_id FROM users",
            "CREATE VIEW mart.vips AS SELECT user_id FROM users WHERE segment = 'vip'",
        ],
    );
    for command in [
        "\\dt",
        "\\dt+",
        "\\dv",
        "\\dv+",
        "\\dn",
        "\\d users",
        "\\d+ users",
        "\\d+ mart.vips",
        "\\df",
        "\\du",
        "\\l",
        "\\dx",
        "\\di",
        "\\ds",
        "\\dn+",
        "\\df+ version",
        "\\dT",
        "\\l+",
        "\\dp",
        "\\z mart.*",
        "\\dd",
        "\\do",
        "\\dc",
        "\\dC",
        "\\dF",
        "\\dA",
        "\\db",
        "\\dL",
        "\\dX",
        "\\ddp",
        "\\drds",
        "\\dO",
        "\\dx+",
        "\\deu",
    ] {
        psql(&server, command);
    }
    let privileges = psql(&server, "\\dp mart.*");
    assert!(
        privileges.contains("buyers") && privileges.contains("vips"),
        "{privileges}"
    );
    let views = psql(&server, "\\dv mart.*");
    assert!(
        views.contains("vips") && !views.contains("buyers"),
        "{views}"
    );
    let tables = psql(&server, "\\dt mart.*");
    assert!(
        tables.contains("buyers") && !tables.contains("vips"),
        "{tables}"
    );
    let dbt_listing = psql(
        &server,
        "select 'table' as type, tablename as name from pg_tables where schemaname ilike 'mart' \
         union all select 'view', viewname from pg_views where schemaname ilike 'mart' order by 2",
    );
    assert!(
        dbt_listing.contains("table | buyers") && dbt_listing.contains("view  | vips"),
        "{dbt_listing}"
    );
}
