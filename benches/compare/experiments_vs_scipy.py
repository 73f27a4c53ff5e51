#!/usr/bin/env python3
"""The experiment functions against scipy and statsmodels on the same rows, over SQL.

Data: the Hillstrom e-mail experiment (64,000 customers; arms "Mens E-Mail", "Womens E-Mail"
and "No E-Mail"; outcomes visit, conversion, spend; `history` as a pre-period covariate) when
its CSV is found, and always a seeded synthetic experiment (3 arms, 30,000 rows). For each
treatment arm against the control:

- ab_test on each binary outcome: statsmodels proportions_ztest (pooled z, p) and
  confint_proportions_2indep(method='wald', compare='diff') (interval); the relative lift
  against the delta-method formula in numpy;
- ttest on each outcome: scipy.stats.ttest_ind(equal_var=False) (t, df, p, interval);
- cuped_ttest of spend with covariate history: θ from numpy's covariance on the two arms,
  then scipy's Welch test on y − θ(x − x̄);
- ttest_from_stats on (sum, sum of squares, n) of the same rows: the same scipy test;
- srm_test: scipy.stats.chisquare, equal shares and given shares;
- cuped(y, x): numpy's θ and variances.

Fails unless every statistic, p-value and interval bound agrees to 1e-9 relative (a p-value
below 1e-250 counts as agreeing with scipy's 0 or denormal).

    cargo build --release && python3 benches/compare/experiments_vs_scipy.py [hillstrom.csv]

With FLASHSQL_DSN set it uses that server instead of starting the release binary. Needs
numpy, scipy, statsmodels, psycopg.
"""
import io
import os
import sys

import numpy as np
import psycopg
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import ROOT, server_dsn  # noqa: E402

TOLERANCE = 1e-9
worst = [0.0, ""]
checked = [0]


def agree(what, got, ref):
    checked[0] += 1
    if got is None or ref is None or (isinstance(ref, float) and np.isnan(ref)):
        if not (got is None and (ref is None or np.isnan(ref))):
            raise SystemExit(f"{what}: flashsql {got!r}, reference {ref!r}")
        return
    if abs(ref) < 1e-250 and abs(got) < 1e-250:
        return
    diff = abs(got - ref) / max(abs(ref), 1e-300)
    if diff > worst[0]:
        worst[0], worst[1] = diff, what
    if diff > TOLERANCE:
        raise SystemExit(f"{what}: flashsql {got!r}, reference {ref!r} (relative {diff:.2e})")


def load(conn, table, columns, rows):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in columns)})")
    buf = io.StringIO()
    for r in rows:
        buf.write("\t".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(v) for v in r))
        buf.write("\n")
    with conn.cursor().copy(f"COPY {table} FROM STDIN") as cp:
        cp.write(buf.getvalue())


def hillstrom(path):
    import csv

    with open(path) as f:
        r = csv.DictReader(f)
        rows = [
            (d["segment"], int(d["visit"]), int(d["conversion"]), float(d["spend"]), float(d["history"]))
            for d in r
        ]
    return rows, "No E-Mail"


def synthetic():
    rng = np.random.default_rng(20261201)
    rows = []
    for arm, lift in (("control", 0.0), ("plan_a", 0.01), ("plan_b", 0.03)):
        n = 10_000
        pre = rng.lognormal(3.0, 1.0, n)
        visit = (rng.random(n) < 0.15 + lift).astype(int)
        conversion = visit * (rng.random(n) < 0.1 + lift).astype(int)
        spend = conversion * (0.5 * pre + rng.gamma(2.0, 30.0, n)) * (1 + lift)
        rows += [(arm, int(v), int(c), float(s), float(p)) for v, c, s, p in zip(visit, conversion, spend, pre)]
    return rows, "control"


