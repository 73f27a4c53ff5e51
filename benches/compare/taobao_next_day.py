#!/usr/bin/env python3
"""Real data: will a Taobao user buy within the next 24 hours? flashsql's propensity model
against logistic regression and LightGBM on hand-made counts, on the same rows and split.

The task and every feature are defined in SQL (taobao_next_day.sql, run here against a
fresh server): eight daily cut-offs, one row per user and cut-off, everything computed from
events before the cut-off; days 0–5 train, days 6–7 test. flashsql trains through
train_model (its own early stopping holds out 20 % of users inside the training days) and
scores the test days with propensity(...) — the network (with and without the sequence),
logistic regression and gradient-boosted trees (`kind => 'logistic'`, `'gbdt'`, which read
the sequence as hand-made counts). The baselines fit the same `features` lists with
scikit-learn and lightgbm; their settings are chosen on day 5 after fitting days 0–4 (a
time-respecting validation), then refit on days 0–5. Printed: test AUC of each, and a
paired bootstrap of flashsql − LightGBM and flashsql − logistic regression.

    cargo build --release && python3 benches/compare/taobao_next_day.py [--seeds 5] [--only logistic]

Needs psycopg, numpy, scikit-learn and lightgbm. The data: ../shared/data/taobao, or the
directory FLASHSQL_REAL_DATA names. FLASHSQL_BINARY overrides the server binary.
"""
import argparse
import os
import sys
import tempfile
import warnings

import lightgbm as lgb
import numpy as np
import psycopg
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from knapsack_vs_highs import start_server  # noqa: E402

TRAIN_DAYS, TEST_DAYS = "day <= 5", "day >= 6"
# eval_set is deprecated in lightgbm 4.7 but is what older versions take.
warnings.filterwarnings("ignore", message=".*eval_set.*")


