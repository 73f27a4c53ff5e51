"""Peak server memory of joins and a MERGE over rows carrying 64 kB texts.

Usage: start a scratch server under a memory cap, then run this with its port and pid:
    target/release/flashsql serve --data-dir /tmp/x --memory-mb 256 --scale tiny --listen 127.0.0.1:5492 &
    python3 benches/compare/wide_join_memory.py 5492 <pid>
Prints, per statement, the server's peak RSS (VmHWM, reset before each) before and after.
fz_1 holds 520 rows of 64 kB text (33 MB), fz_2 102.
"""
import psycopg, sys, time
port=int(sys.argv[1]); pid=int(sys.argv[2])
def hwm():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM"): return int(l.split()[1])//1024
    return -1
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
c=psycopg.connect(f"host=127.0.0.1 port={port} user=flashsql dbname=flashsql", autocommit=True)
c.execute("DROP TABLE IF EXISTS fz_1"); c.execute("DROP TABLE IF EXISTS fz_2")
c.execute("CREATE TABLE fz_1 (k BIGINT, s TEXT)"); c.execute("CREATE TABLE fz_2 (k BIGINT, s TEXT)")
c.execute("INSERT INTO fz_1 SELECT value, repeat('x', 65536) FROM generate_series(1, 520)")
c.execute("INSERT INTO fz_2 SELECT value, repeat('y', 65536) FROM generate_series(1, 102)")
for q in ["SELECT count(length(t.s)), count(s.k) FROM fz_2 t JOIN fz_1 s ON TRUE",
          "SELECT length(t.s), s.k FROM fz_2 t JOIN fz_1 s ON TRUE",
          "SELECT max(t.s || 'a'), count(*) FROM fz_2 t JOIN fz_1 s ON TRUE",
          "MERGE INTO fz_1 USING fz_2 ON ('' ~ '') WHEN MATCHED THEN UPDATE SET s = fz_2.s",
          # seed 16's self-MERGE: every row matches itself once
          "MERGE INTO fz_1 t USING fz_1 s ON t.k = s.k WHEN MATCHED THEN UPDATE SET k = abs(s.k + t.k) "
          "WHEN NOT MATCHED THEN INSERT (k, s) VALUES (1, s.s)",
          "MERGE INTO fz_1 t USING fz_1 s ON t.k = s.k WHEN MATCHED THEN UPDATE SET k = abs(s.k + t.k)",
          "UPDATE fz_1 SET k = k + 1"]:
    time.sleep(2)  # freed memory goes back to the OS a second after it is freed
    open(f"/proc/{pid}/clear_refs","w").write("5")
    b=hwm(); t=time.time()
    try:
        cur=c.execute(q); n=len(cur.fetchall()) if cur.description else cur.rowcount; err=""
    except Exception as e:
        n=-1; err=f"{getattr(e,'sqlstate','')} {str(e)[:80]}"
    print(f"{b:5d} -> {hwm():5d} MiB  {time.time()-t:5.1f}s  rows={n} {err}  :: {q[:70]}", flush=True)
