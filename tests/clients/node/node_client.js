// node-postgres (pg) against a running flashsql server (FLASHSQL_NODE_URL): what a Node
// backend reading discount plans does. Run by tests/it/clients.rs; exits non-zero with a
// message on the first failure and prints "node: ok" at the end.
'use strict';

const { Client, Pool } = require('pg');

function check(ok, what) {
  if (!ok) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
}

async function main() {
  const url = process.env.FLASHSQL_NODE_URL;

  // One client: parameterised queries (extended protocol) and typed results.
  const client = new Client({ connectionString: url });
  await client.connect();
  const one = await client.query(
    'SELECT user_id, segment, signup_ts FROM users WHERE user_id = $1',
    [3],
  );
  check(one.rows.length === 1, `one user: ${JSON.stringify(one.rows)}`);
  // bigint arrives as a string (pg's default for int8), timestamps as Date.
  check(one.rows[0].user_id === '3', `int8 as text: ${typeof one.rows[0].user_id}`);
  check(one.rows[0].signup_ts instanceof Date, 'timestamp as Date');
  const typed = await client.query(
    'SELECT $1::double precision * 2 AS d, $2::text AS t, $3::boolean AS b, 7::int AS i',
    [1.25, 'flash', true],
  );
  check(typed.rows[0].d === 2.5, `float8: ${typed.rows[0].d}`);
  check(typed.rows[0].t === 'flash' && typed.rows[0].b === true, 'text and bool');
  check(typed.rows[0].i === 7, `int4: ${typed.rows[0].i}`);
  // A named prepared statement, reused.
  for (let k = 1; k <= 5; k += 1) {
    const r = await client.query({
      name: 'count-by-segment',
      text: 'SELECT count(*)::int AS n FROM users WHERE user_id <= $1',
      values: [k],
    });
    check(r.rows[0].n === k, `prepared run ${k}: ${r.rows[0].n}`);
  }
  // An error carries its SQLSTATE.
  try {
    await client.query('SELECT * FROM no_such_table');
    check(false, 'no error for a missing table');
  } catch (e) {
    check(e.code === '42P01', `missing table code ${e.code}`);
  }
  await client.end();

  // A pool of 10 clients, all busy at once.
  const pool = new Pool({ connectionString: url, max: 10 });
  const counts = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      pool.query('SELECT count(*)::int AS n FROM events WHERE user_id = $1', [i + 1]),
    ),
  );
  check(counts.length === 30 && counts.every((r) => Number.isInteger(r.rows[0].n)), 'pool');
  check(pool.totalCount <= 10, `pool opened ${pool.totalCount} connections`);
  await pool.end();
  console.log('node: ok');
}

main().catch((e) => {
  console.log(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
