-- How much of the Bayes AUC an observer of the latent type could reach, on the purchase
-- model's validation rows (the latest 20 % of exposures by time, as train_model's time split).
-- Run against a server holding the small world (seed 42):
--   psql -h 127.0.0.1 -p 5433 -U flashsql -d flashsql -f benches/compare/purchase_oracle.sql
-- 'recomputed_truth' re-derives the true probabilities from truth.* (it must equal 'bayes');
-- 'type_only' knows each user's latent type and every offer feature exactly but not the
-- user's own intercept and discount-slope noise, which only purchases reveal.
CREATE TEMPORARY TABLE oracle_rows AS
SELECT x.exposure_id, CAST(x.purchased AS INT) AS y, t.true_prob,
       r.b0 + r.affinity * CAST(array_has(u.favourite_categories, i.category_id) AS DOUBLE)
         - r.rho * ln(i.base_price / ti.ref_price) + r.kappa * (1 - x.time_left)
         + r.hour_amplitude * cos(2 * pi() * (date_part('hour', x.shown_ts) + date_part('minute', x.shown_ts) / 60.0 - r.peak_hour) / 24) AS base,
       r.beta * x.discount AS type_slope, u.discount_sensitivity * x.discount AS user_slope, u.bias
FROM exposures x
JOIN truth.exposures t USING (exposure_id)
JOIN truth.users u ON u.user_id = x.user_id
JOIN truth.response r ON r.type_id = u.type_id
JOIN items i ON i.item_id = x.item_id
JOIN truth.items ti ON ti.item_id = x.item_id
WHERE x.shown_ts >= (SELECT shown_ts FROM exposures ORDER BY shown_ts, exposure_id LIMIT 1 OFFSET 51659);
SELECT count(*), round(auc(y, true_prob), 4) AS bayes,
       round(auc(y, base + user_slope + bias), 4) AS recomputed_truth,
       round(auc(y, base + type_slope), 4) AS type_only,
       round(auc(y, base + user_slope), 4) AS type_and_user_slope,
       round(auc(y, base + type_slope + bias), 4) AS type_and_user_bias
FROM oracle_rows;
