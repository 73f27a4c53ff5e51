#!/usr/bin/env python3
"""The uplift metrics against scikit-uplift on the same rows, over SQL.

Data: the Hillstrom e-mail experiment, Mens E-Mail vs No E-Mail and Womens E-Mail vs No
E-Mail, outcomes visit and conversion, each ranked by two scores:
- `history` (last year's spend: few ties);
- a model: a T-learner over (history_segment, zip_code, channel) fitted in SQL, the
  difference of the treated and control visit rates in each cell (many ties: 42 cells).

For each: qini_auc (with and without negative effects), uplift_auc against
sklift.metrics.qini_auc_score / uplift_auc_score, and every point of the qini_curve and
uplift_curve table functions against sklift.metrics.qini_curve / uplift_curve. Fails unless
every value agrees to 1e-9 relative.

    cargo build --release && python3 benches/compare/uplift_vs_sklift.py [hillstrom.csv]

With FLASHSQL_DSN set it uses that server instead of starting the release binary. Needs
numpy, scikit-uplift, psycopg.
"""
import csv
import os
import sys

import numpy as np
import psycopg
from sklift.metrics import qini_auc_score, qini_curve, uplift_auc_score, uplift_curve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiments_vs_scipy import agree, checked, load, worst  # noqa: E402
from knapsack_vs_highs import ROOT, server_dsn  # noqa: E402

TOLERANCE = 1e-9


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "hillstrom", "hillstrom.csv")
    with open(path) as f:
        rows = [
            (d["segment"], d["history_segment"], float(d["history"]), d["zip_code"], d["channel"],
             int(d["visit"]), int(d["conversion"]))
            for d in csv.DictReader(f)
        ]
    columns = [("segment", "TEXT"), ("history_segment", "TEXT"), ("history", "DOUBLE PRECISION"),
               ("zip_code", "TEXT"), ("channel", "TEXT"), ("visit", "BIGINT"), ("conversion", "BIGINT")]
    with server_dsn() as dsn:
        conn = psycopg.connect(dsn, autocommit=True)
        load(conn, "uplift_hillstrom", columns, rows)
        for arm in ("Mens E-Mail", "Womens E-Mail"):
            table = "uplift_" + arm.split()[0].lower()
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"""
                CREATE TABLE {table} AS
                WITH arm AS (
                    SELECT *, CASE WHEN segment = '{arm}' THEN 1 ELSE 0 END AS treatment
                    FROM uplift_hillstrom WHERE segment IN ('{arm}', 'No E-Mail')),
                cell AS (
                    SELECT history_segment, zip_code, channel,
                           avg(visit) FILTER (WHERE treatment = 1)
                             - avg(visit) FILTER (WHERE treatment = 0) AS t_learner
                    FROM arm GROUP BY 1, 2, 3)
                SELECT a.treatment, a.visit, a.conversion, a.history, coalesce(c.t_learner, 0) AS t_learner
                FROM arm a JOIN cell c USING (history_segment, zip_code, channel)""")
            data = conn.execute(f"SELECT treatment, visit, conversion, history, t_learner FROM {table}").fetchall()
            t = np.array([r[0] for r in data])
            outcomes = {"visit": np.array([r[1] for r in data]), "conversion": np.array([r[2] for r in data])}
            scores = {"history": np.array([r[3] for r in data]), "t_learner": np.array([r[4] for r in data])}
            for outcome, y in outcomes.items():
                for score, s in scores.items():
                    what = f"{arm} {outcome} by {score}"
                    args = f"treatment, {outcome}, {score}"
                    got = conn.execute(
                        f"SELECT qini_auc({args}), qini_auc({args}, negative_effect => false), "
                        f"uplift_auc({args}) FROM {table}"
                    ).fetchone()
                    agree(f"{what} qini_auc", got[0], qini_auc_score(y, s, t))
                    agree(f"{what} qini_auc no negative", got[1], qini_auc_score(y, s, t, negative_effect=False))
                    agree(f"{what} uplift_auc", got[2], uplift_auc_score(y, s, t))
                    for name, reference in (("qini_curve", qini_curve), ("uplift_curve", uplift_curve)):
                        points = conn.execute(
                            f"SELECT n, value, baseline FROM {name}((SELECT treatment, {outcome} AS outcome, "
                            f"{score} AS score FROM {table})) ORDER BY n"
                        ).fetchall()
                        x, v = reference(y, s, t)
                        assert [p[0] for p in points] == list(x), f"{what} {name}: points differ"
                        for p, value in zip(points, v):
                            agree(f"{what} {name} n={p[0]}", p[1], float(value))
                            agree(f"{what} {name} baseline n={p[0]}", p[2], float(v[-1] * p[0] / x[-1]))
                    print(f"{what}: qini_auc {got[0]:.6f}, uplift_auc {got[2]:.6f}, "
                          f"{len(points)} curve points")
    print(f"{checked[0]} values checked; worst relative difference {worst[0]:.1e} ({worst[1]}); tolerance {TOLERANCE:g}")
    print("uplift: ok")


if __name__ == "__main__":
    main()
