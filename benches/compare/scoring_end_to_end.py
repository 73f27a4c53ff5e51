#!/usr/bin/env python3
"""Scoring speed end to end: `SELECT sum(purchase_prob(...))` over SQL, against a scan of the
same columns without the model, on the small world's planning grid (every user's current
history × 15 items × 7 discounts, ~2.1M rows) and its exposures × 7 discounts (~450k rows,
each with its own point-in-time sequence).

The speed of a model does not depend on how well it is trained, only on its shape, so the
model here is trained for one epoch (the default shape: 64-token windows, D = 32, hidden
[64, 32]). With --data-dir the server's directory is kept, and a second run skips the world,
the tables and the training.

    cargo build --release && python3 benches/compare/scoring_end_to_end.py [--runs 5] [--data-dir DIR]

Needs psycopg. FLASHSQL_BINARY overrides the server binary.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import start_server  # noqa: E402
from purchase_model_world import TRAIN_ROWS  # noqa: E402

TABLES = {
    "train_rows": TRAIN_ROWS,
    "scoring": "CREATE TABLE scoring AS SELECT t.seq, t.category_id, t.price, d.discount, t.time_left, t.hour "
    "FROM train_rows t CROSS JOIN (VALUES (0.0), (0.05), (0.1), (0.2), (0.3), (0.4), (0.5)) AS d(discount)",
    "planning": "CREATE TABLE planning AS SELECT s.seq, i.category_id, i.base_price AS price, d.discount, "
    "0.5 AS time_left, 20.0 AS hour FROM "
    "(SELECT user_id, behavior_sequence(event_type, category_id, ts) AS seq FROM events GROUP BY user_id) s "
    "CROSS JOIN (SELECT * FROM items ORDER BY item_id LIMIT 15) i "
    "CROSS JOIN (VALUES (0.0), (0.05), (0.1), (0.2), (0.3), (0.4), (0.5)) AS d(discount)",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="warm runs after the first")
    ap.add_argument("--data-dir", help="keep the server's data here between runs")
    ap.add_argument("--tables", default="planning,scoring")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or os.path.join(tmp, "data")
        proc, host, port = start_server(data, ("--scale", "small"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            have = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            for name, sql in TABLES.items():
                if name not in have:
                    conn.execute(sql)
            models = {r[0] for r in conn.execute("SELECT name FROM flashsql_models").fetchall()}
            if "speed" not in models:
                conn.execute("SELECT count(*) FROM train_model('speed', 'train_rows', epochs => 1, seed => 1, "
                             "device => 'cpu')").fetchone()
            print("| table, rows | query | first run, s | rows/s | median of next runs, s | rows/s | best, rows/s |")
            print("|---|---|---|---|---|---|---|")
            for table in args.tables.split(","):
                rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for name, expr in (
                    ("scan of the same columns", "price * discount + time_left + hour + cardinality(seq)"),
                    ("sum(purchase_prob(...))", "purchase_prob('speed', seq, category_id, price, discount, time_left, hour)"),
                ):
                    runs = []
                    for _ in range(args.runs + 1):
                        t0 = time.perf_counter()
                        conn.execute(f"SELECT sum({expr}) FROM {table}").fetchone()
                        runs.append(time.perf_counter() - t0)
                    first, med, best = runs[0], statistics.median(runs[1:]), min(runs[1:])
                    print(f"| {table}, {rows:,} | {name} | {first:.3f} | {rows / first:,.0f} | {med:.3f} | "
                          f"{rows / med:,.0f} | {rows / best:,.0f} |")
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
