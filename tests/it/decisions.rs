//! The decision and evaluation functions over the wire: a backend service reading a discount
//! plan with typed parameters, the scheduler's Thompson step, the simulator, and metrics.
//! Their errors' SQLSTATEs are checked with all the others in `errors.rs`.

use crate::common::{TestServer, scalar_i64};

#[tokio::test]
async fn a_service_reads_plans_and_steps_over_sql() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE curves AS SELECT * FROM (VALUES \
               (1, 0.0, 10.0, 10.0, 5.0), (1, 0.1, 14.0, 10.0, 5.0), (1, 0.2, 20.0, 10.0, 5.0), \
               (2, 0.0, 5.0, 10.0, 5.0), (2, 0.1, 8.0, 10.0, 5.0), (2, 0.2, 12.0, 10.0, 5.0)) \
             AS t(item_id, discount, expected_units, price, unit_cost)",
        )
        .await
        .unwrap();
    // Extended protocol, binary results. Revenue per level — item 1: 100, 126, 160 (subsidy
    // 0, 14, 40); item 2: 50, 72, 96 (subsidy 0, 8, 24). Within a budget of 20 the best is
    // item 1 at 10 % and item 2 at 0 %: 176 (both at 10 % would cost 22).
    let rows = client
        .query(
            "SELECT item_id, discount, objective FROM optimize_discounts((SELECT * FROM curves), budget => 20) ORDER BY item_id",
            &[],
        )
        .await
        .unwrap();
    let plan: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(plan, vec![(1, 0.1), (2, 0.0)]);
    let objective: f64 = rows[0].get(2);
    assert!((objective - 176.0).abs() < 1e-9, "{objective}");

    // Prepared once with a parameter inside the function's input, executed per item. Alone,
    // each item's best level within 20 is 10 % (20 % would cost 40 and 24).
    let per_item = client
        .prepare(
            "SELECT item_id, discount FROM optimize_discounts((SELECT * FROM curves WHERE item_id = $1), budget => 20)",
        )
        .await
        .unwrap();
    for item in [1i64, 2] {
        let rows = client.query(&per_item, &[&item]).await.unwrap();
        let plan: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(plan, vec![(item, 0.1)]);
    }

    // The options take parameters too: the budget decides item 1's level (20 % costs 40,
    // 10 % costs 14).
    let per_budget = client
        .prepare_typed(
            "SELECT discount FROM optimize_discounts((SELECT * FROM curves WHERE item_id = $1), budget => $2, objective => $3)",
            &[
                tokio_postgres::types::Type::INT8,
                tokio_postgres::types::Type::FLOAT8,
                tokio_postgres::types::Type::TEXT,
            ],
        )
        .await
        .unwrap();
    for (budget, level) in [(13.0f64, 0.0f64), (20.0, 0.1), (40.0, 0.2)] {
        let row = client
            .query_one(&per_budget, &[&1i64, &budget, &"revenue"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, f64>(0), level, "budget {budget}");
    }
    let err = client
        .query_one(&per_budget, &[&1i64, &-1.0f64, &"revenue"])
        .await
        .expect_err("a negative budget");
    assert_eq!(err.code().map(|c| c.code()), Some("22023"));

    // The scheduler's step: one row per item, deterministic for a seed.
    let step = "SELECT item_id, discount FROM next_discounts((SELECT c.item_id, c.discount, c.price, 10.0 AS inventory, 2.0 AS traffic, 100.0 AS shown, 20.0 AS sold FROM curves c), periods_left => 5, seed => 3) ORDER BY item_id";
    let a = client.query(step, &[]).await.unwrap();
    let b = client.query(step, &[]).await.unwrap();
    assert_eq!(a.len(), 2);
    let pick = |rows: &[tokio_postgres::Row]| -> Vec<Option<f64>> {
        rows.iter().map(|r| r.get(1)).collect()
    };
    assert_eq!(pick(&a), pick(&b));

    // The simulator over the wire, and a metric aggregate over the logged exposures.
    let n = scalar_i64(
        &client,
        "SELECT count(*) FROM simulate_flash_sale(policy => 'ts_update', horizon => 200, trials => 30, seed => 1)",
    )
    .await;
    assert_eq!(n, 30);
    let auc: f64 = client
        .query_one("SELECT auc(purchased, discount) FROM exposures", &[])
        .await
        .unwrap()
        .get(0);
    // Deeper discounts sell more in this world: the discount alone ranks buyers above chance.
    assert!(auc > 0.5 && auc < 1.0, "{auc}");
}

/// Pseudonyms and private aggregates over the wire: RFC 4231's vector as SQL computes it,
/// the BIGINT form as the hex form's first 8 bytes, the same token for the same id in two
/// tables, seeded noise repeating and the operating system's not.
#[tokio::test]
async fn pseudonyms_and_private_aggregates_over_sql() {
    let server = TestServer::start();
    let client = server.connect().await;
    let row = client
        .query_one(
            "SELECT pseudonymize('what do ya want for nothing?', 'Jefe'), \
                    pseudonymize_bigint('what do ya want for nothing?', 'Jefe'), \
                    pseudonymize(decode('4869205468657265', 'hex'), decode(repeat('0b', 20), 'hex'))",
            &[],
        )
        .await
        .unwrap();
    let (hex, int, binary): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(int, i64::from_str_radix("5bdcc146bf60754e", 16).unwrap());
    assert_eq!(
        binary,
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    // The same user gets the same token in events and in exposures: the shared tables join.
    let unmatched = scalar_i64(
        &client,
        "SELECT count(*) FROM (SELECT DISTINCT pseudonymize_bigint(user_id, 'k') AS t FROM exposures) x \
         WHERE t NOT IN (SELECT pseudonymize_bigint(user_id, 'k') FROM events)",
    )
    .await;
    assert_eq!(unmatched, 0);
    let noisy = |sql: &'static str| {
        let client = &client;
        async move {
            let r = client.query_one(sql, &[]).await.unwrap();
            r.get::<_, f64>(0)
        }
    };
    let seeded = "SELECT dp_count(user_id, 1.0, seed => 3) FROM events";
    assert_eq!(noisy(seeded).await, noisy(seeded).await);
    let fresh = "SELECT dp_count(user_id, 1.0) FROM events";
    assert_ne!(noisy(fresh).await, noisy(fresh).await);
    let exact = scalar_i64(&client, "SELECT count(user_id) FROM events").await as f64;
    // Laplace(1/1): |noise| > 20 has probability e^-20.
    assert!((noisy(fresh).await - exact).abs() < 20.0);
    let avg = noisy("SELECT dp_avg(price, 0, 500, 0.1) FROM events WHERE price IS NOT NULL").await;
    assert!((0.0..=500.0).contains(&avg), "{avg}");
}
