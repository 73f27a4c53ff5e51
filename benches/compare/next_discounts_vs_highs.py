#!/usr/bin/env python3
"""The period LP inside next_discounts against HiGHS (scipy.optimize.linprog).

With `estimate => 'mean'` the step solves the period LP on the posterior means
(1 + sold) / (2 + shown); its `lp_value` must equal the optimum of the same LP solved by
HiGHS: maximise Σ value·traffic·θ·x over offer probabilities x ≥ 0 with Σ_k x_ik ≤ 1 per
item, expected sales ≤ inventory / periods_left per item, and expected subsidy ≤ budget /
periods_left. Seeded random instances; revenue and profit; no budget, loose, tight budgets.

    cargo build --release && python3 benches/compare/next_discounts_vs_highs.py

Needs numpy, scipy, psycopg. FLASHSQL_BINARY overrides the server binary.
"""
import io
import os
import sys
import tempfile

import numpy as np
import psycopg
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import BINARY, start_server  # noqa: E402

LEVELS = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
PERIODS = 10


def instance(n, seed):
    rng = np.random.default_rng(seed)
    price = rng.uniform(10, 100, n)
    cost = price * rng.uniform(0.3, 0.7, n)
    traffic = rng.uniform(1, 20, n)
    inventory = np.floor(rng.uniform(1, 40, n))
    base = rng.uniform(0.02, 0.2, n)
    lift = rng.uniform(1, 6, n)
    conv = np.minimum(base[:, None] * (1 + lift[:, None] * LEVELS[None, :]), 0.95)
    shown = np.full((n, len(LEVELS)), 1000.0)
    sold = np.round(shown * conv)
    return price, cost, traffic, inventory, shown, sold


def highs_value(price, cost, traffic, inventory, shown, sold, budget, profit):
    n, k = shown.shape
    theta = (1 + sold) / (2 + shown)
    q = traffic[:, None] * theta
    unit = price[:, None] * (1 - LEVELS[None, :]) - (cost[:, None] if profit else 0)
    c = -(unit * q).ravel()
    rows = 2 * n + (1 if budget is not None else 0)
    A = lil_matrix((rows, n * k))
    b = np.zeros(rows)
    for i in range(n):
        A[i, i * k:(i + 1) * k] = 1
        b[i] = 1
        A[n + i, i * k:(i + 1) * k] = q[i]
        b[n + i] = inventory[i] / PERIODS
    if budget is not None:
        A[2 * n, :] = (LEVELS[None, :] * price[:, None] * q).ravel()
        b[2 * n] = budget / PERIODS
    res = linprog(c, A_ub=A.tocsr(), b_ub=b, bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return -res.fun, (LEVELS[None, :] * price[:, None] * q)


def main():
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            print("| seed | N | objective | budget | HiGHS LP | next_discounts lp_value | relative difference |")
            print("|---|---|---|---|---|---|---|")
            for seed, n in enumerate([5, 50, 300, 1000]):
                price, cost, traffic, inventory, shown, sold = instance(n, seed)
                conn.execute("DROP TABLE IF EXISTS state")
                conn.execute(
                    "CREATE TABLE state (item_id BIGINT, discount DOUBLE PRECISION, price DOUBLE PRECISION, unit_cost DOUBLE PRECISION, "
                    "inventory DOUBLE PRECISION, traffic DOUBLE PRECISION, shown DOUBLE PRECISION, sold DOUBLE PRECISION)"
                )
                buf = io.StringIO()
                for i in range(n):
                    for j, d in enumerate(LEVELS):
                        fields = (d, price[i], cost[i], inventory[i], traffic[i], shown[i, j], sold[i, j])
                        buf.write(f"{i}\t" + "\t".join(repr(float(v)) for v in fields) + "\n")
                with conn.cursor().copy("COPY state FROM STDIN") as cp:
                    cp.write(buf.getvalue())
                for profit in (False, True):
                    free_value, subsidy = highs_value(price, cost, traffic, inventory, shown, sold, None, profit)
                    for share in (None, 0.5, 0.1):
                        budget = None
                        if share is not None:
                            # A share of what the deepest discounts would cost per period, over the horizon.
                            budget = float(subsidy.max(axis=1).sum() * PERIODS * share)
                        want, _ = highs_value(price, cost, traffic, inventory, shown, sold, budget, profit)
                        opts = f"periods_left => {PERIODS}, estimate => 'mean', objective => '{'profit' if profit else 'revenue'}'"
                        if budget is not None:
                            opts += f", budget => {budget!r}"
                        got = conn.execute(f"SELECT max(lp_value) FROM next_discounts('state', {opts})").fetchone()[0]
                        diff = abs(got - want) / abs(want)
                        worst = max(worst, diff)
                        label = "none" if budget is None else f"{budget:.1f}"
                        print(f"| {seed} | {n} | {'profit' if profit else 'revenue'} | {label} | {want:.9f} | {got:.9f} | {diff:.1e} |")
        finally:
            proc.terminate()
            proc.wait()
    print(f"\nworst relative difference: {worst:.1e} (tolerance 1e-9)")
    sys.exit(0 if worst <= 1e-9 else 1)


if __name__ == "__main__":
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found")
    main()
