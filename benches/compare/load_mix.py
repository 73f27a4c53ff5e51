"""A sale's load at once, flashsql against PostgreSQL 15 in the same run: services reading
plans, analysts aggregating, loaders writing — all concurrently, then every acknowledged row
counted.

For each server in turn (the release flashsql on a generated world, then a PostgreSQL started
in a temp directory with the same rows over COPY and indexed), for SECONDS seconds:
- 32 pgbench clients (`-M prepared`) look up one item by key (`SELECT * FROM items WHERE
  item_id = $1`),
- 8 pgbench clients aggregate a slice of the behaviour log (events per type for a range of
  100 users),
- 16 writer threads (psycopg) each loop over: INSERT one row, COPY 50 rows, read back the
  row count of their own rows; every acknowledged row is remembered.
Afterwards the table must hold exactly the acknowledged rows (counted per writer). Prints
throughput, p50/p99 latency and errors for each workload, and the flashsql / PostgreSQL ratios.

Usage: python3 benches/compare/load_mix.py [seconds, default 60]
  FLASHSQL_BINARY, FLASHSQL_SCALE as for point_lookups.py.
"""

import os
import statistics
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from point_lookups import both_servers, copy_table, pgbench  # noqa: E402

SECONDS = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 60
WRITERS = 16
COPY_ROWS = 50

LOOKUP = "\\set id random(1, {items})\nSELECT * FROM items WHERE item_id = :id;\n"
AGGREGATE = ("\\set u random(1, {users})\n"
             "SELECT event_type, count(*) FROM events WHERE user_id BETWEEN :u AND :u + 100 "
             "GROUP BY event_type;\n")


def writer(dsn, n, stop, result):
    """INSERT, COPY and a read in a loop; records acknowledged rows, latencies and errors."""
    acked, errors, latencies, k = 0, 0, [], 0
    with psycopg.connect(dsn, autocommit=True) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                if k % 2 == 0:
                    c.execute("INSERT INTO load_rows VALUES (%s, %s, %s)", (n, k, "insert"))
                    acked += 1
                else:
                    with c.cursor().copy("COPY load_rows FROM STDIN") as copy:
                        for i in range(COPY_ROWS):
                            copy.write_row((n, k * 1000 + i, "copy"))
                    acked += COPY_ROWS
                seen = c.execute("SELECT count(*) FROM load_rows WHERE writer = %s",
                                 (n,)).fetchone()[0]
                if seen != acked:
                    errors += 1
            except psycopg.Error:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)
            k += 1
    result[n] = (acked, errors, latencies)


def run(port, user, db, workdir, items, users):
    dsn = f"host=127.0.0.1 port={port} user={user} dbname={db}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE load_rows (writer BIGINT, k BIGINT, how TEXT)")
    scripts = {}
    for name, text in [("lookup", LOOKUP.format(items=items)),
                       ("aggregate", AGGREGATE.format(users=users))]:
        scripts[name] = os.path.join(workdir, f"{name}.sql")
        with open(scripts[name], "w") as f:
            f.write(text)
    stop, results, benches = threading.Event(), {}, {}
    threads = [threading.Thread(target=writer, args=(dsn, n, stop, results))
               for n in range(WRITERS)]

    def bench(name, clients):
        benches[name] = pgbench(port, user, db, scripts[name], clients, workdir,
                                seconds=SECONDS, tag=f"pgbench_log_{name}")

    pg_threads = [threading.Thread(target=bench, args=("lookup", 32)),
                  threading.Thread(target=bench, args=("aggregate", 8))]
    for t in threads + pg_threads:
        t.start()
    for t in pg_threads:
        t.join()
    stop.set()
    for t in threads:
        t.join()
    acked = sum(r[0] for r in results.values())
    errors = sum(r[1] for r in results.values())
    latencies = sorted(x for r in results.values() for x in r[2])
    with psycopg.connect(dsn, autocommit=True) as c:
        present = c.execute("SELECT count(*) FROM load_rows").fetchone()[0]
        per_writer = dict(c.execute(
            "SELECT writer, count(*) FROM load_rows GROUP BY writer").fetchall())
    lost = sum(max(0, results[n][0] - per_writer.get(n, 0)) for n in results)
    write = (len(latencies) / SECONDS, statistics.median(latencies),
             latencies[int(0.99 * (len(latencies) - 1))], errors)
    return benches["lookup"], benches["aggregate"], write, acked, present, lost


def main():
    with both_servers() as (tmp, src, dst, our_port, pg_port):
        copy_table(src, dst, "items", "item_id")
        copy_table(src, dst, "events", None)
        dst.execute("CREATE INDEX ON events (user_id)")
        dst.execute("ANALYZE")
        items = src.execute("SELECT max(item_id) FROM items").fetchone()[0]
        users = src.execute("SELECT max(user_id) FROM events").fetchone()[0]
        out = {}
        for name, port, user, db in [("flashsql", our_port, "flashsql", "flashsql"),
                                     ("PostgreSQL", pg_port, "postgres", "postgres")]:
            work = os.path.join(tmp, f"work_{name}")
            os.makedirs(work)
            out[name] = run(port, user, db, work, items, users)
        print(f"{SECONDS} s, all at once: 32 lookup clients, 8 aggregate clients, "
              f"{WRITERS} writers (INSERT 1 row / COPY {COPY_ROWS} rows, each followed by a read)\n")
        print("| workload | server | per s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|")
        for i, label in enumerate(["point lookups (32)", "aggregates (8)",
                                   "writes + read-back (16)"]):
            for name in out:
                tps, p50, p99, err = out[name][i]
                print(f"| {label} | {name} | {tps:,.0f} | {p50:.2f} | {p99:.2f} | {err} |")
            ratio = out["flashsql"][i][0] / out["PostgreSQL"][i][0]
            print(f"| {label} | flashsql / PostgreSQL | {ratio:.2f} | | | |")
        for name in out:
            _, _, _, acked, present, lost = out[name]
            print(f"\n{name}: {acked:,} rows acknowledged, {present:,} present, {lost} lost")


if __name__ == "__main__":
    main()
