#!/usr/bin/env python3
"""Every model kind on the synthetic world, side by side with LightGBM and scikit-learn on the
same rows and split.

Training rows are built point in time (as `purchase_model_world.py` does) and split by time
(the latest 20 % held out, which this script reproduces). flashsql trains each kind through
SQL — the network (`kind => 'purchase'`), `'logistic'` and `'gbdt'` — and scores the
validation rows with `purchase_prob`. The same rows' design (the columns the tabular kinds
read, computed here from the token lists independently) go to LightGBM (the same depth,
shrinkage, L2, minimum leaf hessian, early stopping and monotone discount as `'gbdt'`) and to
scikit-learn's LogisticRegression (C = 1 on standardised columns).

Printed per model: validation AUC, ECE (10 bins), log loss, training seconds, rows whose
P(buy) falls anywhere along a discount grid; scoring rows/s on the planning grid (users × 15
items × 7 discounts, best of 3 warm runs); and a paired bootstrap (1,000 resamples of the
validation rows) of the AUC difference between flashsql's best kind and LightGBM.

    cargo build --release && python3 benches/compare/model_kinds_world.py [--scale small] [--seed 1]

Needs psycopg, numpy, scikit-learn, lightgbm. FLASHSQL_BINARY overrides the server binary.
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time

import numpy as np
import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import start_server  # noqa: E402
from logistic_vs_sklearn import count_names, counts  # noqa: E402
from purchase_model_world import TRAIN_ROWS  # noqa: E402

GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def design(rows):
    """The tabular kinds' columns (gbdt's order: the category's id stands in for its index)."""
    out = []
    for (seq, cat, price, disc, tl, hour) in rows:
        seq = seq or []
        toks = [t for t in seq[-64:] if t]
        b = cat % 64
        hits = [t for t in toks if (t - 1) & 63 == b]
        buys = [t for t in hits if ((t - 1) >> 6) % 5 == 4]
        a = float(np.float32(hour)) * 2 * np.pi / 24
        out.append([np.log(np.float32(price)), float(np.float32(disc)), float(np.float32(tl)), np.sin(a), np.cos(a), cat,
                    len(hits) / max(len(toks), 1), np.log1p(len(hits)), np.log1p(len(buys))] + counts(seq))
    names = ["ln_price", "discount", "time_left", "hour_sin", "hour_cos", "category_id",
             "affinity_share", "affinity_events", "affinity_purchases"] + count_names()
    return np.array(out, dtype=np.float64), names


def split_rows(conn):
    """Builds `train_rows` and returns its rows by exposure_id — (exposure_id, label, seq,
    category_id, price, discount, time_left, hour, in the validation split, true_prob) — and
    the time split's cut-off, as `train_model(…, split => 'time')` computes it."""
    conn.execute(TRAIN_ROWS)
    n = conn.execute("SELECT count(*) FROM train_rows").fetchone()[0]
    cut = conn.execute(
        f"SELECT ts FROM train_rows ORDER BY ts, exposure_id LIMIT 1 OFFSET {int(0.8 * n)}").fetchone()[0]
    rows = conn.execute(
        "SELECT exposure_id, label, seq, category_id, price, discount, time_left, hour, ts >= %s, true_prob "
        "FROM train_rows ORDER BY exposure_id", (cut,)).fetchall()
    return rows, cut


def planning_grid(conn):
    """Creates `planning` — every user's sequence × 15 items × the discounts of GRID, ordered
    by offer as a cross join emits it — and returns its row count."""
    conn.execute(
        "CREATE TABLE planning AS SELECT s.seq, i.category_id, i.base_price AS price, d.discount, "
        "0.5 AS time_left, 20.0 AS hour FROM "
        "(SELECT user_id, behavior_sequence(event_type, category_id, ts) AS seq FROM events GROUP BY user_id) s "
        "CROSS JOIN (SELECT * FROM items ORDER BY item_id LIMIT 15) i "
        f"CROSS JOIN (VALUES {', '.join(f'({d})' for d in GRID)}) AS d(discount)")
    return conn.execute("SELECT count(*) FROM planning").fetchone()[0]


def ece(y, p, bins=10):
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any()) / len(y)


def auc(y, p):
    from sklearn.metrics import roc_auc_score
    return roc_auc_score(y, p)


def log_loss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def paired_interval(y, a, b, seed):
    """The AUC of `a` minus that of `b` on `y`, and its 95 % paired-bootstrap interval."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(1000):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(auc(y[i], a[i]) - auc(y[i], b[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return auc(y, a) - auc(y, b), lo, hi


@contextlib.contextmanager
def world(scale):
    """A connection to a release server on a fresh generated world, stopped afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"), ("--scale", scale))
        try:
            yield psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
        finally:
            proc.terminate()
            proc.wait()


