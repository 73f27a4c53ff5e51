"""Point lookups, as a backend service makes them during a sale: flashsql against PostgreSQL.

Runs `SELECT * FROM items WHERE item_id = $1` with pgbench (`-M prepared`, a random id per
transaction) against the release server and against a PostgreSQL started in a temporary
directory with the same `items` rows (copied over COPY) and a primary key, at 1 and 32
clients, and prints TPS, p50/p99 latency and the ratio for each. A second workload reads a
campaign's plan row by item (`SELECT … FROM exposures WHERE exposure_id = $1`) from a bigger
table. Latencies come from pgbench's per-transaction log.

Usage: python3 benches/compare/point_lookups.py [seconds per run, default 10]
  FLASHSQL_BINARY   the server (default target/release/flashsql)
  FLASHSQL_SCALE    the world (default small)
Needs pgbench, initdb and postgres (PostgreSQL 15 or later) and psycopg.
"""

import contextlib
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

BINARY = os.environ.get("FLASHSQL_BINARY", "target/release/flashsql")
SCALE = os.environ.get("FLASHSQL_SCALE", "small")
# Read only when run as the script (the other comparisons import its helpers).
SECONDS = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 10
CLIENTS = [1, 32]

# (name, table, key column)
WORKLOADS = [
    ("items by item_id", "items", "item_id"),
    ("exposures by exposure_id", "exposures", "exposure_id"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(args):
    """Runs PostgreSQL's programs as the postgres user when we are root (it refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


def start_flashsql(tmp):
    port = free_port()
    server = subprocess.Popen(
        [BINARY, "serve", "--data-dir", os.path.join(tmp, "flashsql"), "--scale", SCALE,
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in server.stdout:
        if " is ready on " in line:
            break
    return server, port


def start_postgres(tmp):
    pgdir = os.path.join(tmp, "pg")
    os.makedirs(pgdir)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(pgdir, "postgres")
        os.chmod(tmp, 0o755)
    subprocess.run(as_postgres(["initdb", "-A", "trust", "-U", "postgres", "-D", pgdir]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        as_postgres(["postgres", "-D", pgdir, "-p", str(port), "-k", tmp,
                     "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
            break
        except psycopg.OperationalError:
            time.sleep(0.05)
    return server, port


def copy_table(src, dst, table, key):
    """Creates `table` in PostgreSQL with the source's column types and copies its rows;
    `key`, if given, becomes its primary key."""
    cols = src.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,)).fetchall()
    defs = ", ".join(f"{c} {t}" for c, t in cols)
    dst.execute(f"CREATE TABLE {table} ({defs})")
    names = ", ".join(c for c, _ in cols)
    with src.cursor().copy(f"COPY (SELECT {names} FROM {table}) TO STDOUT") as out, \
            dst.cursor().copy(f"COPY {table} FROM STDIN") as into:
        for data in out:
            into.write(data)
    dst.execute(f"ANALYZE {table}")
    if key is None:
        return None
    dst.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key})")
    return src.execute(f"SELECT min({key}), max({key}), count(*) FROM {table}").fetchone()


def pgbench(port, user, db, script, clients, workdir, seconds=None, tag="pgbench_log"):
    """Runs `script` with pgbench (`-M prepared`) for `seconds` (default: this script's);
    returns (TPS, p50 ms, p99 ms, failed transactions) from its per-transaction log, which
    it writes under `workdir` with the prefix `tag` (distinct tags run side by side)."""
    prefix = os.path.join(workdir, tag)
    for f in glob.glob(prefix + ".*"):
        os.remove(f)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(port), "-U", user,
         "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds or SECONDS),
         "-f", script, "-l", "--log-prefix", prefix, db],
        capture_output=True, text=True)
    tps = None
    for line in out.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
    failed = 0
    for line in out.stdout.splitlines():
        if line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    latencies = []
    for f in glob.glob(prefix + ".*"):
        with open(f) as log:
            for line in log:
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1000.0)  # µs -> ms
    if tps is None:
        raise RuntimeError(f"pgbench failed: {out.stdout}\n{out.stderr}")
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return tps, statistics.median(latencies), p(0.99), failed


@contextlib.contextmanager
def both_servers():
    """The release flashsql on a generated world and a PostgreSQL, in one temp directory,
    both stopped afterwards. Yields (tmp, flashsql connection, PostgreSQL connection,
    flashsql port, PostgreSQL port); the connections are in autocommit."""
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    ours, our_port = start_flashsql(tmp)
    pg, pg_port = start_postgres(tmp)
    try:
        src = psycopg.connect(f"host=127.0.0.1 port={our_port} user=flashsql dbname=flashsql",
                              autocommit=True)
        dst = psycopg.connect(f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres",
                              autocommit=True)
        yield tmp, src, dst, our_port, pg_port
    finally:
        ours.terminate()
        pg.terminate()
        ours.wait()
        pg.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    with both_servers() as (tmp, src, dst, our_port, pg_port):
        print(f"world {SCALE}; {SECONDS} s per run; pgbench -M prepared")
        print("| workload | clients | flashsql TPS | p50 / p99 ms | PostgreSQL TPS | "
              "p50 / p99 ms | TPS ratio |")
        print("|---|---|---|---|---|---|---|")
        for name, table, key in WORKLOADS:
            lo, hi, n = copy_table(src, dst, table, key)
            script = os.path.join(tmp, f"{table}.sql")
            with open(script, "w") as f:
                f.write(f"\\set id random({lo}, {hi})\nSELECT * FROM {table} "
                        f"WHERE {key} = :id;\n")
            os.chmod(script, 0o644)
            for clients in CLIENTS:
                f_tps, f_p50, f_p99, f_failed = pgbench(our_port, "flashsql", "flashsql",
                                                        script, clients, tmp)
                p_tps, p_p50, p_p99, _ = pgbench(pg_port, "postgres", "postgres", script,
                                                 clients, tmp)
                print(f"| {name} ({n:,} rows) | {clients} | {f_tps:,.0f} | {f_p50:.2f} / "
                      f"{f_p99:.2f} | {p_tps:,.0f} | {p_p50:.2f} / {p_p99:.2f} | "
                      f"{f_tps / p_tps:.3f} |", flush=True)
                if f_failed:
                    print(f"  flashsql: {f_failed} failed transactions")


if __name__ == "__main__":
    main()
