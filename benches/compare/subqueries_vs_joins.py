"""Correlated subqueries against the joins they stand for, on the same server and data.

flashsql plans a correlated scalar subquery as an aggregate DataFusion turns into a join
(`sql/src/scalar_subquery.rs`). This times each subquery form and its hand-written join on
the default (small) world and prints the ratio, after checking both give the same answer.
It also times an UPDATE and a DELETE whose WHERE holds a subquery (`engine/src/dml.rs`),
each on a fresh copy of a 2M-row table.

Usage: python3 benches/compare/subqueries_vs_joins.py   (FLASHSQL_BINARY overrides the
binary, default target/release/flashsql; needs psycopg)
"""

import os
import statistics
import subprocess
import tempfile
import time

import psycopg

BINARY = os.environ.get("FLASHSQL_BINARY", "target/release/flashsql")
RUNS = 5

PAIRS = [
    (
        "events per user (aggregated subquery)",
        "SELECT sum(n) FROM (SELECT u.user_id, (SELECT count(*) FROM events e "
        "WHERE e.user_id = u.user_id) AS n FROM users u)",
        "SELECT sum(coalesce(c.n, 0)) FROM users u LEFT JOIN "
        "(SELECT user_id, count(*) AS n FROM events GROUP BY user_id) c USING (user_id)",
    ),
    (
        "price per exposure (one-row subquery)",
        "SELECT sum(p) FROM (SELECT x.exposure_id, (SELECT i.base_price FROM items i "
        "WHERE i.item_id = x.item_id) AS p FROM exposures x)",
        "SELECT sum(i.base_price) FROM exposures x LEFT JOIN items i ON i.item_id = x.item_id",
    ),
]


def timed(conn, sql):
    times, value = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        value = conn.execute(sql).fetchone()[0]
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main():
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [BINARY, "--data-dir", os.path.join(tmp, "data"), "--listen", "127.0.0.1:55499"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            for line in server.stdout:
                if " is ready on " in line:
                    break
            conn = psycopg.connect(
                "host=127.0.0.1 port=55499 user=flashsql dbname=flashsql", autocommit=True
            )
            print(f"{'query':42} {'subquery':>10} {'join':>10} {'ratio':>7}")
            for name, subquery, join in PAIRS:
                t_sub, v_sub = timed(conn, subquery)
                t_join, v_join = timed(conn, join)
                assert abs(float(v_sub) - float(v_join)) < 1e-6 * max(1.0, abs(float(v_join))), (
                    name,
                    v_sub,
                    v_join,
                )
                print(f"{name:42} {t_sub:9.3f}s {t_join:9.3f}s {t_sub / t_join:6.2f}x")
            for name, sql in [
                (
                    "UPDATE … WHERE item_id IN (SELECT …)",
                    "UPDATE ev SET discount = discount + 0.01 "
                    "WHERE item_id IN (SELECT item_id FROM items WHERE base_price > 100)",
                ),
                (
                    "DELETE … WHERE user_id IN (SELECT …)",
                    "DELETE FROM ev WHERE user_id IN "
                    "(SELECT user_id FROM users WHERE segment = 'new')",
                ),
            ]:
                times = []
                for _ in range(RUNS):
                    conn.execute("DROP TABLE IF EXISTS ev")
                    conn.execute("CREATE TABLE ev AS SELECT * FROM events")
                    start = time.perf_counter()
                    cur = conn.execute(sql)
                    times.append(time.perf_counter() - start)
                rows = conn.execute("SELECT count(*) FROM ev").fetchone()[0]
                print(
                    f"{name:42} {statistics.median(times):9.3f}s "
                    f"({cur.rowcount} rows changed, {rows} rows in the table after)"
                )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
