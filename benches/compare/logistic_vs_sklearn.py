#!/usr/bin/env python3
"""`train_model(kind => 'logistic')` against scikit-learn's LogisticRegression on the same rows.

Four seeded data sets are loaded over SQL and trained with `split => 'time'` (the latest 20 %
of rows by `ts` held out, which this script reproduces exactly):

- a propensity model of numeric `features` alone (one column constant), at l2 0.01, 1 and 10;
- a purchase model (`category_id`, `price`, `discount`, `features`) whose data make deeper
  discounts sell *less*: flashsql holds the discount's coefficient at 0 (the model must not
  fall in the discount), and the other coefficients must then equal scikit-learn's fit
  without the discount column;
- a propensity model of behaviour sequences (`behavior_sequence` tokens) read as hand-made
  counts, which this script computes independently from the tokens;
- a propensity model of 30 mostly-noise features on 400 rows trained without `l2`: the
  penalty flashsql chooses on the validation rows must be the one scikit-learn's validation
  log loss picks from the same grid (the coefficients are compared at it).

scikit-learn fits `LogisticRegression(C = 1 / l2, solver='newton-cholesky', tol=1e-12)` on
the training rows standardised with `StandardScaler` (fitted on the training rows); inputs
are rounded to float32 first, as flashsql reads them. Fails unless every standardised
coefficient (from `explain_model`) agrees to 1e-6 and every probability (`propensity` /
`purchase_prob`) to 1e-9.

    cargo build --release && python3 benches/compare/logistic_vs_sklearn.py

With FLASHSQL_DSN set it uses that server instead of starting the release binary. Needs
numpy, scikit-learn, psycopg.
"""
import os
import sys

import numpy as np
import psycopg
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from knapsack_vs_highs import server_dsn  # noqa: E402

COEF_TOLERANCE = 1e-6
PROB_TOLERANCE = 1e-9
EVENTS = ["view", "search", "fav", "cart", "purchase"]
HORIZONS = 6  # gap buckets < 1 min, 10 min, 1 h, 6 h, 1 day, 7 days
GAPS = 8


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def insert(conn, table, columns, rows):
    """Rows as one INSERT per 500, values written as SQL literals."""

    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(lit(x) for x in v) + "]" if v else "CAST([] AS INT[])"
        return repr(v)

    for k in range(0, len(rows), 500):
        values = ", ".join("(" + ", ".join(lit(v) for v in r) + ")" for r in rows[k:k + 500])
        conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}")


# `train_model`'s penalties when none is given (gpu/src/logistic.rs, L2_GRID).
L2_GRID = (100.0, 10.0, 1.0, 0.1, 0.01)


def split(n):
    """Row indices (ts = index) for training and validation: the latest 20 % by ts held out."""
    cut = int(np.floor(0.8 * n))
    return np.arange(cut), np.arange(cut, n)


def sklearn_fit(x, y, train, l2):
    scaler = StandardScaler().fit(x[train])
    model = LogisticRegression(
        C=1.0 / l2, solver="newton-cholesky", tol=1e-12, max_iter=1000
    ).fit(scaler.transform(x[train]), y[train])
    return model.coef_.ravel(), model.intercept_[0], sigmoid(model.decision_function(scaler.transform(x)))


def coefficients(conn, name, columns):
    got = dict(
        conn.execute(
            "SELECT feature, coefficient FROM explain_model(%s) WHERE measure = 'coefficient'",
            (name,),
        ).fetchall()
    )
    assert set(got) == set(columns), (sorted(got), columns)
    return np.array([got[c] for c in columns])


def compare(label, have_coef, want_coef, have_p, want_p, worst):
    dc = np.max(np.abs(have_coef - want_coef))
    dp = np.max(np.abs(np.asarray(have_p) - want_p))
    print(f"{label}: max |coef diff| {dc:.1e}, max |p diff| {dp:.1e}")
    assert dc <= COEF_TOLERANCE, (label, have_coef, want_coef)
    assert dp <= PROB_TOLERANCE, (label, dp)
    worst[0] = max(worst[0], dc)
    worst[1] = max(worst[1], dp)


