//! A network started from another model's trained sequence encoder (`train_model(…,
//! encoder_from => 'model')`): pre-train an encoder on one task, fine-tune it on another.

use std::path::Path;

use crate::common::{TestServer, sqlstate};

/// The user vectors of the first rows' sequences under `model`.
async fn vectors(c: &tokio_postgres::Client, model: &str) -> Vec<Vec<f32>> {
    c.query(
        &format!(
            "SELECT user_embedding(seq, '{model}') FROM ft_rows ORDER BY exposure_id LIMIT 40"
        ),
        &[],
    )
    .await
    .expect("user_embedding")
    .iter()
    .map(|r| r.get::<_, Vec<f32>>(0))
    .collect()
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn manifest(data: &Path, model: &str) -> serde_json::Value {
    let path = data
        .join("models")
        .join(model)
        .join("1")
        .join("manifest.json");
    serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json")
}

#[tokio::test]
async fn a_network_starts_from_a_trained_encoder() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE ft_rows AS SELECT x.exposure_id, x.purchased AS label, s.seq, \
         i.category_id, i.base_price AS price, x.discount, x.user_id \
         FROM exposures x JOIN items i USING (item_id) LEFT JOIN \
         (SELECT user_id, behavior_sequence(event_type, category_id, ts) AS seq \
          FROM events GROUP BY user_id) s USING (user_id)",
    )
    .await
    .expect("rows");
    let train = |sql: String| {
        let c = &c;
        async move { c.simple_query(&sql).await.map(|_| ()) }
    };
    // Pre-trained on another task: will the user buy (a propensity network).
    train(
        "SELECT * FROM train_model('pre', (SELECT label, seq, user_id FROM ft_rows), \
         kind => 'propensity', epochs => 1, seed => 1)"
            .into(),
    )
    .await
    .expect("pre-train");
    // Started from it and barely moved: its encoder is the pre-trained one; started from
    // seeded weights with the same step, it is not.
    for (model, from) in [("tuned", ", encoder_from => 'pre'"), ("fresh", "")] {
        train(format!(
            "SELECT * FROM train_model('{model}', 'ft_rows', epochs => 1, \
             learning_rate => 0.000000001, seed => 2{from})"
        ))
        .await
        .expect("train");
    }
    let pre = vectors(&c, "pre").await;
    let tuned = largest_difference(&pre, &vectors(&c, "tuned").await);
    let fresh = largest_difference(&pre, &vectors(&c, "fresh").await);
    assert!(
        tuned < 1e-4,
        "started from the pre-trained encoder: {tuned}"
    );
    assert!(fresh > 1e-2, "seeded weights differ: {fresh}");
    assert_eq!(manifest(&data, "tuned")["encoder_from"], "pre@1");
    assert!(manifest(&data, "fresh").get("encoder_from").is_none());
    // Trained properly from there, it scores as any network does.
    train(
        "SELECT * FROM train_model('tuned', 'ft_rows', epochs => 2, encoder_from => 'pre@1', seed => 2)"
            .into(),
    )
    .await
    .expect("fine-tune");
    let scored = c
        .query_one(
            "SELECT count(purchase_prob('tuned', seq, category_id, price, discount)) FROM ft_rows",
            &[],
        )
        .await
        .expect("score")
        .get::<_, i64>(0);
    assert!(scored > 0);

    // What cannot start from an encoder says so, and stores nothing.
    train("SELECT * FROM train_model('lr', 'ft_rows', kind => 'logistic')".into())
        .await
        .expect("logistic");
    for (options, code, says) in [
        ("encoder_from => 'nosuch'", "42704", "nosuch"),
        ("encoder_from => 'lr'", "22023", "no sequence encoder"),
        (
            "encoder_from => 'pre', embed_dim => 8",
            "22023",
            "32 dimensions and this model's 8",
        ),
        (
            "encoder_from => 'pre', sequence => false",
            "22023",
            "reads no sequence",
        ),
        ("encoder_from => 'pre', kind => 'gbdt'", "22023", "has none"),
    ] {
        let e = c
            .simple_query(&format!(
                "SELECT * FROM train_model('bad', 'ft_rows', epochs => 1, {options})"
            ))
            .await
            .expect_err(options);
        assert_eq!(sqlstate(&e), code, "{options}: {e:?}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(says), "{options}: {message}");
    }
    assert!(!data.join("models").join("bad").join("1").exists());
}