def check(conn, name, rows, control):
    table = "exp_" + name
    load(
        conn,
        table,
        [("segment", "TEXT"), ("visit", "BIGINT"), ("conversion", "BIGINT"), ("spend", "DOUBLE PRECISION"),
         ("history", "DOUBLE PRECISION")],
        rows,
    )
    seg = np.array([r[0] for r in rows])
    data = {k: np.array([r[i] for r in rows], dtype=float) for i, k in enumerate(("", "visit", "conversion", "spend", "history")) if k}
    arms = sorted(str(a) for a in set(seg))
    treatments = [a for a in arms if a != control]

    def one(sql):
        return conn.execute(sql).fetchall()

    # ab_test: one struct per treatment arm.
    for outcome in ("visit", "conversion"):
        got = one(
            f"SELECT r['variant'], r['n_control'], r['n_treatment'], r['conversions_control'], "
            f"r['conversions_treatment'], r['lift'], r['lift_low'], r['lift_high'], r['z'], r['p_value'], "
            f"r['relative_lift'], r['relative_low'], r['relative_high'], r['relative_p_value'] "
            f"FROM (SELECT unnest(ab_test(segment, {outcome}, '{control}')) AS r FROM {table}) ORDER BY 1"
        )
        assert [g[0] for g in got] == treatments, got
        for g in got:
            c = data[outcome][seg == control]
            t = data[outcome][seg == g[0]]
            xc, nc, xt, nt = c.sum(), len(c), t.sum(), len(t)
            assert (g[1], g[2], g[3], g[4]) == (nc, nt, xc, xt), g
            z, p = proportions_ztest([xt, xc], [nt, nc])
            lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
            pc, pt = xc / nc, xt / nt
            rel = pt / pc - 1
            se = np.sqrt(pt * (1 - pt) / (nt * pc**2) + pt**2 * pc * (1 - pc) / (nc * pc**4))
            q = stats.norm.ppf(0.975)
            what = f"{name} ab_test {outcome} {g[0]}"
            for label, a, b in [
                ("lift", g[5], pt - pc), ("lift_low", g[6], lo), ("lift_high", g[7], hi), ("z", g[8], z),
                ("p", g[9], p), ("relative", g[10], rel), ("relative_low", g[11], rel - q * se),
                ("relative_high", g[12], rel + q * se), ("relative_p", g[13], 2 * stats.norm.sf(abs(rel / se))),
            ]:
                agree(f"{what} {label}", a, b)

    # ttest and ttest_from_stats on every outcome.
    for outcome in ("visit", "conversion", "spend"):
        got = one(
            f"SELECT r['variant'], r['effect'], r['effect_low'], r['effect_high'], r['t'], r['df'], r['p_value'] "
            f"FROM (SELECT unnest(ttest(segment, {outcome}, control => '{control}')) AS r FROM {table}) ORDER BY 1"
        )
        sums = {
            v: (s, ss, n)
            for v, s, ss, n in one(
                f"SELECT segment, sum({outcome}), sum({outcome} * {outcome}), count(*) FROM {table} GROUP BY segment"
            )
        }
        for g in got:
            c = data[outcome][seg == control]
            t = data[outcome][seg == g[0]]
            r = stats.ttest_ind(t, c, equal_var=False)
            ci = r.confidence_interval(0.95)
            what = f"{name} ttest {outcome} {g[0]}"
            for label, a, b in [
                ("effect", g[1], t.mean() - c.mean()), ("low", g[2], ci.low), ("high", g[3], ci.high),
                ("t", g[4], r.statistic), ("df", g[5], r.df), ("p", g[6], r.pvalue),
            ]:
                agree(f"{what} {label}", a, b)
            (sc, ssc, ncn), (st, sst, ntn) = sums[control], sums[g[0]]
            f = one(
                f"SELECT r['effect'], r['t'], r['p_value'], r['effect_low'] FROM (SELECT ttest_from_stats("
                f"{sc!r}, {ssc!r}, {ncn}, {st!r}, {sst!r}, {ntn}) AS r)"
            )[0]
            # From sums of squares the variance loses digits to cancellation; spend's sums
            # are exact in binary only to about 1e-12, which the test's 1e-9 still covers.
            for label, a, b in [("effect", f[0], t.mean() - c.mean()), ("t", f[1], r.statistic),
                                ("p", f[2], r.pvalue), ("low", f[3], ci.low)]:
                agree(f"{name} ttest_from_stats {outcome} {g[0]} {label}", a, b)

    # cuped_ttest of spend with history as the covariate.
    got = one(
        f"SELECT r['variant'], r['theta'], r['effect'], r['effect_low'], r['effect_high'], r['t'], r['df'], "
        f"r['p_value'] FROM (SELECT unnest(cuped_ttest(segment, spend, history, '{control}')) AS r "
        f"FROM {table}) ORDER BY 1"
    )
    for g in got:
        m = (seg == control) | (seg == g[0])
        y, x = data["spend"][m], data["history"][m]
        theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
        adj = y - theta * (x - x.mean())
        arm = seg[m]
        r = stats.ttest_ind(adj[arm == g[0]], adj[arm == control], equal_var=False)
        ci = r.confidence_interval(0.95)
        what = f"{name} cuped_ttest spend {g[0]}"
        for label, a, b in [
            ("theta", g[1], theta), ("effect", g[2], adj[arm == g[0]].mean() - adj[arm == control].mean()),
            ("low", g[3], ci.low), ("high", g[4], ci.high), ("t", g[5], r.statistic), ("df", g[6], r.df),
            ("p", g[7], r.pvalue),
        ]:
            agree(f"{what} {label}", a, b)

    # srm_test: equal shares, then the shares the design intended.
    counts = [int((seg == a).sum()) for a in arms]
    r = stats.chisquare(counts)
    g = one(f"SELECT s['chi2'], s['df'], s['p_value'] FROM (SELECT srm_test(segment) AS s FROM {table})")[0]
    agree(f"{name} srm equal chi2", g[0], r.statistic)
    agree(f"{name} srm equal p", g[2], r.pvalue)
    assert g[1] == len(arms) - 1
    shares = [0.5] + [0.5 / (len(arms) - 1)] * (len(arms) - 1)
    exp = np.array(shares) / sum(shares) * sum(counts)
    r = stats.chisquare(counts, exp)
    arr = ", ".join(f"'{a}'" for a in arms)
    sh = ", ".join(repr(s) for s in shares)
    g = one(f"SELECT s['chi2'], s['p_value'] FROM (SELECT srm_test(segment, [{arr}], [{sh}]) AS s FROM {table})")[0]
    agree(f"{name} srm shares chi2", g[0], r.statistic)
    agree(f"{name} srm shares p", g[1], r.pvalue)

    # cuped(y, x) over the whole table.
    y, x = data["spend"], data["history"]
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    g = one(f"SELECT c['theta'], c['variance'], c['variance_adjusted'] FROM (SELECT cuped(spend, history) AS c FROM {table})")[0]
    agree(f"{name} cuped theta", g[0], theta)
    agree(f"{name} cuped variance", g[1], np.var(y, ddof=1))
    agree(f"{name} cuped adjusted", g[2], np.var(y - theta * x, ddof=1))
    print(f"{name}: {len(rows)} rows, arms {arms}, control {control!r}: agrees")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "hillstrom", "hillstrom.csv")
    datasets = [("synthetic", *synthetic())]
    if os.path.exists(path):
        datasets.insert(0, ("hillstrom", *hillstrom(path)))
    else:
        print(f"({path} not found: the synthetic experiment only)")
    with server_dsn() as dsn:
        conn = psycopg.connect(dsn, autocommit=True)
        for name, rows, control in datasets:
            check(conn, name, rows, control)
    print(f"{checked[0]} values checked; worst relative difference {worst[0]:.1e} ({worst[1]}); tolerance {TOLERANCE:g}")
    print("experiments: ok")


if __name__ == "__main__":
    main()
