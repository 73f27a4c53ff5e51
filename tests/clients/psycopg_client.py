"""psycopg 3 against a running flashsql server (FLASHSQL_DSN): what a Python service does.

Run by tests/it/clients.rs; exits non-zero with a message on the first failure.
"""

import os

import psycopg
from psycopg import errors

DSN = os.environ["FLASHSQL_DSN"]


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


with psycopg.connect(DSN, autocommit=True) as conn:
    # Parameters, and the same query often enough that psycopg prepares it server-side.
    for user in range(1, 9):
        row = conn.execute(
            "SELECT user_id, segment FROM users WHERE user_id = %s", (user,)
        ).fetchone()
        check(row is not None and row[0] == user, f"user {user}: {row}")

    # executemany into a new table, read back.
    conn.execute("CREATE TABLE offers (item_id BIGINT, discount DOUBLE PRECISION)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO offers VALUES (%s, %s)", [(i, i / 100) for i in range(1, 21)]
        )
    total = conn.execute("SELECT count(*), sum(item_id) FROM offers").fetchone()
    check(total == (20, 210), f"executemany: {total}")

    # Binary results.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT item_id, discount FROM offers ORDER BY item_id LIMIT 2")
        check(cur.fetchall() == [(1, 0.01), (2, 0.02)], "binary results")

    # COPY in and out through cursor.copy().
    with conn.cursor() as cur:
        with cur.copy("COPY offers (item_id, discount) FROM STDIN") as copy:
            for i in range(100, 105):
                copy.write_row((i, 0.5))
        out = []
        with cur.copy("COPY (SELECT item_id FROM offers WHERE item_id >= 100 ORDER BY item_id) TO STDOUT") as copy:
            for row in copy.rows():
                out.append(int(row[0]))
        check(out == [100, 101, 102, 103, 104], f"COPY: {out}")

    # Typed exceptions.
    try:
        conn.execute("SELECT * FROM no_such_table")
        check(False, "no error for a missing table")
    except errors.UndefinedTable:
        pass
    conn.execute("SET statement_timeout = '200ms'")
    try:
        conn.execute("SELECT count(*) FROM events a, events b WHERE a.ts < b.ts")
        check(False, "no timeout")
    except errors.QueryCanceled:
        pass
    conn.execute("SET statement_timeout = 0")

with psycopg.connect(DSN) as conn:
    # Named (server-side) cursors: DECLARE, then FETCH in pieces, inside a transaction.
    with conn.cursor(name="all_users") as cur:
        cur.itersize = 64
        cur.execute("SELECT user_id FROM users WHERE user_id <= %s ORDER BY user_id", (300,))
        ids = [r[0] for r in cur]
        check(ids == list(range(1, 301)), f"named cursor: {len(ids)} rows")
    with conn.cursor(name="some_users") as cur:
        cur.execute("SELECT user_id FROM users ORDER BY user_id")
        check(cur.fetchmany(3) == [(1,), (2,), (3,)], "fetchmany")
        check(cur.fetchone() == (4,), "fetchone")
    conn.commit()

# Transactions as psycopg drives them: implicit BEGIN, rollback(), commit(); nested
# transaction() blocks become savepoints; a lost race is SerializationFailure and leaves the
# connection idle, ready for the next transaction.
with psycopg.connect(DSN) as a, psycopg.connect(DSN, autocommit=True) as b:
    b.execute("CREATE TABLE tx_plan (item_id BIGINT, discount DOUBLE PRECISION)")
    b.execute("INSERT INTO tx_plan VALUES (1, 0.1), (2, 0.2)")
    a.execute("UPDATE tx_plan SET discount = 0.5 WHERE item_id = 1")
    a.execute("INSERT INTO tx_plan VALUES (3, 0.3)")
    check(b.execute("SELECT count(*) FROM tx_plan").fetchone() == (2,), "uncommitted rows seen")
    a.rollback()
    check(
        b.execute("SELECT item_id, discount FROM tx_plan ORDER BY 1").fetchall()
        == [(1, 0.1), (2, 0.2)],
        "rollback",
    )
    a.execute("UPDATE tx_plan SET discount = 0.5 WHERE item_id = 1")
    b.execute("DELETE FROM tx_plan WHERE item_id = 2")
    try:
        a.commit()
        check(False, "a lost race committed")
    except errors.SerializationFailure:
        pass
    check(a.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, "idle after 40001")
    with a.transaction():
        a.execute("INSERT INTO tx_plan VALUES (4, 0.4)")
        with a.transaction():
            a.execute("INSERT INTO tx_plan VALUES (5, 0.5)")
            try:
                with a.transaction():
                    a.execute("INSERT INTO tx_plan VALUES (6, 0.6)")
                    a.execute("SELECT 1 / 0")
            except errors.DivisionByZero:
                pass
    a.commit()
    got = [r[0] for r in b.execute("SELECT item_id FROM tx_plan ORDER BY 1")]
    check(got == [1, 4, 5], f"savepoints: {got}")

# Python lists as array parameters (psycopg describes them by their values: [1, 2] as
# int2[]), in text and binary; read back as the same lists; COPY of array literals.
with psycopg.connect(DSN, autocommit=True) as conn:
    conn.execute("CREATE TABLE py_arrays (k BIGINT, f DOUBLE PRECISION[], i INT[], b BIGINT[], t TEXT[])")
    rows = [
        (1, [1.5, 2.5], [1, 2], [2**40, -1], ["a", "b c", "d,e"]),
        (2, [], [], [], []),
        (3, [None, 0.25], [None, 70000], [7], [None, "x"]),
        (4, None, None, None, None),
    ]
    conn.execute("INSERT INTO py_arrays VALUES (%s, %s, %s, %s, %s)", rows[0])
    conn.cursor().executemany("INSERT INTO py_arrays VALUES (%s, %s, %s, %s, %s)", rows[1:3])
    conn.execute("INSERT INTO py_arrays VALUES (%b, %b, %b, %b, %b)", rows[3])
    for binary in (False, True):
        got = conn.execute("SELECT * FROM py_arrays ORDER BY k", binary=binary).fetchall()
        check(got == rows, f"array parameters (binary={binary}): {got}")
    with conn.cursor().copy("COPY py_arrays FROM STDIN") as copy:
        copy.write_row((5, "{0.5,NULL}", "{3}", "{}", '{"y z"}'))
    got = conn.execute("SELECT f, i, b, t FROM py_arrays WHERE k = 5").fetchone()
    check(got == ([0.5, None], [3], [], ["y z"]), f"COPY of array literals: {got}")

print("psycopg: ok")
