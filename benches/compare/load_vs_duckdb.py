"""Loading a behaviour log: `flashsql load taobao` against DuckDB on the same file, same run.

Builds a Tianchi-format file by repeating the 61,161-line Taobao sample in ../shared/data
(each copy's user ids shifted, so users stay distinct), then loads it
  - with the release binary: `flashsql load taobao FILE --memory-mb M` into a fresh data
    directory (Parquet + catalog, mapped onto the events model), and
  - with DuckDB: CREATE TABLE … AS SELECT with the same mapping from read_csv into a fresh
    database file, the same number of threads, memory_limit max(M, 256 MB) (DuckDB's CSV
    reader cannot run in 24 MB: "could not allocate block of size 30.5 MiB").
Prints rows/s, wall seconds and peak RSS of each, and the ratio.

  python3 benches/compare/load_vs_duckdb.py [--copies 100] [--memory-mb 24]
"""

import argparse
import os
import pathlib
import resource
import shutil
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = pathlib.Path(
    os.environ.get("FLASHSQL_REAL_DATA", ROOT.parent / "shared" / "data")
) / "taobao" / "user_behavior_sample.csv"
BINARY = ROOT / "target" / "release" / "flashsql"


def build(path: pathlib.Path, copies: int) -> int:
    lines = SAMPLE.read_text().splitlines()
    with path.open("w") as f:
        for rep in range(copies):
            off = rep * 10_000_000
            for line in lines:
                u, rest = line.split(",", 1)
                f.write(f"{int(u) + off},{rest}\n")
    return len(lines) * copies


def peak_rss_mib_of(cmd) -> tuple[float, float, str]:
    """Runs cmd; returns (wall s, peak RSS MiB of the child, stdout)."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, rss_kib / 1024, out.stdout


DUCKDB_LOAD = """
import duckdb, sys
path, db, mem, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = duckdb.connect(db)
con.execute(f"SET memory_limit = '{mem}MB'")
con.execute(f"SET threads = {threads}")
con.execute(f'''
CREATE TABLE events AS
SELECT user_id, item_id, category_id,
       CASE behavior_type WHEN 'pv' THEN 'view' WHEN 'buy' THEN 'purchase' ELSE behavior_type END AS event_type,
       make_timestamp(unix_seconds * 1000000) AS ts,
       CAST(NULL AS DOUBLE) AS price, 0.0 AS discount, CAST(NULL AS BIGINT) AS campaign_id
FROM read_csv('{path}', header = false, columns = {{
  'user_id': 'BIGINT', 'item_id': 'BIGINT', 'category_id': 'BIGINT',
  'behavior_type': 'VARCHAR', 'unix_seconds': 'BIGINT'}})
''')
con.execute("CHECKPOINT")
print(con.execute("SELECT count(*) FROM events").fetchone()[0])
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--memory-mb", type=int, default=24)
    args = ap.parse_args()
    if not SAMPLE.exists():
        raise SystemExit(f"no Taobao sample at {SAMPLE}")
    if not BINARY.exists():
        raise SystemExit("build the release binary first: cargo build --release")
    threads = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        csv = tmp / "user_behavior.csv"
        rows = build(csv, args.copies)
        size_mib = csv.stat().st_size / 2**20
        print(f"file: {rows:,} rows, {size_mib:.0f} MiB; memory limit {args.memory_mb} MiB "
              f"({size_mib / args.memory_mb:.1f}x); {threads} threads")

        wall_f, rss_f, out = peak_rss_mib_of([
            str(BINARY), "load", "taobao", str(csv), "--table", "events",
            "--data-dir", str(tmp / "flashsql"), "--memory-mb", str(args.memory_mb),
        ])
        print(f"flashsql: {out.strip()}")
        # getrusage(RUSAGE_CHILDREN) keeps the largest child so far: run DuckDB second and
        # read its own peak from a fresh interpreter's report.
        wall_d0 = time.perf_counter()
        script = tmp / "duck.py"
        script.write_text(DUCKDB_LOAD + "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
        res = subprocess.run(
            ["python3", str(script), str(csv), str(tmp / "duck.db"),
             str(max(args.memory_mb, 256)), str(threads)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"duckdb failed: {res.stderr}")
        wall_d = time.perf_counter() - wall_d0
        duck_rows, duck_rss_kib = res.stdout.split()
        rss_d = int(duck_rss_kib) / 1024
        assert int(duck_rows) == rows, (duck_rows, rows)
        print(f"{'':10} {'rows/s':>12} {'wall s':>8} {'peak RSS MiB':>13}")
        print(f"{'flashsql':10} {rows / wall_f:12,.0f} {wall_f:8.2f} {rss_f:13.0f}")
        print(f"{'duckdb':10} {rows / wall_d:12,.0f} {wall_d:8.2f} {rss_d:13.0f}")
        print(f"flashsql / duckdb time: {wall_f / wall_d:.2f}x")
        shutil.rmtree(tmp / "flashsql", ignore_errors=True)


if __name__ == "__main__":
    main()
