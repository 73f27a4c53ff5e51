#!/usr/bin/env python3
"""The off-policy estimators against the Open Bandit Pipeline's formulas on the same rows.

Data: the Open Bandit Dataset sample (ZOZOTOWN, "All" campaign, 10,000 rounds from each of a
uniform-random policy and the production Bernoulli Thompson Sampling policy; 80 items, 3
positions). Two evaluations, each computed in SQL the way docs/functions.md shows:

- the uniform-random policy (π_e = 1/80 at every position) from the BTS logs;
- "average BTS" (the BTS propensities of each item and position averaged over the BTS log and
  normalised per position: a fixed, context-free policy) from the random logs;

with a reward model q̂(item, position) = the other log's click rate of the pair, shrunk to the
position's rate (10 pseudo-rounds), and v̂ = Σ_a π_e(a | position) q̂(a, position).

The per-round inputs are read back from the server and the estimates recomputed in numpy as
obp 0.5 (`obp.ope.estimators`) defines them: IPW `reward * min(iw, lambda_)`, SNIPW
`reward * iw / iw.mean()`, DM `np.average(q_hat, weights=action_dist)`, DR
`dm + min(iw, lambda_) * (reward - q_hat_factual)`, Switch-DR
`dm + (iw <= lambda_) * iw * (reward - q_hat_factual)`, each `.mean()`; obp itself requires
Python < 3.11. Standard errors against the sample standard deviation of the per-round values
over √n (the delta method for SNIPS), intervals against V̂ ± z·se, the effective sample size
against (Σw)²/Σw². Fails unless every value agrees to 1e-9 relative.

    cargo build --release && python3 benches/compare/ope_vs_obp.py [obd directory]

With FLASHSQL_DSN set it uses that server instead of starting the release binary. Needs
numpy, scipy, psycopg.
"""
import csv
import os
import sys

import numpy as np
import psycopg
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiments_vs_scipy import agree, checked, load, worst  # noqa: E402
from knapsack_vs_highs import ROOT, server_dsn  # noqa: E402

TOLERANCE = 1e-9
N_ITEMS = 80


def read_log(path):
    with open(path) as f:
        return [
            (int(d["item_id"]), int(d["position"]), int(d["click"]), float(d["propensity_score"]))
            for d in csv.DictReader(f)
        ]


# The SQL of one evaluation: per-round inputs from `logged` (the log being reweighted),
# the target policy in `target(item_id, position, prob)` and the reward model from `other`.
MODEL_SQL = """
CREATE TABLE {name}_model AS
WITH pos AS (SELECT position, avg(click) AS rate FROM {other} GROUP BY position),
     pair AS (SELECT item_id, position, sum(click) AS clicks, count(*) AS shown
              FROM {other} GROUP BY item_id, position),
     grid AS (SELECT i.item_id, p.position, p.rate
              FROM (SELECT item_id FROM {logged} UNION SELECT item_id FROM {target}) i CROSS JOIN pos p)
SELECT g.item_id, g.position,
       (coalesce(pair.clicks, 0) + 10 * g.rate) / (coalesce(pair.shown, 0) + 10) AS q
FROM grid g LEFT JOIN pair USING (item_id, position)
"""
ROUNDS_SQL = """
CREATE TABLE {name}_rounds AS
SELECT l.position, l.click AS reward, l.propensity, coalesce(t.prob, 0) AS target_propensity,
       m.q AS estimated_reward, v.value AS estimated_value
FROM {logged} l
LEFT JOIN {target} t ON t.item_id = l.item_id AND t.position = l.position
JOIN {name}_model m ON m.item_id = l.item_id AND m.position = l.position
JOIN (SELECT t.position, sum(t.prob * m.q) AS value
      FROM {target} t JOIN {name}_model m ON m.item_id = t.item_id AND m.position = t.position
      GROUP BY t.position) v
  ON v.position = l.position
"""
ESTIMATES_SQL = """
SELECT e['estimate'], e['std_error'], e['ci_low'], e['ci_high'], e['n'],
       e['effective_sample_size'], e['mean_weight'], e['max_weight'], e['limited']
FROM (SELECT {call} AS e FROM {name}_rounds {where}) s
"""


def reference(rows, kind, limit, alpha):
    r, p, pi, q, v = (np.array([x[i] for x in rows], dtype=float) for i in range(1, 6))
    iw = pi / p
    if kind == "ips":
        w = np.minimum(iw, limit)
        rounds = r * w
    elif kind == "snips":
        w = iw
        rounds = r * iw / iw.mean()
    elif kind == "dm":
        w = None
        rounds = v
    elif kind == "dr":
        w = np.minimum(iw, limit)
        rounds = v + w * (r - q)
    else:
        w = iw
        rounds = v + (iw <= limit).astype(int) * iw * (r - q)
    n = len(rounds)
    estimate = rounds.mean()
    if kind == "snips":
        u = iw * (r - estimate)
        se = np.sqrt((u**2).sum() / (n * (n - 1))) / iw.mean()
    else:
        se = rounds.std(ddof=1) / np.sqrt(n)
    # A constant column (DM's value within one position) has no spread: numpy's two-pass
    # standard deviation leaves ~1e-20 of rounding there, flashsql's running moments 0.
    if se <= 1e-12 * abs(estimate):
        se = 0.0
    z = stats.norm.ppf(1 - alpha / 2)
    out = {"estimate": estimate, "std_error": se, "ci_low": estimate - z * se, "ci_high": estimate + z * se, "n": n}
    if w is not None:
        out["effective_sample_size"] = w.sum() ** 2 / (w**2).sum()
        out["mean_weight"] = w.mean()
        out["max_weight"] = iw.max()
        out["limited"] = int((iw > limit).sum())
    return out