def lightgbm_as_gbdt_kind(x, names, y, valid, seed):
    """LightGBM at the settings of `kind => 'gbdt'` (monotone in the discount, early stopping
    on the validation rows' log loss): P(buy) for every row, and the training seconds."""
    import lightgbm as lgb
    mono = [0] * x.shape[1]
    mono[names.index("discount")] = 1
    t0 = time.time()
    model = lgb.LGBMClassifier(
        n_estimators=1000, learning_rate=0.05, max_depth=6, num_leaves=31, reg_lambda=1.0,
        min_child_weight=1.0, min_child_samples=1, monotone_constraints=mono, random_state=seed,
        n_jobs=2, deterministic=True, force_row_wise=True, verbose=-1)
    model.fit(x[~valid], y[~valid], eval_set=[(x[valid], y[valid])], eval_metric="binary_logloss",
              callbacks=[lgb.early_stopping(50, verbose=False)])
    return model.predict_proba(x)[:, 1], time.time() - t0


def sklearn_logistic(x, names, y, valid):
    """scikit-learn's LogisticRegression (C = 1) on the columns standardised on the training
    rows, the category id left out: P(buy) for every row, and the training seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    t0 = time.time()
    xs = np.delete(x, names.index("category_id"), axis=1)
    scaler = StandardScaler().fit(xs[~valid])
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(xs[~valid]), y[~valid])
    return lr.predict_proba(scaler.transform(xs))[:, 1], time.time() - t0


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
        truth = np.array([r[9] for r in rows])
        planning = planning_grid(conn)
        grid = ", ".join(f"({d})" for d in GRID)
        for name, options in (("network", "kind => 'purchase', epochs => 8, device => 'cpu'"),
                              ("logistic", "kind => 'logistic'"),
                              ("gbdt", "kind => 'gbdt'")):
            t0 = time.time()
            conn.execute(f"SELECT count(*) FROM train_model('m_{name}', 'train_rows', {options}, "
                         f"split => 'time', seed => {args.seed})").fetchone()
            seconds = time.time() - t0
            p = dict(conn.execute(
                f"SELECT exposure_id, purchase_prob('m_{name}', seq, category_id, price, discount, time_left, hour) "
                "FROM train_rows").fetchall())
            p = np.array([p[r[0]] for r in rows])
            falls = conn.execute(
                f"SELECT count(*) FROM (SELECT exposure_id, array_agg(p ORDER BY d) AS ps FROM ("
                f"SELECT t.exposure_id, g.d, purchase_prob('m_{name}', t.seq, t.category_id, t.price, g.d, t.time_left, t.hour) AS p "
                f"FROM train_rows t CROSS JOIN (VALUES {grid}) AS g(d) WHERE t.ts >= %s) GROUP BY exposure_id) "
                "WHERE NOT array_sort(ps) = ps", (cut,)).fetchone()[0]
            runs = []
            for _ in range(4):
                t1 = time.time()
                conn.execute(f"SELECT sum(purchase_prob('m_{name}', seq, category_id, price, discount, time_left, hour)) "
                             "FROM planning").fetchone()
                runs.append(time.time() - t1)
            results[f"flashsql {name}"] = (p, seconds, falls, planning / min(runs[1:]))

    x, names = design([r[2:8] for r in rows])
    results["LightGBM 4 (same settings)"] = (*lightgbm_as_gbdt_kind(x, names, y, valid, args.seed), None, None)
    results["scikit-learn logistic"] = (*sklearn_logistic(x, names, y, valid), None, None)

    yv = y[valid]
    print(f"{args.scale} world, seed {args.seed}: {int((~valid).sum())} training rows, {int(valid.sum())} validation rows "
          f"(time split); Bayes AUC {auc(yv, truth[valid]):.4f}")
    print()
    print("| model | valid AUC | ECE | log loss | training s | rows falling in the discount | planning grid rows/s |")
    print("|---|---|---|---|---|---|---|")
    for name, (p, s, falls, rate) in results.items():
        pv = p[valid]
        print(f"| {name} | {auc(yv, pv):.4f} | {ece(yv, pv):.4f} | {log_loss(yv, pv):.4f} | {s:.2f} | "
              f"{'' if falls is None else falls} | {'' if rate is None else f'{rate:,.0f}'} |")
    best = max((k for k in results if k.startswith("flashsql")), key=lambda k: auc(yv, results[k][0][valid]))
    d, lo, hi = paired_interval(yv, results[best][0][valid], results["LightGBM 4 (same settings)"][0][valid],
                                args.seed)
    print()
    print(f"{best} − LightGBM: {d:+.4f} AUC, 95 % paired-bootstrap interval [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
