//! The dbt example project (`examples/dbt_flash_sale`) against the real server, as its users
//! run it: `dbt debug`, `run` twice, `test`, `snapshot` twice, `run --full-refresh`, `docs
//! generate`; the incremental model adds only new rows, the snapshot closes a changed row, and
//! the relations survive a restart. Needs dbt-core 1.10 + dbt-postgres 1.9: `dbt` on PATH or
//! the path in FLASHSQL_DBT (`.ci/run` installs them into a virtual environment).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestServer, available};

fn dbt_binary() -> Option<PathBuf> {
    let dbt = std::env::var_os("FLASHSQL_DBT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("dbt"));
    let runs = Command::new(&dbt)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    available(
        runs,
        "FLASHSQL_REQUIRE_CLIENTS",
        &format!(
            "{} does not run; pip install dbt-core~=1.10.0 dbt-postgres~=1.9.0 (or set FLASHSQL_DBT)",
            dbt.display()
        ),
    )
    .then_some(dbt)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates the project copy");
    for entry in std::fs::read_dir(from).expect("reads the project") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "target" || name == "logs" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copies a file");
        }
    }
}

fn dbt(bin: &Path, project: &Path, server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .args(["--profiles-dir", "."])
        .current_dir(project)
        .env("FLASHSQL_HOST", server.addr.ip().to_string())
        .env("FLASHSQL_PORT", server.addr.port().to_string())
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("dbt runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dbt {} failed:\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    let client = server.connect().await;
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dbt_example_project_runs() {
    let Some(bin) = dbt_binary() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = tmp.path().join("project");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/dbt_flash_sale"),
        &project,
    );
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);

    dbt(&bin, &project, &server, &["debug"]);
    dbt(&bin, &project, &server, &["run"]);
    let days = "SELECT count(*) FROM analytics.daily_events";
    let before = count(&server, days).await;
    // A new day of events (a copy of the last day's, 30 days on): the second run adds one
    // row per event type of that day and leaves the others alone.
    let last_day = "FROM events WHERE item_id IS NOT NULL AND date_trunc('day', ts) = \
                    (SELECT date_trunc('day', max(ts)) FROM events WHERE item_id IS NOT NULL)";
    let new_types = count(
        &server,
        &format!("SELECT count(DISTINCT event_type) {last_day}"),
    )
    .await;
    assert!(new_types > 0);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "INSERT INTO events SELECT user_id, item_id, category_id, event_type, \
             ts + INTERVAL '30 days', price, discount, campaign_id {last_day}"
        ))
        .await
        .expect("new events");
    dbt(&bin, &project, &server, &["run"]);
    assert_eq!(count(&server, days).await, before + new_types);
    assert_eq!(
        count(
            &server,
            "SELECT count(DISTINCT day_key) FROM analytics.daily_events"
        )
        .await,
        before + new_types,
        "an incremental run duplicated rows"
    );
    // The merge model: one row per item sold, counting every purchase (the new day's too).
    assert_eq!(
        count(&server, "SELECT sum(purchases) FROM analytics.item_sales").await,
        count(
            &server,
            "SELECT count(*) FROM analytics.stg_events WHERE event_type = 'purchase'"
        )
        .await,
        "the merged counts are not the recount"
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM analytics.item_sales").await,
        count(
            &server,
            "SELECT count(DISTINCT item_id) FROM analytics.item_sales"
        )
        .await,
        "the merge duplicated items"
    );
    let out = dbt(&bin, &project, &server, &["test"]);
    assert!(out.contains("ERROR=0"), "{out}");

    // Snapshots: a changed campaign row is closed and its new version added.
    dbt(&bin, &project, &server, &["snapshot"]);
    let rows = count(&server, "SELECT count(*) FROM snapshots.campaign_snapshot").await;
    client
        .batch_execute(
            "UPDATE campaigns SET discount = 0.45 WHERE campaign_id = 1 \
             AND item_id = (SELECT min(item_id) FROM campaigns WHERE campaign_id = 1)",
        )
        .await
        .expect("a campaign changes");
    dbt(&bin, &project, &server, &["snapshot"]);
    assert_eq!(
        count(&server, "SELECT count(*) FROM snapshots.campaign_snapshot").await,
        rows + 1
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM snapshots.campaign_snapshot WHERE dbt_valid_to IS NOT NULL"
        )
        .await,
        1
    );

    dbt(&bin, &project, &server, &["run", "--full-refresh"]);
    dbt(&bin, &project, &server, &["docs", "generate"]);
    let catalog = std::fs::read_to_string(project.join("target/catalog.json")).expect("catalog");
    assert!(
        catalog.contains("\"user_features\""),
        "catalog lacks the models"
    );

    // The plan the project computes, and its relations after a restart.
    let plan_rows = count(&server, "SELECT count(*) FROM analytics.discount_plan").await;
    assert!(plan_rows > 0);
    drop(client);
    server.stop();
    let server = TestServer::start_in(&data, &[]);
    assert_eq!(
        count(&server, "SELECT count(*) FROM analytics.discount_plan").await,
        plan_rows
    );
    assert!(count(&server, "SELECT count(*) FROM analytics.stg_events").await > 0);
}
