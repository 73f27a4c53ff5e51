#!/usr/bin/env python3
"""How far hand-made features can take a tree model on the synthetic world: LightGBM on the
purchase model's validation rows (time split, as `model_kinds_world.py`) with everything a
careful analyst would build from the raw behaviour log in SQL, point in time — per event
type: counts over the whole history, the last day and the last 7 days, hours since the last
one (continuous), count in the offered item's category; distinct categories; past
interactions with the offered item; the mean discount of the user's past purchases and views.

Feature sets, each fitted at the `'gbdt'` kind's settings and at four tuned settings
(learning rate 0.02, early stopping on the validation log loss):
- `tabular design`: the columns flashsql's tabular kinds read (the token window's counts);
- `offer + SQL history`: the offer's columns with the SQL history instead of the counts;
- `everything`: both, plus the item interactions and past discounts (inputs the network
  does not read).

    cargo build --release && python3 benches/compare/world_feature_ceiling.py [--scale small]

Needs psycopg, numpy, scikit-learn, lightgbm. FLASHSQL_BINARY overrides the server binary.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import start_server  # noqa: E402
from model_kinds_world import design, split_rows  # noqa: E402

EVENTS = ("view", "search", "fav", "cart", "purchase")


def history_columns():
    """(SQL expression, group) of every hand-made column; groups: history, item, discount."""
    cols = []
    for e in EVENTS:
        cols += [
            (f"count(*) FILTER (WHERE e.event_type = '{e}')", "history"),
            (f"count(*) FILTER (WHERE e.event_type = '{e}' AND e.ts > x.shown_ts - INTERVAL '1 day')", "history"),
            (f"count(*) FILTER (WHERE e.event_type = '{e}' AND e.ts > x.shown_ts - INTERVAL '7 days')", "history"),
            (f"coalesce(date_part('epoch', x.shown_ts - max(e.ts) FILTER (WHERE e.event_type = '{e}')) / 3600.0, 1e4)",
             "history"),
            (f"count(*) FILTER (WHERE e.event_type = '{e}' AND e.category_id = i.category_id)", "history"),
        ]
    cols += [
        ("count(DISTINCT e.category_id)", "history"),
        ("count(e.ts)", "history"),
        ("count(*) FILTER (WHERE e.category_id = i.category_id)", "history"),
        ("count(*) FILTER (WHERE e.item_id = x.item_id)", "item"),
        ("count(*) FILTER (WHERE e.item_id = x.item_id AND e.event_type IN ('fav', 'cart', 'purchase'))", "item"),
        ("coalesce(avg(e.discount) FILTER (WHERE e.event_type = 'purchase'), -1)", "discount"),
        ("coalesce(avg(e.discount) FILTER (WHERE e.event_type = 'view'), -1)", "discount"),
    ]
    return cols


SETTINGS = {
    "gbdt kind's (depth 6, 31 leaves, lr 0.05)": dict(
        learning_rate=0.05, max_depth=6, num_leaves=31, reg_lambda=1.0, min_child_weight=1.0, min_child_samples=1),
    "15 leaves, ≥ 100 rows a leaf": dict(learning_rate=0.02, num_leaves=15, min_child_samples=100),
    "7 leaves, ≥ 200 rows a leaf": dict(learning_rate=0.02, num_leaves=7, min_child_samples=200),
    "31 leaves, ≥ 200 rows, half the columns a tree": dict(
        learning_rate=0.02, num_leaves=31, min_child_samples=200, colsample_bytree=0.5),
    "depth 3, λ 10": dict(learning_rate=0.02, num_leaves=7, max_depth=3, min_child_samples=50, reg_lambda=10.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    cols = history_columns()
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"), ("--scale", args.scale))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            rows, _ = split_rows(conn)
            hist = {r[0]: r[1:] for r in conn.execute(
                f"SELECT x.exposure_id, {', '.join(c for c, _ in cols)} FROM exposures x "
                "JOIN items i ON i.item_id = x.item_id "
                "LEFT JOIN events e ON e.user_id = x.user_id AND e.ts < x.shown_ts "
                "GROUP BY x.exposure_id, x.shown_ts").fetchall()}
        finally:
            proc.terminate()
            proc.wait()
    y = np.array([float(r[1]) for r in rows])
    valid = np.array([r[8] for r in rows])
    truth = np.array([r[9] for r in rows])
    x, names = design([r[2:8] for r in rows])
    offer = x[:, :names.index("affinity_share")]
    h = np.array([[float(v) for v in hist[r[0]]] for r in rows])
    group = np.array([g for _, g in cols])
    sets = {
        "tabular design": x,
        "offer + SQL history": np.hstack([offer, h[:, group == "history"]]),
        "everything": np.hstack([x, h]),
    }
    print(f"{args.scale} world: {int((~valid).sum())} training rows, {int(valid.sum())} validation rows; "
          f"Bayes AUC {roc_auc_score(y[valid], truth[valid]):.4f}")
    print()
    print("| LightGBM settings | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    best = 0.0
    for label, params in SETTINGS.items():
        cells = []
        for xs in sets.values():
            m = lgb.LGBMClassifier(n_estimators=3000, random_state=args.seed, n_jobs=2, verbose=-1, **params)
            m.fit(xs[~valid], y[~valid], eval_set=[(xs[valid], y[valid])],
                  callbacks=[lgb.early_stopping(100, verbose=False)])
            a = roc_auc_score(y[valid], m.predict_proba(xs[valid])[:, 1])
            best = max(best, a)
            cells.append(f"{a:.4f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print()
    print(f"best validation AUC of any set and setting: {best:.4f}")


if __name__ == "__main__":
    main()
