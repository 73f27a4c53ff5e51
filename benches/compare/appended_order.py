"""The analyst set over a sorted behaviour log that has been appended to: the order declared
over the table's files (each read as sorted runs) against the same files without the
declaration, in one run.

Starts the release server on a generated world, appends N chunks of events with INSERT …
SELECT (each a file of its own, sorted by `user_id, ts` as the table declares), runs every
query of `analyst_queries.py` warm (best of R), then `ALTER TABLE events RESET (sort_by)` —
which keeps the files exactly as they are and drops only the declaration — and runs them
again. Answers are compared between the two passes (row count and a checksum).

Usage: python3 benches/compare/appended_order.py [appends, default 2] [runs, default 5]
  FLASHSQL_BINARY   the server (default target/release/flashsql)
  FLASHSQL_SCALE    the world (default small)
"""

import json
import os
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyst_queries import QUERIES, fingerprint  # noqa: E402
from point_lookups import start_flashsql  # noqa: E402

APPENDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def best(conn, sql):
    rows = conn.execute(sql).fetchall()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append(time.perf_counter() - started)
    return min(times), fingerprint(rows)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_flashsql(tmp)
        try:
            conn = psycopg.connect(
                f"host=127.0.0.1 port={port} user=flashsql dbname=flashsql", autocommit=True
            )
            for k in range(APPENDS):
                conn.execute(f"INSERT INTO events SELECT * FROM events WHERE user_id % 50 = {k}")
            with open(os.path.join(tmp, "flashsql", "catalog.json")) as f:
                events = next(t for t in json.load(f)["tables"] if t["name"] == "events")
            rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            print(f"events: {rows:,} rows in {len(events['files'])} files, "
                  f"sort_by {events['sort_by']}; best of {RUNS}\n")
            declared = [best(conn, sql) for _, sql in QUERIES]
            conn.execute("ALTER TABLE events RESET (sort_by)")
            plain = [best(conn, sql) for _, sql in QUERIES]
        finally:
            server.terminate()
            server.wait()
    print(f"| query | declared over {len(events['files'])} files (ms) | not declared (ms) | ratio |")
    print("|---|---|---|---|")
    for (name, _), (d, dsum), (p, psum) in zip(QUERIES, declared, plain):
        if dsum != psum:
            raise SystemExit(f"{name}: answers differ: {dsum} against {psum}")
        print(f"| {name} | {d * 1000:.1f} | {p * 1000:.1f} | {d / p:.2f} |")
    d, p = sum(x for x, _ in declared), sum(x for x, _ in plain)
    print(f"| total | {d * 1000:.1f} | {p * 1000:.1f} | {d / p:.2f} |")


if __name__ == "__main__":
    main()