def data_file():
    root = os.environ.get("FLASHSQL_REAL_DATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
    path = os.path.abspath(os.path.join(root, "taobao", "user_behavior_sample.csv"))
    if not os.path.exists(path):
        sys.exit(f"no Taobao sample at {path}: set FLASHSQL_REAL_DATA")
    return path


def task_sql(csv):
    """The task file with psql's :'csv' variable filled in, as statements."""
    text = open(os.path.join(HERE, "taobao_next_day.sql")).read().replace(":'csv'", "'" + csv + "'")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def lightgbm_model(X, y, Xv, yv):
    """LightGBM with its size chosen on the validation day; returns (settings, factory)."""
    best = None
    for leaves in (4, 8, 16, 31):
        for rate in (0.02, 0.05, 0.1):
            m = lgb.LGBMClassifier(n_estimators=1000, learning_rate=rate, num_leaves=leaves,
                                   min_child_samples=20, subsample=0.8, subsample_freq=1,
                                   colsample_bytree=0.8, random_state=0, verbose=-1)
            m.fit(X, y, eval_set=[(Xv, yv)], eval_metric="auc",
                  callbacks=[lgb.early_stopping(50, verbose=False)])
            auc = roc_auc_score(yv, m.predict_proba(Xv)[:, 1])
            if best is None or auc > best[0]:
                best = (auc, dict(num_leaves=leaves, learning_rate=rate, n_estimators=max(m.best_iteration_, 1)))
    settings = best[1]
    return settings, lambda: lgb.LGBMClassifier(min_child_samples=20, subsample=0.8, subsample_freq=1,
                                                colsample_bytree=0.8, random_state=0, verbose=-1, **settings)


def logistic_model(X, y, Xv, yv):
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(X, y)
        auc = roc_auc_score(yv, m.predict_proba(Xv)[:, 1])
        if best is None or auc > best[0]:
            best = (auc, c)
    c = best[1]
    return {"C": c}, lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def paired_bootstrap(y, a, b, draws=2000, seed=0):
    """95 % interval of AUC(a) − AUC(b) over test rows resampled with replacement."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    return np.percentile(diffs, [2.5, 97.5])


PRE_ROWS = """
CREATE TABLE IF NOT EXISTS taobao_pre AS
SELECT x.user_id, x.seq, p.user_id IS NOT NULL AS label
FROM taobao_examples x
LEFT JOIN (SELECT DISTINCT k.day, e.user_id FROM taobao_cutoffs k JOIN taobao_events e
             ON e.behavior_type IN ('cart', 'fav') AND e.ts >= k.cutoff
            AND e.ts < k.cutoff + INTERVAL '1 day') p
  ON p.day = x.day AND p.user_id = x.user_id
WHERE x.day <= 5
"""


def pretrain(conn, batch_size):
    """An encoder pre-trained on the training days for another label: will the user cart or
    favourite anything in the next 24 hours (no purchase, no test day), once per run."""
    if conn.execute("SELECT count(*) FROM flashsql_models WHERE name = 'taobao_pre'").fetchone()[0]:
        return
    conn.execute(PRE_ROWS)
    share = conn.execute("SELECT avg(CAST(label AS DOUBLE)) FROM taobao_pre").fetchone()[0]
    auc = conn.execute(
        "SELECT max(valid_auc) FROM train_model('taobao_pre', (SELECT label, seq, user_id FROM taobao_pre), "
        f"kind => 'propensity', batch_size => {batch_size}, seed => 1, device => 'cpu')").fetchone()[0]
    print(f"pre-training on next-day carts and favourites ({share:.3f} positive): validation AUC {auc:.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--only", default="", help="run only the flashsql variants whose title contains this")
    args = ap.parse_args()
    csv = data_file()
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"), ("--no-seed", "--allow-path", os.path.dirname(csv)))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            for statement in task_sql(csv):
                conn.execute(statement)
            rows = conn.execute("SELECT day, features, label FROM taobao_examples ORDER BY day, user_id").fetchall()
            day = np.array([r[0] for r in rows])
            X = np.array([r[1] for r in rows])
            y = np.array([r[2] for r in rows], dtype=float)
            train, test = day <= 5, day >= 6
            print(f"rows: {len(y)} ({train.sum()} train on days 0–5, {test.sum()} test on days 6–7); "
                  f"buyers: {y[train].mean():.3f} train, {y[test].mean():.3f} test; {X.shape[1]} counts per row")

            scores = {}
            fit, valid = day <= 4, day == 5
            for name, chooser in (("logistic regression on counts", logistic_model),
                                  ("LightGBM on counts", lightgbm_model)):
                settings, make = chooser(X[fit], y[fit], X[valid], y[valid])
                model = make().fit(X[train], y[train])
                scores[name] = model.predict_proba(X[test])[:, 1]
                print(f"{name}: settings chosen on day 5: {settings}")

            network = "kind => 'propensity', batch_size => " + str(args.batch_size)
            variants = (
                ("flashsql: sequence + counts", "seq, features", "seq, features", network),
                ("flashsql: sequence + counts, smaller and more decayed (embed_dim 8, weight_decay 0.05)",
                 "seq, features", "seq, features", network + ", embed_dim => 8, weight_decay => 0.05"),
                ("flashsql: sequence + counts, encoder pre-trained on next-day carts and favourites",
                 "seq, features", "seq, features", network + ", encoder_from => 'taobao_pre'"),
                ("flashsql: sequence only", "seq", "seq", network),
                ("flashsql: counts only (MLP)", "features", "NULL, features", network + ", sequence => false"),
                ("flashsql: logistic (counts + sequence counts)", "seq, features", "seq, features", "kind => 'logistic'"),
                ("flashsql: logistic (counts only)", "features", "NULL, features",
                 "kind => 'logistic', sequence => false"),
                ("flashsql: gbdt (counts + sequence counts)", "seq, features", "seq, features", "kind => 'gbdt'"),
                ("flashsql: gbdt (counts only)", "features", "NULL, features",
                 "kind => 'gbdt', sequence => false"),
            )
            order = "ORDER BY day, user_id"
            for title, columns, call, extra in variants:
                if args.only not in title:
                    continue
                if "taobao_pre" in extra:
                    pretrain(conn, args.batch_size)
                runs = []
                for seed in range(1, args.seeds + 1):
                    name = f"taobao_{len(scores)}_{seed}"
                    conn.execute(
                        f"SELECT count(*) FROM train_model('{name}', (SELECT label, {columns}, user_id "
                        f"FROM taobao_examples WHERE {TRAIN_DAYS}), {extra}, "
                        f"seed => {seed}, device => 'cpu')").fetchone()
                    p = conn.execute(f"SELECT propensity('{name}', {call}) FROM taobao_examples "
                                     f"WHERE {TEST_DAYS} {order}").fetchall()
                    runs.append(np.array([r[0] for r in p]))
                scores[title] = runs

            yt = y[test]
            print()
            print(f"| Taobao next-24-hour purchase, {test.sum()} test rows (days 6–7) | test AUC |")
            print("|---|---|")
            for title, s in scores.items():
                if isinstance(s, list):
                    aucs = [roc_auc_score(yt, r) for r in s]
                    print(f"| {title} | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1) / np.sqrt(len(aucs)):.4f} "
                          f"(mean of {len(aucs)} seeds: {', '.join(f'{a:.3f}' for a in aucs)}) |")
                else:
                    print(f"| {title} | {roc_auc_score(yt, s):.4f} |")
            print()
            for peer in ("LightGBM on counts", "logistic regression on counts"):
                theirs = roc_auc_score(yt, scores[peer])
                for title in ("flashsql: sequence + counts", "flashsql: logistic (counts + sequence counts)",
                              "flashsql: logistic (counts only)", "flashsql: gbdt (counts + sequence counts)",
                              "flashsql: gbdt (counts only)"):
                    if title not in scores:
                        continue
                    ours = np.mean(scores[title], axis=0)
                    lo, hi = paired_bootstrap(yt, ours, scores[peer])
                    mean = roc_auc_score(yt, ours)
                    print(f"{title} (the {args.seeds} seeds' scores averaged: AUC {mean:.4f}) − {peer} "
                          f"({theirs:.4f}) = {mean - theirs:+.4f}, paired bootstrap 95 % interval [{lo:+.4f}, {hi:+.4f}]")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