def counts(seq):
    """The hand-made counts of a token window, as `tabular.rs` documents them."""
    toks = [t for t in seq[-64:] if t != 0]
    groups = [(t - 1) >> 6 for t in toks]
    out = [np.log1p(len(toks)), np.log1p(len({(t - 1) & 63 for t in toks}))]
    for e in range(len(EVENTS)):
        gaps = [g // len(EVENTS) for g in groups if g % len(EVENTS) == e]
        out.append(np.log1p(len(gaps)))
        for h in range(HORIZONS):
            out.append(np.log1p(sum(1 for g in gaps if g <= h)))
        out.append(float(min(gaps)) if gaps else float(GAPS))
    return out


def count_names():
    names = ["seq_events", "seq_categories"]
    for e in EVENTS:
        names.append(f"seq_{e}")
        names += [f"seq_{e}_within_{h}" for h in ["1min", "10min", "1h", "6h", "1d", "7d"]]
        names.append(f"seq_{e}_recency")
    return names


def main():
    rng = np.random.default_rng(20261202)
    worst = [0.0, 0.0]
    with server_dsn() as dsn:
        conn = psycopg.connect(dsn, autocommit=True)

        # 1. Features alone, three penalties.
        n, k = 4000, 4
        x = f32(np.column_stack([rng.normal(0, 1, n), rng.exponential(2, n), rng.uniform(-3, 3, n), np.full(n, 2.5)]))
        y = rng.random(n) < sigmoid(-0.7 + 0.9 * x[:, 0] - 0.4 * x[:, 1] + 0.3 * x[:, 2])
        conn.execute("DROP TABLE IF EXISTS lr_features")
        conn.execute("CREATE TABLE lr_features (label BOOLEAN, features DOUBLE PRECISION[], ts BIGINT)")
        insert(conn, "lr_features", ["label", "features", "ts"],
               [(bool(y[i]), [float(v) for v in x[i]], i) for i in range(n)])
        train, _ = split(n)
        names = [f"feature_{j + 1}" for j in range(k)]
        for l2 in (0.01, 1.0, 10.0):
            conn.execute(
                "SELECT count(*) FROM train_model('lr_features', 'lr_features', kind => 'logistic', "
                "sequence => false, split => 'time', l2 => %s, seed => 1)", (l2,))
            have = coefficients(conn, "lr_features", names)
            p = [r[0] for r in conn.execute(
                "SELECT propensity('lr_features', NULL, features) FROM lr_features ORDER BY ts").fetchall()]
            want, _, want_p = sklearn_fit(x, y, train, l2)
            compare(f"features, l2 {l2}", have, want, p, want_p, worst)

        # 2. A purchase model whose data fall in the discount: the coefficient is held at 0.
        n = 3000
        price = f32(rng.lognormal(3, 0.5, n))
        discount = f32(rng.choice([0.0, 0.1, 0.2, 0.3, 0.5], n))
        feats = f32(rng.normal(0, 1, (n, 2)))
        category = rng.integers(1, 20, n)
        y = rng.random(n) < sigmoid(1.0 - 0.5 * np.log(price) - 2.0 * discount + 0.8 * feats[:, 0])
        conn.execute("DROP TABLE IF EXISTS lr_offers")
        conn.execute(
            "CREATE TABLE lr_offers (label BOOLEAN, category_id BIGINT, price DOUBLE PRECISION, "
            "discount DOUBLE PRECISION, features DOUBLE PRECISION[], ts BIGINT)")
        insert(conn, "lr_offers", ["label", "category_id", "price", "discount", "features", "ts"],
               [(bool(y[i]), int(category[i]), float(price[i]), float(discount[i]),
                 [float(v) for v in feats[i]], i) for i in range(n)])
        conn.execute(
            "SELECT count(*) FROM train_model('lr_offers', 'lr_offers', kind => 'logistic', "
            "sequence => false, split => 'time', l2 => 1, seed => 1)")
        kind = conn.execute("SELECT kind FROM flashsql_models WHERE name = 'lr_offers'").fetchone()[0]
        assert kind == "purchase", kind
        have = coefficients(conn, "lr_offers", ["ln_price", "discount", "feature_1", "feature_2"])
        assert have[1] == 0.0, have
        train, _ = split(n)
        x_free = np.column_stack([np.log(price), discount, feats])
        free, _, _ = sklearn_fit(x_free, y, train, 1.0)
        assert free[1] < 0, free  # the data do fall in the discount
        x_held = np.column_stack([np.log(price), feats])
        want, _, want_p = sklearn_fit(x_held, y, train, 1.0)
        p = [r[0] for r in conn.execute(
            "SELECT purchase_prob('lr_offers', NULL, category_id, price, discount, features) "
            "FROM lr_offers ORDER BY ts").fetchall()]
        compare("purchase, discount held at 0", np.delete(have, 1), want, p, want_p, worst)
        print(f"  (unconstrained scikit-learn discount coefficient: {free[1]:.4f})")

        # 3. Behaviour sequences as counts.
        n = 3000
        seqs, labels = [], []
        for i in range(n):
            length = int(rng.integers(0, 65))
            gap = rng.integers(0, GAPS, length)
            event = rng.choice(5, length, p=[0.6, 0.15, 0.1, 0.1, 0.05])
            cat = rng.integers(0, 64, length)
            seq = [int(1 + ((g * 5 + e) * 64 + c)) for g, e, c in zip(gap, event, cat)]
            recent_buys = sum(1 for g, e in zip(gap, event) if e == 4 and g <= 4)
            z = -1.2 + 0.9 * recent_buys + 0.02 * length - 0.3 * len(set(cat.tolist())) / 10
            seqs.append(seq)
            labels.append(bool(rng.random() < sigmoid(z)))
        conn.execute("DROP TABLE IF EXISTS lr_seqs")
        conn.execute("CREATE TABLE lr_seqs (label BOOLEAN, seq INT[], ts BIGINT)")
        insert(conn, "lr_seqs", ["label", "seq", "ts"], [(labels[i], seqs[i], i) for i in range(n)])
        conn.execute(
            "SELECT count(*) FROM train_model('lr_seqs', 'lr_seqs', kind => 'logistic', "
            "split => 'time', l2 => 1, seed => 1)")
        names = count_names()
        have = coefficients(conn, "lr_seqs", names)
        x = np.array([counts(s) for s in seqs])
        train, _ = split(n)
        want, _, want_p = sklearn_fit(x, np.array(labels), train, 1.0)
        p = [r[0] for r in conn.execute("SELECT propensity('lr_seqs', seq) FROM lr_seqs ORDER BY ts").fetchall()]
        compare("sequence counts", have, want, p, want_p, worst)

        # 4. No l2 given: the penalty is chosen on the validation rows as one would with
        # scikit-learn — each of the grid's penalties fitted on the training rows, the lowest
        # validation log loss kept (the larger penalty on a tie). Few rows and many noise
        # columns, so the choice is a larger penalty than the default.
        n, k = 400, 30
        x = f32(rng.normal(0, 1, (n, k)))
        y = rng.random(n) < sigmoid(1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.3 * x[:, 2])
        conn.execute("DROP TABLE IF EXISTS lr_wide")
        conn.execute("CREATE TABLE lr_wide (label BOOLEAN, features DOUBLE PRECISION[], ts BIGINT)")
        insert(conn, "lr_wide", ["label", "features", "ts"],
               [(bool(y[i]), [float(v) for v in x[i]], i) for i in range(n)])
        train, valid = split(n)
        losses = {}
        for l2 in L2_GRID:
            _, _, pv = sklearn_fit(x, y, train, l2)
            pv = np.clip(pv[valid], 1e-15, 1 - 1e-15)
            losses[l2] = -np.mean(y[valid] * np.log(pv) + (1 - y[valid]) * np.log(1 - pv))
        chosen = min(L2_GRID, key=lambda l2: (losses[l2], -l2))
        # Inside the grid, and not 1 (the old fixed default), so a fixed penalty would fail.
        assert min(L2_GRID) < chosen < max(L2_GRID) and chosen != 1.0, losses
        conn.execute(
            "SELECT count(*) FROM train_model('lr_wide', 'lr_wide', kind => 'logistic', "
            "sequence => false, split => 'time', seed => 1)")
        have = coefficients(conn, "lr_wide", [f"feature_{j + 1}" for j in range(k)])
        want, _, _ = sklearn_fit(x, y, train, chosen)
        dc = np.max(np.abs(have - want))
        print(f"penalty chosen: scikit-learn's validation log loss picks l2 {chosen:g} "
              f"({', '.join(f'{l:g}: {v:.4f}' for l, v in losses.items())}); max |coef diff| {dc:.1e}")
        assert dc <= COEF_TOLERANCE, ("chosen penalty", have, want)
        worst[0] = max(worst[0], dc)

    print(f"worst coefficient difference {worst[0]:.1e} (tolerance {COEF_TOLERANCE:g}), "
          f"worst probability difference {worst[1]:.1e} (tolerance {PROB_TOLERANCE:g})")
    print("logistic: ok")


if __name__ == "__main__":
    main()