def evaluate(conn, name, logged, other, target, truth):
    for table, sql in (("model", MODEL_SQL), ("rounds", ROUNDS_SQL)):
        conn.execute(f"DROP TABLE IF EXISTS {name}_{table}")
        conn.execute(sql.format(name=name, logged=logged, other=other, target=target))
    rows = conn.execute(
        f"SELECT position, reward, propensity, target_propensity, estimated_reward, estimated_value "
        f"FROM {name}_rounds"
    ).fetchall()
    cols = "reward, propensity, target_propensity"
    model = f"{cols}, estimated_reward, estimated_value"
    calls = [
        ("ips", np.inf, 0.05, f"ope_ips({cols})"),
        ("ips", 10.0, 0.05, f"ope_ips({cols}, clip => 10)"),
        ("snips", np.inf, 0.05, f"ope_snips({cols})"),
        ("snips", np.inf, 0.1, f"ope_snips({cols}, alpha => 0.1)"),
        ("dm", np.inf, 0.05, "ope_dm(estimated_value)"),
        ("dr", np.inf, 0.05, f"ope_dr({model})"),
        ("dr", 10.0, 0.05, f"ope_dr({model}, clip => 10)"),
        ("switch_dr", 5.0, 0.05, f"ope_switch_dr({model}, threshold => 5)"),
        ("switch_dr", np.inf, 0.05, f"ope_switch_dr({model})"),
    ]
    names = ["estimate", "std_error", "ci_low", "ci_high", "n", "effective_sample_size", "mean_weight",
             "max_weight", "limited"]
    summary = []
    for kind, limit, alpha, call in calls:
        for position in (None, 1, 2, 3):
            part = rows if position is None else [x for x in rows if x[0] == position]
            where = "" if position is None else f"WHERE position = {position}"
            got = dict(zip(names, conn.execute(ESTIMATES_SQL.format(call=call, name=name, where=where)).fetchone()))
            ref = reference(part, kind, limit, alpha)
            for key in names:
                if key in ref:
                    agree(f"{name} {call} position {position} {key}", got[key], ref[key])
                else:
                    assert got[key] is None, (name, call, key, got[key])
            if position is None and alpha == 0.05:
                summary.append((call.split("(")[0] + ("" if np.isinf(limit) else f" λ={limit:g}"), got))
    print(f"\n{name}: {len(rows)} logged rounds; on-policy value of the target (its own log's click rate) {truth:.5f}")
    print("| estimator | estimate | std error | 95 % interval | ESS | covers |")
    print("|---|---|---|---|---|---|")
    for label, g in summary:
        ess = "—" if g["effective_sample_size"] is None else f"{g['effective_sample_size']:.0f}"
        covers = "yes" if g["ci_low"] <= truth <= g["ci_high"] else "no"
        print(f"| {label} | {g['estimate']:.5f} | {g['std_error']:.5f} | [{g['ci_low']:.5f}, {g['ci_high']:.5f}] | {ess} | {covers} |")


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "obd")
    random_log = read_log(os.path.join(folder, "random_all.csv"))
    bts_log = read_log(os.path.join(folder, "bts_all.csv"))
    columns = [("item_id", "BIGINT"), ("position", "BIGINT"), ("click", "BIGINT"), ("propensity", "DOUBLE PRECISION")]
    with server_dsn() as dsn:
        conn = psycopg.connect(dsn, autocommit=True)
        load(conn, "obd_random", columns, random_log)
        load(conn, "obd_bts", columns, bts_log)
        conn.execute("DROP TABLE IF EXISTS policy_uniform")
        conn.execute(
            f"CREATE TABLE policy_uniform AS SELECT i.item_id, p.position, 1.0 / {N_ITEMS} AS prob "
            f"FROM (SELECT DISTINCT item_id FROM obd_random) i CROSS JOIN (SELECT DISTINCT position FROM obd_random) p"
        )
        conn.execute("DROP TABLE IF EXISTS policy_bts")
        conn.execute(
            "CREATE TABLE policy_bts AS SELECT item_id, position, "
            "avg(propensity) / sum(avg(propensity)) OVER (PARTITION BY position) AS prob "
            "FROM obd_bts GROUP BY item_id, position"
        )
        n_items = conn.execute("SELECT count(DISTINCT item_id) FROM obd_random").fetchone()[0]
        assert n_items == N_ITEMS, n_items
        evaluate(conn, "uniform_from_bts", "obd_bts", "obd_random", "policy_uniform",
                 float(np.mean([x[2] for x in random_log])))
        evaluate(conn, "bts_from_uniform", "obd_random", "obd_bts", "policy_bts",
                 float(np.mean([x[2] for x in bts_log])))
    print(f"\n{checked[0]} values checked; worst relative difference {worst[0]:.1e} ({worst[1]}); tolerance {TOLERANCE:g}")
    print("off-policy: ok")


if __name__ == "__main__":
    main()
