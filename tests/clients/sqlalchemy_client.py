"""psycopg2, SQLAlchemy 2 and pandas against a running flashsql server (FLASHSQL_URL): what an
analyst's notebook and a Python data pipeline do.

Run by tests/it/clients.rs; exits non-zero with a message on the first failure.
"""

import os

import pandas as pd
import psycopg2
import sqlalchemy as sa

URL = os.environ["FLASHSQL_URL"]  # postgresql+psycopg2://flashsql@host:port/flashsql


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


# psycopg2 on its own: parameters are interpolated client-side, the connection opens a
# transaction implicitly (BEGIN before the first statement) and commits.
raw = psycopg2.connect(URL.replace("postgresql+psycopg2://", "postgresql://"))
with raw.cursor() as cur:
    cur.execute("SELECT count(*) FROM users WHERE segment = %s", ("new",))
    (n,) = cur.fetchone()
    check(n > 0, f"psycopg2 count of new users: {n}")
raw.commit()
raw.close()

engine = sa.create_engine(URL)

with engine.connect() as conn:
    # text() with bound parameters.
    rows = conn.execute(
        sa.text("SELECT user_id, segment FROM users WHERE user_id <= :n ORDER BY user_id"),
        {"n": 3},
    ).all()
    check([r.user_id for r in rows] == [1, 2, 3], f"text() rows: {rows}")

    conn.execute(sa.text("CREATE VIEW new_users AS SELECT user_id FROM users WHERE segment = 'new'"))
    conn.commit()

# The inspector: what SQLAlchemy-based tools (Superset, pandas, alembic) call.
inspector = sa.inspect(engine)
tables = inspector.get_table_names()
check({"users", "items", "events"} <= set(tables), f"get_table_names: {tables}")
check("new_users" not in tables, f"a view listed as a table: {tables}")
views = inspector.get_view_names()
check("new_users" in views, f"get_view_names: {views}")
columns = {c["name"]: c for c in inspector.get_columns("users")}
check("user_id" in columns and "segment" in columns, f"get_columns: {list(columns)}")
check(
    isinstance(columns["user_id"]["type"], sa.BigInteger),
    f"user_id type: {columns['user_id']['type']!r}",
)
pk = inspector.get_pk_constraint("users")
check(pk["constrained_columns"] == [], f"get_pk_constraint: {pk}")
check(inspector.get_schema_names().count("public") == 1, "get_schema_names")

# pandas: read_sql and to_sql (which creates the table, then inserts in batches).
frame = pd.read_sql("SELECT item_id, base_price FROM items ORDER BY item_id LIMIT 5", engine)
check(list(frame.columns) == ["item_id", "base_price"] and len(frame) == 5, f"read_sql: {frame}")

out = pd.DataFrame(
    {
        "item_id": range(1, 2501),
        "discount": [i / 10000 for i in range(1, 2501)],
        "label": [f"item {i}" for i in range(1, 2501)],
    }
)
written = out.to_sql("pandas_plan", engine, index=False, chunksize=1000, method="multi")
back = pd.read_sql("SELECT count(*) AS n, sum(item_id) AS s FROM pandas_plan", engine)
check(
    int(back.n[0]) == 2500 and int(back.s[0]) == 2500 * 2501 // 2,
    f"to_sql wrote {written}, read back {back.to_dict()}",
)
# Writing again with if_exists='replace' drops and recreates the table.
out.head(10).to_sql("pandas_plan", engine, index=False, if_exists="replace")
again = pd.read_sql("SELECT count(*) AS n FROM pandas_plan", engine)
check(int(again.n[0]) == 10, f"to_sql replace: {again.to_dict()}")

print("sqlalchemy: ok")
