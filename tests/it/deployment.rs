//! Champion and challenger over the wire: `train_model(…, deploy => 'if_better')` compares
//! on the same validation rows, `deploy_model` deploys by version or strategy, the choice
//! survives a restart and a query keeps the version it was planned with; and the loop of
//! `docs/loop.md`, run as written, checked against the world's truth.

use tokio_postgres::Client;

use crate::common::{TestServer, sqlstate};

/// Training rows without sequences: quick to train in a debug build.
const ROWS: &str = "CREATE TABLE dep_rows AS SELECT x.purchased AS label, i.category_id, \
                    i.base_price AS price, x.discount, x.user_id \
                    FROM exposures x JOIN items i USING (item_id)";

async fn train(c: &Client, options: &str) {
    c.simple_query(&format!(
        "SELECT * FROM train_model('champ', 'dep_rows', sequence => false, seed => 1, {options})"
    ))
    .await
    .expect("train_model");
}

/// (version, deployed, deployment reason) per stored version.
async fn versions(c: &Client) -> Vec<(i32, bool, Option<String>)> {
    c.query(
        "SELECT version, deployed, deployment FROM flashsql_models WHERE name = 'champ' ORDER BY version",
        &[],
    )
    .await
    .expect("flashsql_models")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Each stored version's validation AUC, by version.
async fn valid_aucs(c: &Client) -> Vec<f64> {
    c.query(
        "SELECT valid_auc FROM flashsql_models WHERE name = 'champ' ORDER BY version",
        &[],
    )
    .await
    .expect("flashsql_models")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn deployed(c: &Client) -> i32 {
    let v: Vec<i32> = versions(c)
        .await
        .into_iter()
        .filter(|(_, d, _)| *d)
        .map(|(v, _, _)| v)
        .collect();
    assert_eq!(v.len(), 1, "exactly one deployed version: {v:?}");
    v[0]
}

async fn deploy(c: &Client, args: &str) -> Result<(i32, i32), String> {
    c.query_one(
        &format!("SELECT previous_version, version FROM deploy_model('champ', {args})"),
        &[],
    )
    .await
    .map(|r| (r.get(0), r.get(1)))
    .map_err(|e| sqlstate(&e))
}

/// The model version a scoring query was planned with, from its plan.
async fn planned_version(c: &Client) -> String {
    let plan: Vec<String> = c
        .query(
            "EXPLAIN SELECT purchase_prob('champ', NULL, category_id, price, discount) FROM dep_rows",
            &[],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    let plan = plan.join("\n");
    let at = plan
        .find("champ@")
        .expect("the plan names a pinned version");
    plan[at..]
        .chars()
        .take_while(|c| *c != '"' && *c != ')' && *c != ',')
        .collect()
}

#[tokio::test]
async fn versions_are_deployed_on_evidence_and_the_choice_is_durable() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let server = TestServer::start_in(&dir, &[]);
    let c = server.connect().await;
    c.batch_execute(ROWS).await.expect("rows");

    // v1 barely trained, deployed as trained (deploy => 'always', the default).
    train(&c, "epochs => 1, learning_rate => 0.000001").await;
    assert_eq!(deployed(&c).await, 1);
    let why = versions(&c).await[0].2.clone().unwrap();
    assert!(why.contains("always"), "{why}");

    // v2 properly trained, deployed only if it beats v1 on the same validation rows.
    train(&c, "epochs => 3, deploy => 'if_better'").await;
    let v = versions(&c).await;
    assert_eq!(deployed(&c).await, 2, "{v:?}");
    let why = v[1].2.clone().unwrap();
    assert!(
        why.contains("if_better") && why.contains("same") && why.contains("version 1"),
        "{why}"
    );
    assert_eq!(planned_version(&c).await, "champ@2");

    // v3 repeats v1's training exactly (same seed, same rows: the same weights), so its AUC
    // is v1's, below v2's: stored, not deployed.
    train(
        &c,
        "epochs => 1, learning_rate => 0.000001, deploy => 'if_better'",
    )
    .await;
    assert_eq!(deployed(&c).await, 2);
    let aucs = valid_aucs(&c).await;
    assert_eq!(aucs[0], aucs[2], "v1 and v3 are the same training");
    assert!(aucs[1] > aucs[0], "{aucs:?}");
    // 'never' stores without deploying.
    train(&c, "epochs => 1, deploy => 'never'").await;
    assert_eq!(deployed(&c).await, 2);

    // By hand, then by strategy.
    assert_eq!(deploy(&c, "version => 3").await, Ok((2, 3)));
    assert_eq!(planned_version(&c).await, "champ@3");
    assert_eq!(deploy(&c, "strategy => 'rollback'").await, Ok((3, 2)));
    assert_eq!(deploy(&c, "strategy => 'most_recent'").await, Ok((2, 4)));
    let (_, chosen) = deploy(&c, "strategy => 'best_score'").await.unwrap();
    let all = valid_aucs(&c).await;
    let top = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(all[chosen as usize - 1], top, "{all:?} chose {chosen}");
    assert_eq!(deploy(&c, "version => 9").await, Err("42704".into()));
    assert_eq!(deploy(&c, "strategy => 'bogus'").await, Err("22023".into()));
    assert_eq!(
        deploy(&c, "version => 1, strategy => 'rollback'").await,
        Err("22023".into())
    );
    assert_eq!(deploy(&c, "version => 1").await.map(|r| r.1), Ok(1));

    // The choice survives a restart.
    drop(c);
    server.stop();
    let server = TestServer::start_in(&dir, &[]);
    let c = server.connect().await;
    assert_eq!(deployed(&c).await, 1);
    let why = versions(&c).await[0].2.clone().unwrap();
    assert!(why.contains("deploy_model"), "{why}");

    // Dropping the deployed version (named as name@N: that version only) falls back to the
    // one deployed before it.
    c.simple_query("SELECT * FROM drop_model('champ@1')")
        .await
        .unwrap();
    assert_eq!(versions(&c).await.len(), 3);
    assert_eq!(deployed(&c).await, chosen);
    // A number is not given twice: after the newest version is dropped, the next is new
    // (and does not inherit the dropped one's deployments).
    let newest = versions(&c).await.iter().map(|v| v.0).max().unwrap();
    if newest != chosen {
        c.simple_query(&format!("SELECT * FROM drop_model('champ', {newest})"))
            .await
            .unwrap();
    }
    train(&c, "epochs => 1, deploy => 'never'").await;
    let now: Vec<i32> = versions(&c).await.iter().map(|v| v.0).collect();
    assert_eq!(*now.last().unwrap(), newest + 1, "{now:?}");
    assert_eq!(deployed(&c).await, chosen);
    // With one version left there is nothing to roll back to.
    for v in now {
        if v != chosen {
            c.simple_query(&format!("SELECT * FROM drop_model('champ', {v})"))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        deploy(&c, "strategy => 'rollback'").await,
        Err("22000".into())
    );
}

/// `docs/loop.md` run as written, block by block, then its numbers checked against the
/// world's truth: the off-policy estimates of the model's plan lie within four standard
/// errors of the plan's true value per offer, and the simulated A/B test finds the
/// optimised plan's profit lift positive.
#[tokio::test]
async fn the_documented_loop_agrees_with_the_truth() {
    let server = TestServer::start();
    let c = server.connect().await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/loop.md"))
        .expect("docs/loop.md");
    let mut rest = doc.as_str();
    let mut blocks = 0;
    while let Some(start) = rest.find("```sql\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").expect("closed block");
        c.simple_query(&body[..end])
            .await
            .unwrap_or_else(|e| panic!("docs/loop.md block {blocks}: {e}"));
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 7, "{blocks} blocks");

    let truth: f64 = c
        .query_one(
            "SELECT avg(q * margin) FROM (
               SELECT 1 / (1 + exp(-(ln(t.true_prob / (1 - t.true_prob))
                                     + u.discount_sensitivity * (p.discount - r.discount)))) AS q,
                      r.price * (1 - p.discount) - r.unit_cost AS margin
               FROM loop_rows r JOIN loop_plan p USING (campaign_id, item_id)
               JOIN truth.exposures t USING (exposure_id) JOIN truth.users u USING (user_id)) s",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for call in [
        "ope_ips(reward, propensity, target_propensity)",
        "ope_snips(reward, propensity, target_propensity)",
        "ope_dr(reward, propensity, target_propensity, estimated_reward, estimated_value)",
    ] {
        let row = c
            .query_one(
                &format!(
                    "SELECT e['estimate'], e['std_error'], e['effective_sample_size'] \
                     FROM (SELECT {call} AS e FROM loop_rounds) s"
                ),
                &[],
            )
            .await
            .unwrap();
        let (estimate, se, ess): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
        println!("{call}: {estimate:.4} ± {se:.4} (ESS {ess:.0}); truth {truth:.4}");
        assert!(
            (estimate - truth).abs() <= 4.0 * se,
            "{call}: {estimate} ± {se} vs truth {truth}"
        );
    }
    let lift = c
        .query_one(
            "SELECT r['effect'], r['p_value'] FROM (SELECT unnest(ttest(policy, profit, control => 'uniform')) AS r FROM loop_ab) s",
            &[],
        )
        .await
        .unwrap();
    let (effect, p): (f64, f64) = (lift.get(0), lift.get(1));
    println!("simulated A/B: optimised − uniform profit {effect:.2}, p = {p:.2e}");
    assert!(effect > 0.0 && p < 0.05, "{effect} {p}");
}
