#!/usr/bin/env python3
"""The metric aggregates against scikit-learn on the same seeded data, over SQL.

Loads 200,000 seeded (label, probability, group) rows with COPY, computes auc, log_loss,
brier and ece overall and per group (so partial aggregates are merged), and compares with
sklearn.metrics.roc_auc_score / log_loss / brier_score_loss and a numpy ECE with the same
binning. Fails unless every value agrees to 1e-9 relative.

    cargo build --release && python3 benches/compare/metrics_vs_sklearn.py

Needs numpy, scikit-learn, psycopg. FLASHSQL_BINARY overrides the server binary.
"""
import io
import os
import sys
import tempfile

import numpy as np
import psycopg
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import BINARY, start_server  # noqa: E402


def ece(y, p, bins=10):
    b = np.minimum(np.floor(p * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return total


def main():
    rng = np.random.default_rng(11)
    n = 200_000
    logit = rng.normal(-1.0, 1.5, n)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, n))))).astype(int)
    p = np.round(p, 3)  # ties in the scores
    g = rng.integers(0, 8, n)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            conn.execute("CREATE TABLE scored (y BIGINT, p DOUBLE PRECISION, g BIGINT)")
            buf = io.StringIO()
            for a, b, c in zip(y, p, g):
                buf.write(f"{a}\t{float(b)!r}\t{c}\n")
            with conn.cursor().copy("COPY scored FROM STDIN") as cp:
                cp.write(buf.getvalue())
            print("| subset | metric | flashsql | reference | relative difference |")
            print("|---|---|---|---|---|")
            q = "SELECT {sel} auc(y, p), log_loss(y, p), brier(y, p), ece(y, p, 15) FROM scored {grp}"
            rows = [("all", conn.execute(q.format(sel="", grp="")).fetchone())]
            for r in conn.execute(q.format(sel="g,", grp="GROUP BY g ORDER BY g")).fetchall():
                rows.append((f"g = {r[0]}", r[1:]))
            for name, got in rows:
                m = np.ones(n, bool) if name == "all" else g == int(name.split()[-1])
                ref = (
                    roc_auc_score(y[m], p[m]),
                    log_loss(y[m], p[m]),
                    brier_score_loss(y[m], p[m]),
                    ece(y[m], p[m], 15),
                )
                for metric, a, b in zip(("auc", "log_loss", "brier", "ece(15)"), got, ref):
                    diff = abs(a - b) / max(abs(b), 1e-300)
                    worst = max(worst, diff)
                    if name == "all" or diff > 1e-12:
                        print(f"| {name} | {metric} | {a:.15f} | {b:.15f} | {diff:.1e} |")
        finally:
            proc.terminate()
            proc.wait()
    print(f"\nworst relative difference over all {len(rows)} subsets × 4 metrics: {worst:.1e} (tolerance 1e-9)")
    sys.exit(0 if worst <= 1e-9 else 1)


if __name__ == "__main__":
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found")
    main()
