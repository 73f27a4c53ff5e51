#!/usr/bin/env python3
"""The preprocessing functions against scikit-learn and numpy on the same rows, over SQL.

Seeded rows in 6 groups (one constant, one with a single row, NULLs and heavy tails in the
others) are loaded with COPY; each window function is computed with PARTITION BY the group
and compared per group with scikit-learn's StandardScaler, MinMaxScaler and RobustScaler
(fitted on the group's non-NULL values), and with numpy for is_outlier (IQR and z-score
rules), quantile_bucketize (searchsorted on np.quantile) and bucketize (np.digitize). Fails
unless every value agrees to 1e-12 relative to max(|reference|, 1), NULLs stay NULL and
booleans and buckets are equal.

    cargo build --release && python3 benches/compare/preprocessing_vs_sklearn.py

With FLASHSQL_DSN set it uses that server instead of starting the release binary. Needs
numpy, scikit-learn, psycopg.
"""
import io
import os
import sys

import numpy as np
import psycopg
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import server_dsn  # noqa: E402

TOLERANCE = 1e-12


def data():
    rng = np.random.default_rng(20261201)
    rows = []
    i = 0
    for g in range(6):
        n = {0: 5000, 1: 3000, 2: 1, 3: 400, 4: 2000, 5: 700}[g]
        if g == 0:
            x = rng.normal(50, 10, n)
        elif g == 1:
            x = rng.lognormal(2, 1.5, n)  # heavy right tail
        elif g == 2:
            x = np.array([3.5])
        elif g == 3:
            x = np.full(n, 7.25)  # constant
        elif g == 4:
            x = np.round(rng.standard_t(3, n) * 100) / 10  # ties
        else:
            x = rng.uniform(-1e6, 1e6, n)
        for v in x:
            i += 1
            rows.append((i, g, None if rng.random() < 0.03 else float(v)))
    return rows


def main():
    rows = data()
    worst = 0.0
    checked = 0
    with server_dsn() as dsn:
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute("DROP TABLE IF EXISTS prep")
        conn.execute("CREATE TABLE prep (id BIGINT, g BIGINT, x DOUBLE PRECISION)")
        buf = io.StringIO()
        null = "\\N"
        for i, g, x in rows:
            buf.write(f"{i}\t{g}\t{null if x is None else repr(x)}\n")
        with conn.cursor().copy("COPY prep FROM STDIN") as cp:
            cp.write(buf.getvalue())
        got = conn.execute(
            """SELECT id, g, x,
                   standard_scaler(x) OVER (PARTITION BY g),
                   min_max_scaler(x) OVER (PARTITION BY g),
                   robust_scaler(x) OVER (PARTITION BY g),
                   is_outlier(x) OVER (PARTITION BY g),
                   is_outlier(x, 'zscore', 2.5) OVER (PARTITION BY g),
                   quantile_bucketize(x, 10) OVER (PARTITION BY g),
                   bucketize(x, ARRAY[-1000, 0, 5, 10, 50, 1e5])
               FROM prep ORDER BY id"""
        ).fetchall()
    by_group = {}
    for r in got:
        by_group.setdefault(r[1], []).append(r)
    for g, rs in sorted(by_group.items()):
        x = np.array([np.nan if r[2] is None else r[2] for r in rs])
        present = ~np.isnan(x)
        fit = x[present].reshape(-1, 1)
        refs = {}
        for col, scaler in ((3, StandardScaler()), (4, MinMaxScaler()), (5, RobustScaler())):
            out = np.full(len(x), np.nan)
            out[present] = scaler.fit(fit).transform(fit).ravel()
            refs[col] = out
        v = x[present]
        q1, q3 = np.percentile(v, [25, 75])
        iqr = q3 - q1
        refs[6] = np.where(present, (x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr), np.nan)
        mean, std = v.mean(), v.std()
        z = np.where(std > 0, (x - mean) / (std if std > 0 else 1), 0)
        refs[7] = np.where(present, np.abs(z) > 2.5, np.nan)
        edges = np.quantile(v, np.arange(1, 10) / 10)
        refs[8] = np.where(present, np.searchsorted(edges, np.nan_to_num(x), side="right"), np.nan)
        refs[9] = np.where(present, np.digitize(np.nan_to_num(x), [-1000, 0, 5, 10, 50, 1e5]), np.nan)
        for col, ref in refs.items():
            for r, want in zip(rs, ref):
                have = r[col]
                checked += 1
                if np.isnan(want):
                    assert have is None, (g, r[0], col, have)
                    continue
                assert have is not None, (g, r[0], col)
                if col in (6, 7):
                    assert bool(have) == bool(want), (g, r[0], col, have, want)
                elif col in (8, 9):
                    assert int(have) == int(want), (g, r[0], col, have, want)
                else:
                    diff = abs(have - want) / max(abs(want), 1.0)
                    worst = max(worst, diff)
                    assert diff <= TOLERANCE, (g, r[0], col, have, want, diff)
    print(f"{len(rows)} rows in {len(by_group)} groups, {checked} values checked; "
          f"worst relative difference {worst:.1e}; tolerance {TOLERANCE:g}")
    print("preprocessing: ok")


if __name__ == "__main__":
    main()
