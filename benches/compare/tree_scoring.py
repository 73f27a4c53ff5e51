#!/usr/bin/env python3
"""Scoring rate of a `kind => 'gbdt'` model on the planning grid, for one or more server
binaries side by side (each on a fresh small world, the same seed, so the same rows).

The grid is the one of model_kinds_world.py: users × 15 items × 7 discounts (2,099,265 rows
on the small world), ordered by offer, so every batch meets every user. Trains the trees
with `split => 'time', seed => 1`, then times `sum(purchase_prob(...))` six times warm and
prints the median and best rows/s.

    cargo build --release && python3 benches/compare/tree_scoring.py target/release/flashsql [OTHER_BINARY ...]

Needs psycopg.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def rate(binary):
    os.environ["FLASHSQL_BINARY"] = binary
    from model_kinds_world import planning_grid, world
    from purchase_model_world import TRAIN_ROWS
    with world("small") as conn:
        conn.execute(TRAIN_ROWS)
        n = planning_grid(conn)
        conn.execute("SELECT count(*) FROM train_model('g', 'train_rows', kind => 'gbdt', split => 'time', seed => 1)").fetchone()
        runs = []
        for _ in range(6):
            t = time.time()
            s = conn.execute("SELECT sum(purchase_prob('g', seq, category_id, price, discount, time_left, hour)) FROM planning").fetchone()[0]
            runs.append(time.time() - t)
        runs.sort()
        print(f"{binary}: {n:,} rows, sum of P {s:.3f}; median {int(n / runs[len(runs) // 2]):,} rows/s, best {int(n / runs[0]):,}")


if __name__ == "__main__":
    binaries = sys.argv[1:] or ["target/release/flashsql"]
    if len(binaries) == 1:
        rate(binaries[0])
    else:
        # The helpers read the binary when imported: one process per binary.
        for b in binaries:
            subprocess.run([sys.executable, os.path.abspath(__file__), b], check=True)
