#!/usr/bin/env python3
"""When does the Conv1D sequence encoder earn its place? Variants of the purchase model on the
synthetic world, side by side with LightGBM and scikit-learn on the same rows and split.

The rows and the time split are `model_kinds_world.py`'s (12,915 validation rows on the small
world). flashsql trains, through SQL:
- the network with its encoder (`kind => 'purchase'`), without it (`sequence => false`: the
  offer alone), with a smaller user vector (`embed_dim => 8`) and with a stronger weight decay
  (`weight_decay => 0.05`) against the overfitting seen from the second or third epoch;
- the network given the window's counts (the tabular kinds' 42 sequence counts, computed
  here) as `features`, with and without the encoder: what the encoder adds to the counts;
- the trees on the window's counts (`kind => 'gbdt'`), and the trees and logistic regression
  given the trained network's user vector as well (`features => user_embedding(seq,
  'm_network')`, 32 numbers): the encoder as a feature extractor for a tabular learner;
- the trees given the vector of an encoder pre-trained without exposure labels: a
  propensity network on the event log alone (will the user buy anything in the next two
  days, at cuts before the validation rows begin), its `user_embedding` as `features`; and
  the network fine-tuned from that encoder (`encoder_from => 'm_pre'`).
LightGBM (the `'gbdt'` kind's settings) and scikit-learn's LogisticRegression (C = 1,
standardised) get the same columns with and without the vector.

The vector of a training row comes from a network fitted to that row's label, so a learner
reading it sees training rows better separated than validation rows will be; the validation
AUC is what to read.

    cargo build --release && python3 benches/compare/encoder_study.py [--scale small] [--seed 1]

Needs psycopg, numpy, scikit-learn, lightgbm. FLASHSQL_BINARY overrides the server binary.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logistic_vs_sklearn import counts  # noqa: E402
from model_kinds_world import (  # noqa: E402
    auc, design, ece, lightgbm_as_gbdt_kind, log_loss, paired_interval, sklearn_logistic, split_rows, world)

NETWORK = "kind => 'purchase', epochs => 8, device => 'cpu'"
OFFER = "seq, category_id, price, discount, time_left, hour"
# (name, options, training table, scoring arguments)
FLASHSQL = [
    ("network (encoder)", NETWORK, "train_rows", OFFER),
    ("network without the encoder", NETWORK + ", sequence => false", "train_rows",
     "NULL, category_id, price, discount, time_left, hour"),
    ("network, embed_dim 8", NETWORK + ", embed_dim => 8", "train_rows", OFFER),
    ("network, weight_decay 0.05", NETWORK + ", weight_decay => 0.05", "train_rows", OFFER),
    ("network (encoder) + window counts", NETWORK, "train_rows_counts", OFFER + ", features"),
    ("network without the encoder + window counts", NETWORK + ", sequence => false",
     "train_rows_counts", "NULL, category_id, price, discount, time_left, hour, features"),
    ("gbdt (window counts)", "kind => 'gbdt'", "train_rows", OFFER),
    ("gbdt (counts + encoder vector)", "kind => 'gbdt'", "train_rows_vec", OFFER + ", features"),
    ("logistic (counts + encoder vector)", "kind => 'logistic'", "train_rows_vec",
     OFFER + ", features"),
    ("gbdt (counts + pre-trained vector)", "kind => 'gbdt'", "train_rows_pre", OFFER + ", features"),
    # After the line above, which pre-trains m_pre.
    ("network fine-tuned from the pre-trained encoder", NETWORK + ", encoder_from => 'm_pre'",
     "train_rows", OFFER),
]

# Pre-training without exposure labels: from the event log alone, at a cut every 4 days
# from a week after the first event to two days before the validation rows begin, each
# user's sequence of earlier events and whether they buy anything in the next two days.
PRE_ROWS = """
CREATE TABLE pre_rows AS
WITH cuts AS (
  SELECT d FROM unnest(range(
    CAST(date_trunc('day', (SELECT min(ts) FROM events)) AS TIMESTAMP) + INTERVAL '7 days',
    CAST(%(cut)s AS TIMESTAMP) - INTERVAL '2 days', INTERVAL '4 days')) AS c(d)
)
SELECT h.user_id, h.seq, b.user_id IS NOT NULL AS label
FROM (SELECT e.user_id, c.d, behavior_sequence(e.event_type, e.category_id, e.ts) AS seq
      FROM events e JOIN cuts c ON e.ts < c.d GROUP BY e.user_id, c.d) h
