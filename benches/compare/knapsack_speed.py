#!/usr/bin/env python3
"""Speed of the discount solvers side by side with numpy and HiGHS, on the same instances.

For N items × 5 discount levels (seeded random curves, budget 30 % of the deepest-discount
subsidy) this runs, in one process and one run:
- flashsql's solvers (the `solve_curves` example, reading the very same numbers),
- numpy implementations of the same two algorithms (Lagrangian bisection; LP via per-item
  upper convex hulls and a greedy over slopes, rounded by dropping the fractional step),
- HiGHS through scipy (LP everywhere it finishes within the time limit; MILP at N = 10^4),
and prints seconds, objectives and the ratios.

    cargo build --release --example solve_curves -p flashsql-udfs
    python3 benches/compare/knapsack_speed.py [--sizes 10000,100000,1000000] [--highs-limit 120]

Needs numpy and scipy.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_matrix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SOLVER = os.path.join(TARGET, "release", "examples", "solve_curves")


def instance(n, k, seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(1, 20, n)
    d = np.arange(k) * 0.1
    lift = 1 + rng.uniform(0.5, 3.0, (n, k)) * d[None, :]
    values = base[:, None] * lift * (1 - 0.5 * d[None, :])
    costs = base[:, None] * lift * d[None, :]
    return values, costs


def np_lagrangian(V, C, B, tol=1e-3):
    rows = np.arange(len(V))

    def one_pass(lam):
        S = V - lam * C
        k = S.argmax(axis=1)
        return C[rows, k].sum(), V[rows, k].sum(), S[rows, k].sum()

    c0, v0, _ = one_pass(0.0)
    if c0 <= B:
        return v0, v0
    lo, hi = 0.0, 1.0
    while one_pass(hi)[0] > B:
        lo, hi = hi, hi * 2
    best_upper, feasible_value = np.inf, one_pass(hi)[1]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        c, v, s = one_pass(mid)
        best_upper = min(best_upper, s + mid * B)
        if c <= B:
            hi, feasible_value = mid, v
        else:
            lo = mid
        if (best_upper - feasible_value) / abs(best_upper) <= tol:
            break
    return feasible_value, best_upper


def np_exact(V, C, B):
    """LP via upper hulls (levels are sorted by cost here) and the greedy over slopes."""
    N, K = V.shape
    rows = np.arange(N)
    stack = np.zeros((N, K), dtype=np.int64)
    top = np.ones(N, dtype=np.int64)
    for k in range(1, K):
        last = stack[rows, top - 1]
        ok = (V[:, k] > V[rows, last]) & (C[:, k] > C[rows, last])
        for _ in range(K):
            a = stack[rows, np.maximum(top - 2, 0)]
            b = stack[rows, top - 1]
            cross = (C[rows, b] - C[rows, a]) * (V[:, k] - V[rows, a]) - (V[rows, b] - V[rows, a]) * (C[:, k] - C[rows, a])
            pop = ok & (top >= 2) & (cross >= 0)
            if not pop.any():
                break
            top -= pop
        stack[rows[ok], top[ok]] = k
        top += ok
    items, dcs, dvs = [], [], []
    for j in range(1, K):
        m = j < top
        frm, to = stack[m, j - 1], stack[m, j]
        it = rows[m]
        items.append(it)
        dcs.append(C[it, to] - C[it, frm])
        dvs.append(V[it, to] - V[it, frm])
    item, dc, dv = np.concatenate(items), np.concatenate(dcs), np.concatenate(dvs)
    order = np.lexsort((item, -(dv / dc)))
    dc, dv = dc[order], dv[order]
    cum = np.cumsum(dc)
    base_value = V[rows, 0].sum()
    f = np.searchsorted(cum, B, side="right")
    taken = dv[:f].sum()
    if f == len(dc):
        return base_value + taken, base_value + taken
    spent = cum[f - 1] if f > 0 else 0.0
    return base_value + taken, base_value + taken + dv[f] * (B - spent) / dc[f]


def highs(V, C, B, integral, limit):
    n, k = V.shape
    one_per_item = csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), np.arange(n * k))), shape=(n, n * k))
    t0 = time.perf_counter()
    if integral:
        res = milp(
            -V.ravel(),
            constraints=[LinearConstraint(one_per_item, 1, 1), LinearConstraint(C.ravel()[None, :], -np.inf, B)],
            integrality=np.ones(n * k),
            bounds=Bounds(0, 1),
            options={"time_limit": limit, "mip_rel_gap": 1e-9},
        )
    else:
        res = linprog(
            -V.ravel(), A_ub=C.ravel()[None, :], b_ub=[B], A_eq=one_per_item, b_eq=np.ones(n),
            bounds=(0, 1), method="highs", options={"time_limit": limit},
        )
    seconds = time.perf_counter() - t0
    return (-res.fun if res.status == 0 else float("nan")), seconds


def median_time(f, runs):
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--highs-limit", type=float, default=120.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(SOLVER):
        sys.exit(f"{SOLVER} not found: cargo build --release --example solve_curves -p flashsql-udfs")
    k = 5
    print("| N | solver | flashsql s | numpy s | numpy / flashsql | HiGHS s | HiGHS / flashsql | flashsql objective | numpy objective | HiGHS objective |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            V, C = instance(n, k, seed=n)
            B = float(C[:, -1].sum() * 0.3)
            vp, cp = os.path.join(tmp, "v.f64"), os.path.join(tmp, "c.f64")
            V.astype("<f8").tofile(vp)
            C.astype("<f8").tofile(cp)
            out = subprocess.run([SOLVER, vp, cp, str(n), str(k), repr(B), str(args.runs)], check=True, capture_output=True, text=True).stdout
            ours = {r["solver"]: r for r in map(json.loads, out.splitlines())}
            t_lag, (lag_v, _) = median_time(lambda: np_lagrangian(V, C, B), args.runs)
            t_ex, (ex_v, ex_lp) = median_time(lambda: np_exact(V, C, B), args.runs)
            hi_lp, t_hi_lp = highs(V, C, B, False, args.highs_limit) if n <= 100_000 else (float("nan"), float("nan"))
            hi_mip, t_hi_mip = highs(V, C, B, True, args.highs_limit) if n <= 10_000 else (float("nan"), float("nan"))
            for name, t_np, v_np, t_hi, v_hi in (
                ("lagrangian", t_lag, lag_v, float("nan"), float("nan")),
                ("exact (plan)", t_ex, ex_v, t_hi_mip, hi_mip),
                ("exact (LP bound)", t_ex, ex_lp, t_hi_lp, hi_lp),
            ):
                r = ours["exact" if name.startswith("exact") else "lagrangian"]
                mine = r["upper_bound"] if "LP" in name else r["objective"]
                hi_ratio = t_hi / r["seconds"] if t_hi == t_hi else float("nan")
                print(
                    f"| {n:,} | {name} | {r['seconds']:.4f} | {t_np:.4f} | {t_np / r['seconds']:.1f}× | "
                    f"{t_hi:.2f} | {hi_ratio:.0f}× | {mine:.4f} | {v_np:.4f} | {v_hi:.4f} |"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
