#!/usr/bin/env python3
"""Thompson-sampling policies on Ferreira et al.'s single product, flashsql against numpy.

An independent numpy re-implementation of three policies — inventory-blind TS (the best
sampled revenue p·θ each period), TS-fixed (the period LP at capacity I/T) and TS-update (at
the remaining capacity) — runs on its own seeded draws; flashsql's `simulate_flash_sale` runs
the same setting over SQL in the same run. The two must agree within their standard errors:
this is the check that our policies are the paper's, not an artefact of our simulator.

    cargo build --release && python3 benches/compare/ferreira_policies_vs_numpy.py

Needs numpy, scipy, psycopg. FLASHSQL_BINARY overrides the server binary.
"""
import os
import sys
import tempfile

import numpy as np
import psycopg
from scipy.optimize import linprog

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import start_server  # noqa: E402

PRICES = np.array([29.9, 34.9, 39.9, 44.9])
PROBS = np.array([0.8, 0.6, 0.3, 0.1])
RATIO = 0.25


def lp_mix(rewards, probs, capacity):
    """max Σ x·rewards s.t. Σ x·probs ≤ capacity, Σ x ≤ 1, x ≥ 0 (HiGHS)."""
    r = linprog(-rewards, A_ub=[probs, np.ones(len(probs))], b_ub=[capacity, 1],
                bounds=[(0, 1)] * len(probs), method="highs")
    return np.clip(r.x, 0, None), -r.fun


def simulate(policy, horizon, trials, seed):
    rng = np.random.default_rng(seed)
    inventory = int(RATIO * horizon)
    bound = lp_mix(PRICES * PROBS, PROBS, inventory / horizon)[1] * horizon
    shares = np.empty(trials)
    for trial in range(trials):
        a = np.ones(4)
        b = np.ones(4)
        left = inventory
        revenue = 0.0
        for t in range(horizon):
            if left == 0:
                break
            theta = rng.beta(a, b)
            rewards = PRICES * theta
            if policy == "ts_blind":
                k = int(np.argmax(rewards))
            else:
                cap = inventory / horizon if policy == "ts_fixed" else left / (horizon - t)
                x, _ = lp_mix(rewards, theta, cap)
                u = rng.random()
                cum = np.cumsum(x)
                if u >= cum[-1]:
                    continue  # held back this period
                k = int(np.searchsorted(cum, u, side="right"))
            bought = rng.random() < PROBS[k]
            a[k] += bought
            b[k] += not bought
            if bought:
                revenue += PRICES[k]
                left -= 1
        shares[trial] = 100 * revenue / bound
    return shares.mean(), shares.std(ddof=1) / np.sqrt(trials)


def main():
    cases = [("ts_blind", 100, 2000), ("ts_blind", 1000, 500), ("ts_fixed", 100, 500),
             ("ts_update", 100, 500)]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start_server(os.path.join(tmp, "data"))
        try:
            conn = psycopg.connect(host=host, port=port, user="flashsql", dbname="flashsql", autocommit=True)
            print("| policy | T | trials | flashsql % of LP bound | numpy % of LP bound | difference / combined s.e. |")
            print("|---|---|---|---|---|---|")
            for policy, horizon, trials in cases:
                row = conn.execute(
                    "SELECT avg(pct_of_bound), stddev_samp(pct_of_bound) / sqrt(count(*)) FROM simulate_flash_sale("
                    f"scenario => 'ferreira_single', policy => '{policy}', horizon => {horizon}, "
                    f"inventory_ratio => {RATIO}, trials => {trials}, seed => 1)").fetchone()
                ours, ours_se = float(row[0]), float(row[1])
                ref, ref_se = simulate(policy, horizon, trials, seed=7)
                z = (ours - ref) / np.hypot(ours_se, ref_se)
                worst = max(worst, abs(z)) if np.isfinite(z) else float("inf")
                print(f"| {policy} | {horizon} | {trials} | {ours:.2f} ± {ours_se:.2f} | {ref:.2f} ± {ref_se:.2f} | {z:+.2f} |")
        finally:
            proc.terminate()
            proc.wait()
    print(f"\nlargest |difference| / s.e.: {worst:.2f} (the two must agree within 3)")
    if worst > 3:
        sys.exit(1)


if __name__ == "__main__":
    main()