LEFT JOIN (SELECT DISTINCT e.user_id, c.d FROM events e JOIN cuts c
           ON e.event_type = 'purchase' AND e.ts >= c.d AND e.ts < c.d + INTERVAL '2 days') b
  ON b.user_id = h.user_id AND b.d = h.d
"""


def ensure(conn, table, cut, seed, rows):
    """Creates the training table a variant reads, once."""
    if conn.execute(f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'").fetchone()[0]:
        return
    if table == "train_rows_vec":
        conn.execute("CREATE TABLE train_rows_vec AS SELECT *, "
                     "user_embedding(seq, 'm_network') AS features FROM train_rows")
    elif table == "train_rows_counts":
        conn.execute("CREATE TABLE counts (exposure_id BIGINT, features DOUBLE PRECISION[])")
        with conn.cursor().copy("COPY counts FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r[0], "{" + ",".join(repr(float(v)) for v in counts(r[2] or [])) + "}"))
        conn.execute("CREATE TABLE train_rows_counts AS "
                     "SELECT t.*, c.features FROM train_rows t JOIN counts c USING (exposure_id)")
    elif table == "train_rows_pre":
        conn.execute(PRE_ROWS, {"cut": cut})
        n, share = conn.execute("SELECT count(*), avg(CAST(label AS DOUBLE)) FROM pre_rows").fetchone()
        reports = conn.execute(
            "SELECT epoch, valid_auc FROM train_model('m_pre', (SELECT label, seq, user_id FROM pre_rows), "
            f"kind => 'propensity', epochs => 6, device => 'cpu', seed => {seed})").fetchall()
        print(f"pre-training: {n:,} rows ({share:.3f} buy within two days), validation AUC by epoch "
              + ", ".join(f"{e}: {a:.4f}" for e, a in reports), flush=True)
        conn.execute("CREATE TABLE train_rows_pre AS SELECT *, "
                     "user_embedding(seq, 'm_pre') AS features FROM train_rows")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = {}
    with world(args.scale) as conn:
        rows, cut = split_rows(conn)
        y = np.array([float(r[1]) for r in rows])
        valid = np.array([r[8] for r in rows])
        for k, (name, options, table, scoring) in enumerate(FLASHSQL):
            model = "m_network" if k == 0 else f"m_{k}"
            ensure(conn, table, cut, args.seed, rows)
            t0 = time.time()
            conn.execute(f"SELECT count(*) FROM train_model('{model}', '{table}', {options}, "
                         f"split => 'time', seed => {args.seed})").fetchone()
            seconds = time.time() - t0
            p = dict(conn.execute(
                f"SELECT exposure_id, purchase_prob('{model}', {scoring}) FROM {table}").fetchall())
            results[f"flashsql {name}"] = (np.array([p[r[0]] for r in rows]), seconds)
        vectors = dict(conn.execute("SELECT exposure_id, features FROM train_rows_vec").fetchall())

    x, names = design([r[2:8] for r in rows])
    vec = np.array([vectors[r[0]] for r in rows], dtype=np.float64)
    for label, cols in (("counts", x), ("counts + encoder vector", np.hstack([x, vec]))):
        results[f"LightGBM ({label})"] = lightgbm_as_gbdt_kind(cols, names, y, valid, args.seed)
        results[f"scikit-learn logistic ({label})"] = sklearn_logistic(cols, names, y, valid)

    yv = y[valid]
    print(f"{args.scale} world, seed {args.seed}: {int((~valid).sum())} training rows, "
          f"{int(valid.sum())} validation rows (time split)")
    print()
    print("| model | valid AUC | ECE | log loss | training s |")
    print("|---|---|---|---|---|")
    for name, (p, s) in results.items():
        pv = p[valid]
        print(f"| {name} | {auc(yv, pv):.4f} | {ece(yv, pv):.4f} | {log_loss(yv, pv):.4f} | {s:.2f} |")
    print()
    for a, b in (("flashsql gbdt (counts + encoder vector)", "flashsql gbdt (window counts)"),
                 ("flashsql gbdt (counts + encoder vector)", "flashsql network (encoder)"),
                 ("flashsql network (encoder)", "flashsql network without the encoder"),
                 ("flashsql network (encoder) + window counts",
                  "flashsql network without the encoder + window counts"),
                 ("flashsql gbdt (counts + pre-trained vector)", "flashsql gbdt (window counts)"),
                 ("flashsql network fine-tuned from the pre-trained encoder", "flashsql network (encoder)"),
                 ("LightGBM (counts + encoder vector)", "LightGBM (counts)")):
        d, lo, hi = paired_interval(yv, results[a][0][valid], results[b][0][valid], args.seed)
        print(f"{a} − {b}: {d:+.4f} AUC, 95 % paired bootstrap [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
