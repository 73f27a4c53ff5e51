"""What an analyst waits on: eight queries over the behaviour log, flashsql against DuckDB and
PostgreSQL on the same rows in the same run.

Starts the release server on a generated world and runs every query on
- flashsql (over the wire, psycopg),
- DuckDB (in process, over flashsql's own Parquet files of each table, named by the data
  directory's catalog, as a new user would: `read_parquet` views),
- PostgreSQL 15 (a temp cluster, the same rows over COPY, indexed on the join and filter
  keys a DBA would add, ANALYZEd),
warm: each query once to warm up, then the best of three. Each query's answer is compared
across the three (row count and a checksum of its numbers, rounded) so that a fast wrong
answer cannot pass. Prints a table per query and the totals with the ratios.

Usage: python3 benches/compare/analyst_queries.py [runs per query, default 3]
  FLASHSQL_BINARY   the server (default target/release/flashsql)
  FLASHSQL_SCALE    the world (default small; the issue's figures are on medium)
Needs duckdb (pip), initdb/postgres 15 and psycopg.
"""

import json
import os
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from point_lookups import both_servers, copy_table  # noqa: E402

SCALE = os.environ.get("FLASHSQL_SCALE", "small")
RUNS = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 3
TABLES = ["events", "items", "users", "exposures"]

# (name, SQL run unchanged on all three engines)
QUERIES = [
    ("events per type per day (group-by)",
     "SELECT date_trunc('day', ts) AS day, event_type, count(*) AS n FROM events "
     "GROUP BY 1, 2 ORDER BY 1, 2"),
    ("funnel per category",
     "SELECT category_id, "
     "sum(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views, "
     "sum(CASE WHEN event_type = 'cart' THEN 1 ELSE 0 END) AS carts, "
     "sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases "
     "FROM events GROUP BY category_id ORDER BY category_id"),
    ("revenue per category (join)",
     "SELECT i.category_id, sum(e.price * (1 - e.discount)) AS revenue, count(*) AS orders "
     "FROM events e JOIN items i ON e.item_id = i.item_id "
     "WHERE e.event_type = 'purchase' GROUP BY i.category_id ORDER BY i.category_id"),
    ("top 3 items per category (window)",
     "SELECT category_id, item_id, n, r FROM (SELECT category_id, item_id, n, "
     "row_number() OVER (PARTITION BY category_id ORDER BY n DESC, item_id) AS r "
     "FROM (SELECT category_id, item_id, count(*) AS n FROM events "
     "WHERE item_id IS NOT NULL GROUP BY category_id, item_id) AS c) AS ranked "
     "WHERE r <= 3 ORDER BY category_id, r"),
    ("distinct users per day",
     "SELECT date_trunc('day', ts) AS day, count(DISTINCT user_id) AS users FROM events "
     "GROUP BY 1 ORDER BY 1"),
    ("events before each exposure (point-in-time join)",
     "SELECT count(*) AS exposures, sum(n) AS events_before FROM (SELECT x.exposure_id, "
     "count(e.user_id) AS n FROM exposures x LEFT JOIN events e "
     "ON e.user_id = x.user_id AND e.ts < x.shown_ts GROUP BY x.exposure_id) AS c"),
    ("exact price percentiles per type",
     "SELECT event_type, percentile_cont(0.5) WITHIN GROUP (ORDER BY price) AS p50, "
     "percentile_cont(0.99) WITHIN GROUP (ORDER BY price) AS p99 FROM events "
     "WHERE price IS NOT NULL GROUP BY event_type ORDER BY event_type"),
    ("gap between a user's events (lag window)",
     "SELECT event_type, avg(gap) AS mean_gap_s, count(*) AS n FROM (SELECT event_type, "
     "extract(epoch FROM ts) - lag(extract(epoch FROM ts)) OVER "
     "(PARTITION BY user_id ORDER BY ts, event_type, item_id) AS gap FROM events) AS g "
     "WHERE gap IS NOT NULL GROUP BY event_type ORDER BY event_type"),
]


def table_files(data_dir, table):
    """The Parquet files the catalog names for `table` (public schema)."""
    with open(os.path.join(data_dir, "catalog.json")) as f:
        catalog = json.load(f)
    for t in catalog["tables"]:
        if t["schema"] == "public" and t["name"] == table:
            return [os.path.join(data_dir, "tables", f"t{t['id']}", f) for f in t["files"]]
    raise KeyError(table)


def fingerprint(rows):
    """Row count and a rounded sum of every number: equal answers, equal fingerprints."""
    total = 0.0
    for row in rows:
        for v in row:
            if isinstance(v, bool):
                v = int(v)
            if isinstance(v, (int, float)) or type(v).__name__ == "Decimal":
                total += float(v)
    return len(rows), round(total, 2)


def timed(run):
    run()  # warm-up
    best, rows = None, None
    for _ in range(RUNS):
        t = time.perf_counter()
        rows = run()
        elapsed = time.perf_counter() - t
        best = elapsed if best is None else min(best, elapsed)
    return best, rows


def main():
    with both_servers() as (tmp, src, dst, _, _):
        duck = duckdb.connect()
        for t in TABLES:
            files = table_files(os.path.join(tmp, "flashsql"), t)
            duck.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({files!r})")
            copy_table(src, dst, t, None)
        for index in ["events (user_id, ts)", "events (item_id)", "events (event_type)",
                      "exposures (user_id)", "items (item_id)"]:
            dst.execute(f"CREATE INDEX ON {index}")
        dst.execute("ANALYZE")
        dst.execute("SET max_parallel_workers_per_gather = 2")
        n = src.execute("SELECT count(*) FROM events").fetchone()[0]
        print(f"world {SCALE}: {n:,} events; warm, best of {RUNS}; times in seconds\n")
        print("| query | flashsql | DuckDB | PostgreSQL | flashsql / DuckDB | flashsql / PostgreSQL |")
        print("|---|---|---|---|---|---|")
        totals = [0.0, 0.0, 0.0]
        for name, sql in QUERIES:
            engines = [
                lambda: src.execute(sql).fetchall(),
                lambda: duck.execute(sql).fetchall(),
                lambda: dst.execute(sql).fetchall(),
            ]
            times, prints = [], []
            for run in engines:
                t, rows = timed(run)
                times.append(t)
                prints.append(fingerprint(rows))
            agree = prints[0] == prints[1] == prints[2]
            for i, t in enumerate(times):
                totals[i] += t
            mark = "" if agree else f" (answers differ: {prints})"
            print(f"| {name}{mark} | {times[0]:.3f} | {times[1]:.3f} | {times[2]:.3f} "
                  f"| {times[0] / times[1]:.2f} | {times[0] / times[2]:.2f} |")
        print(f"| **total** | {totals[0]:.3f} | {totals[1]:.3f} | {totals[2]:.3f} "
              f"| {totals[0] / totals[1]:.2f} | {totals[0] / totals[2]:.2f} |")


if __name__ == "__main__":
    main()
