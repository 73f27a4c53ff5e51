-- The Taobao next-day purchase task, in SQL (run by taobao_next_day.py, or by hand:
--   psql -h 127.0.0.1 -p 5433 -U flashsql flashsql \
--        -v csv=$PWD/../shared/data/taobao/user_behavior_sample.csv -f benches/compare/taobao_next_day.sql
--
-- Task: at each cut-off — midnight in China (UTC+8) of 26 Nov … 3 Dec 2017 — and for each
-- user with at least one event before it, predict whether the user buys anything in the
-- next 24 hours. Everything a row knows comes from events strictly before its cut-off.
-- Days 0–5 (cut-offs 26 Nov … 1 Dec) train; days 6–7 (2 and 3 Dec) test.

CREATE EXTERNAL TABLE taobao_raw (user_id BIGINT, item_id BIGINT, category_id BIGINT,
                                  behavior_type TEXT, ts_s BIGINT)
  STORED AS CSV LOCATION :'csv' OPTIONS ('format.has_header' 'false');

CREATE VIEW taobao_events AS
  SELECT user_id, item_id, category_id, behavior_type, to_timestamp(ts_s) AS ts FROM taobao_raw;

-- 1511625600 is 2017-11-26 00:00 in UTC+8.
CREATE TABLE taobao_cutoffs AS
  SELECT k AS day, to_timestamp(1511625600 + 86400 * k) AS cutoff FROM unnest(range(0, 8)) AS t(k);

-- Point in time: each cut-off sees only the events before it.
CREATE TABLE taobao_history AS
  SELECT c.day, c.cutoff, e.user_id, e.item_id, e.category_id, e.behavior_type, e.ts
  FROM taobao_cutoffs c JOIN taobao_events e ON e.ts < c.cutoff;

-- Hand-made counts: recency, frequency, per-type counts, category affinity.
CREATE TABLE taobao_counts AS
SELECT day, user_id, cutoff,
       behavior_sequence(behavior_type, category_id, ts, 128, cutoff) AS seq,
       date_part('epoch', cutoff - max(ts)) / 3600 AS hours_since_event,
       COALESCE(date_part('epoch', cutoff - max(ts) FILTER (WHERE behavior_type = 'buy')) / 3600, 720) AS hours_since_buy,
       COALESCE(date_part('epoch', cutoff - max(ts) FILTER (WHERE behavior_type = 'cart')) / 3600, 720) AS hours_since_cart,
       count(*) AS events,
       count(*) FILTER (WHERE behavior_type = 'pv') AS views,
       count(*) FILTER (WHERE behavior_type = 'cart') AS carts,
       count(*) FILTER (WHERE behavior_type = 'fav') AS favs,
       count(*) FILTER (WHERE behavior_type = 'buy') AS buys,
       count(*) FILTER (WHERE ts >= cutoff - INTERVAL '1 day') AS events_24h,
       count(*) FILTER (WHERE behavior_type = 'cart' AND ts >= cutoff - INTERVAL '1 day') AS carts_24h,
       count(DISTINCT item_id) AS items,
       count(DISTINCT category_id) AS categories,
       count(DISTINCT item_id) FILTER (WHERE behavior_type = 'cart') AS carted_items,
       count(DISTINCT date_trunc('day', ts + INTERVAL '8 hours')) AS active_days
FROM taobao_history
GROUP BY day, user_id, cutoff;

-- Category affinity: the share of the user's events in their most visited category.
CREATE TABLE taobao_affinity AS
SELECT day, user_id, CAST(max(n) AS DOUBLE) / sum(n) AS top_category_share
FROM (SELECT day, user_id, category_id, count(*) AS n FROM taobao_history
      GROUP BY day, user_id, category_id) per_category
GROUP BY day, user_id;

CREATE TABLE taobao_examples AS
SELECT c.day, c.user_id, c.cutoff AS ts, c.seq,
       -- The counts as one list for train_model: logs of counts and of hours.
       [ln(1 + c.hours_since_event), ln(1 + c.hours_since_buy), ln(1 + c.hours_since_cart),
        ln(1 + c.events), ln(1 + c.views), ln(1 + c.carts), ln(1 + c.favs), ln(1 + c.buys),
        ln(1 + c.events_24h), ln(1 + c.carts_24h), ln(1 + c.items), ln(1 + c.categories),
        ln(1 + c.carted_items), ln(1 + c.active_days), a.top_category_share] AS features,
       b.user_id IS NOT NULL AS label
FROM taobao_counts c
JOIN taobao_affinity a ON a.day = c.day AND a.user_id = c.user_id
-- The label: a purchase in the 24 hours after the cut-off.
LEFT JOIN (SELECT DISTINCT k.day, e.user_id
           FROM taobao_cutoffs k JOIN taobao_events e
             ON e.behavior_type = 'buy' AND e.ts >= k.cutoff AND e.ts < k.cutoff + INTERVAL '1 day') b
  ON b.day = c.day AND b.user_id = c.user_id;

SELECT day, count(*) AS users, sum(CAST(label AS INT)) AS buyers
FROM taobao_examples GROUP BY day ORDER BY day;
