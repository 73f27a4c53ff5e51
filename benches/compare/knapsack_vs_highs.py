#!/usr/bin/env python3
"""optimize_discounts against HiGHS (scipy) on the same random instances.

Starts the release server on a scratch directory, loads seeded random discount curves with
COPY, runs optimize_discounts with both solvers over SQL, and solves the same multiple-choice
knapsack with HiGHS as a MILP and as an LP (scipy.optimize.milp / linprog). Prints, per
instance, the objectives and bounds side by side and the relative differences.

    cargo build --release && python3 benches/compare/knapsack_vs_highs.py

Needs: numpy, scipy, psycopg (pip install numpy scipy "psycopg[binary]").
"""
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import psycopg
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_matrix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get(
    "FLASHSQL_BINARY",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "flashsql"),
)


def instance(n, k, seed):
    """Discount levels 0, 10, …, 10(k-1) %: more discount sells more, up to a point."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(5, 50, n)
    cost = price * rng.uniform(0.4, 0.7, n)
    base = rng.uniform(1, 40, n)
    elasticity = rng.uniform(0.5, 4.0, n)
    inventory = np.where(rng.random(n) < 0.3, np.floor(base * rng.uniform(1, 2, n)), np.nan)
    d = np.arange(k) * 0.1
    units = base[:, None] * (1 + elasticity[:, None] * d[None, :])
    return price, cost, inventory, d, units


def values_costs(price, cost, inventory, d, units, objective):
    sold = np.where(np.isnan(inventory)[:, None], units, np.minimum(units, inventory[:, None]))
    paid = price[:, None] * (1 - d[None, :])
    value = (paid - cost[:, None]) * sold if objective == "profit" else paid * sold
    subsidy = d[None, :] * price[:, None] * sold
    return value, subsidy


def highs(value, subsidy, budget, integral):
    n, k = value.shape
    c = -value.ravel()
    rows = np.repeat(np.arange(n), k)
    one_per_item = csr_matrix((np.ones(n * k), (rows, np.arange(n * k))), shape=(n, n * k))
    if integral:
        res = milp(
            c,
            constraints=[
                LinearConstraint(one_per_item, 1, 1),
                LinearConstraint(subsidy.ravel()[None, :], -np.inf, budget),
            ],
            integrality=np.ones(n * k),
            bounds=Bounds(0, 1),
            options={"time_limit": 120, "mip_rel_gap": 1e-9},
        )
    else:
        res = linprog(
            c,
            A_ub=subsidy.ravel()[None, :],
            b_ub=[budget],
            A_eq=one_per_item,
            b_eq=np.ones(n),
            bounds=(0, 1),
            method="highs",
        )
    return -res.fun if res.status == 0 else float("nan")


def start_server(data_dir, world=("--no-seed",)):
    """Starts the server on a free port; `world` are the flags that choose its data (by
    default none: an empty directory stays empty)."""
    proc = subprocess.Popen(
        [BINARY, "serve", "--data-dir", data_dir, *world, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if " is ready on " in line:
            addr = line.split(" is ready on ")[1].split()[0]
            host, port = addr.rsplit(":", 1)
            return proc, host, int(port)
    raise RuntimeError("server did not start")


@contextlib.contextmanager
def server_dsn():
    """The DSN of FLASHSQL_DSN's server when set (a test's), else of a release server started
    on an empty data directory for the block's duration."""
    dsn = os.environ.get("FLASHSQL_DSN")
    if dsn is not None:
        yield dsn
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"))
        try:
            yield f"host={host} port={port} user=flashsql dbname=flashsql"
        finally:
            proc.terminate()
            proc.wait()


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found: run cargo build --release first")
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            print("| N | K | objective | budget | HiGHS MILP | exact plan | lagrangian plan | HiGHS LP | exact LP bound | (MILP − exact)/MILP | (LP − bound)/LP |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            worst_plan, worst_bound = 0.0, 0.0
            for seed, (n, k) in enumerate([(20, 3), (50, 5), (200, 5), (1000, 5), (5000, 5), (10000, 5), (10000, 7)]):
                for objective in ("revenue", "profit"):
                    price, cost, inventory, d, units = instance(n, k, seed)
                    value, subsidy = values_costs(price, cost, inventory, d, units, objective)
                    budget = float(subsidy.max(axis=1).sum() * 0.25)
                    table = f"curves_{seed}"
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                    conn.execute(
                        f"CREATE TABLE {table} (item_id BIGINT, discount DOUBLE PRECISION, expected_units DOUBLE PRECISION, "
                        "price DOUBLE PRECISION, unit_cost DOUBLE PRECISION, inventory DOUBLE PRECISION)"
                    )
                    buf = io.StringIO()
                    for i in range(n):
                        inv = "\\N" if np.isnan(inventory[i]) else repr(float(inventory[i]))
                        for j in range(k):
                            buf.write(f"{i}\t{float(d[j])!r}\t{float(units[i, j])!r}\t{float(price[i])!r}\t{float(cost[i])!r}\t{inv}\n")
                    with conn.cursor().copy(f"COPY {table} FROM STDIN") as cp:
                        cp.write(buf.getvalue())
                    q = (
                        f"SELECT max(objective), max(upper_bound) FROM optimize_discounts('{table}', "
                        f"budget => {budget!r}, objective => '{objective}', solver => '%s')"
                    )
                    ex_obj, ex_bound = conn.execute(q % "exact").fetchone()
                    lg_obj, _ = conn.execute(q % "lagrangian").fetchone()
                    mip = highs(value, subsidy, budget, True)
                    lp = highs(value, subsidy, budget, False)
                    plan_diff = (mip - ex_obj) / abs(mip)
                    bound_diff = (lp - ex_bound) / abs(lp)
                    # A HiGHS failure (NaN) must not vanish inside max().
                    worst_plan = max(worst_plan, plan_diff) if np.isfinite(plan_diff) else float("inf")
                    worst_bound = max(worst_bound, abs(bound_diff)) if np.isfinite(bound_diff) else float("inf")
                    print(
                        f"| {n} | {k} | {objective} | {budget:.1f} | {mip:.6f} | {ex_obj:.6f} | {lg_obj:.6f} | {lp:.6f} | "
                        f"{ex_bound:.6f} | {plan_diff:.2e} | {bound_diff:.2e} |"
                    )
            print(f"\nworst (MILP − exact plan)/MILP: {worst_plan:.2e}; worst |LP − exact bound|/LP: {worst_bound:.2e}")
        finally:
            proc.terminate()
            proc.wait()
    # The tolerances: the plan within 1e-6 of the MILP optimum (or better), the bound
    # equal to HiGHS LP's to 1e-9.
    if not (worst_plan <= 1e-6 and worst_bound <= 1e-9):
        sys.exit(1)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.1f} s)")
