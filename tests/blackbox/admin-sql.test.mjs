// POST /admin/sql and `basestation sql`: one read-only statement on its
// own read-only connection. Reads work (columns, rows in column order,
// params, row limit); every kind of write, ATTACH, writing PRAGMA, a second
// statement and a runaway query are refused with 400 and leave the
// database and the file system as they were.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, api, connect, sleep, ADMIN_KEY, BIN } from './lib.mjs';

let srv, scratch;
before(async () => {
  srv = await startServer();
  scratch = mkdtempSync(path.join(tmpdir(), 'bs-sql-'));
  // some data: messages, a room membership, a task
  const a = await connect(srv, 'alice');
  const b = await connect(srv, 'bob');
  b.send({ type: 'join', room: 'r1' }); await b.next('joined');
  a.send({ type: 'join', room: 'r1' }); await a.next('joined');
  for (let i = 0; i < 5; i++) { a.send({ type: 'send', to: 'bob', data: { i } }); await a.next('ack'); }
  a.send({ type: 'publish', room: 'r1', data: 'hello' }); await a.next('ack');
  await api(srv, 'POST', '/api/tasks', { id: 'job', title: 'T', owner: 'alice', steps: ['a', 'b'] });
  await a.close(); await b.close();
});
after(async () => {
  await srv.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

const sql = (q, params, extra = {}) => api(srv, 'POST', '/admin/sql', { sql: q, ...(params !== undefined ? { params } : {}), ...extra }, ADMIN_KEY);

function cli(args, opts = {}) {
  return new Promise((resolve) => {
    execFile(BIN, ['sql', ...args], { encoding: 'utf8', timeout: 20000, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

// Row counts of every table, the schema and the header pragmas.
async function fingerprint() {
  const tables = (await sql("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")).json.rows.map((r) => r[0]);
  const out = {};
  for (const t of tables) out[t] = (await sql(`SELECT count(*) FROM "${t}"`)).json.rows[0][0];
  out.schema = (await sql('SELECT type, name, sql FROM sqlite_schema ORDER BY name')).json.rows;
  out.user_version = (await sql('PRAGMA user_version')).json.rows;
  out.journal_mode = (await sql('PRAGMA journal_mode')).json.rows;
  out.data = (await sql('SELECT seq, sender, to_uid, room, data FROM messages ORDER BY seq')).json.rows;
  return out;
}

test('SELECT: columns, rows in column order, params, truncation, elapsed_ms', async () => {
  let r = await sql("SELECT seq, sender, to_uid, data FROM messages WHERE to_uid = 'bob' ORDER BY seq");
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.columns, ['seq', 'sender', 'to_uid', 'data']);
  assert.equal(r.json.rows.length, 5);
  assert.deepEqual(r.json.rows[0].slice(1), ['alice', 'bob', '{"i":0}']);
  assert.ok(r.json.rows.every((row, i) => Number.isInteger(row[0]) && (i === 0 || row[0] > r.json.rows[i - 1][0])));
  assert.equal(r.json.truncated, false);
  assert.equal(typeof r.json.elapsed_ms, 'number');

  r = await sql("SELECT 1 AS one, 2.5 AS half, 'x' AS s, NULL AS n, x'00ff' AS b, 'a' || 'b' AS ab");
  assert.deepEqual(r.json.columns, ['one', 'half', 's', 'n', 'b', 'ab']);
  assert.deepEqual(r.json.rows, [[1, 2.5, 'x', null, { $blob: '00ff' }, 'ab']]);

  // positional and named params
  r = await sql('SELECT ?1 + ?2, ?3', [1, 2, 'three']);
  assert.deepEqual(r.json.rows, [[3, 'three']]);

  r = await sql('SELECT count(*) FROM messages WHERE sender = :who AND to_uid = :to', { who: 'alice', to: 'bob' });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.rows, [[5]]);
  r = await sql('SELECT $a, @b', { $a: true, b: null });
  assert.deepEqual(r.json.rows, [[1, null]]);
  for (const [q, p] of [['SELECT ?', []], ['SELECT ?', [1, 2]], ['SELECT :a', {}], ['SELECT :a', { b: 1 }],
    ['SELECT ?', [[1]]], ['SELECT ?', [{ a: 1 }]], ['SELECT 1', 'x'], ['SELECT 1', 5], ['SELECT ?', undefined]]) {
    const x = await sql(q, p);
    assert.equal(x.status, 400, `${q} ${JSON.stringify(p)}: ${x.text}`);
    assert.equal(typeof x.json.error, 'string');
  }
  // bad requests
  for (const body of [{}, { sql: 5 }, { sql: '' }, { sql: '   ' }, { sql: '-- nothing' }, { sql: ['SELECT 1'] }, { sql: 'SELEC 1' },
    { sql: 'SELECT * FROM no_such_table' }, { sql: 'SELECT 1'.padEnd(20000, ' ') + ', 2' }]) {
    const x = await api(srv, 'POST', '/admin/sql', body, ADMIN_KEY);
    assert.equal(x.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${x.text}`);
    assert.equal(typeof x.json.error, 'string');
  }
  // introspection works
  r = await sql("SELECT name FROM pragma_table_info('messages') ORDER BY cid");
  assert.deepEqual(r.json.rows.map((x) => x[0]), ['seq', 'ts', 'sender', 'to_uid', 'room', 'data']);
  r = await sql('PRAGMA table_info(members)');
  assert.equal(r.status, 200, r.text);
  r = await sql('SELECT 1;');
  assert.equal(r.status, 200, r.text);
  r = await sql('SELECT 2 -- trailing comment\n;  /* and another */ ');
  assert.deepEqual(r.json.rows, [[2]]);

  // the row limit: the request may lower it, a runaway generator is cut
  r = await sql('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.truncated, true);
  assert.equal(r.json.rows.length, 1000);
  r = await sql('SELECT seq FROM messages', undefined, { max_rows: 2 });
  assert.equal(r.json.rows.length, 2);
  assert.equal(r.json.truncated, true);
});

test('every write attempt is refused with 400 and changes nothing', async () => {
  const before = await fingerprint();
  const evil = path.join(scratch, 'evil.db');
  const attempts = [
    'DELETE FROM messages',
    "INSERT INTO messages (seq, ts, sender, to_uid, data) VALUES (999, 0, 'x', 'y', '1')",
    "INSERT INTO meta VALUES ('x', 'y') RETURNING *",
    "REPLACE INTO meta VALUES ('epoch', 'x')",
    "UPDATE messages SET data = '0'",
    "UPDATE meta SET value = 'x' WHERE key = 'epoch' RETURNING value",
    'WITH x AS (SELECT 1) DELETE FROM messages',
    "INSERT INTO meta SELECT 'k', 'v' ON CONFLICT DO NOTHING",
    'DROP TABLE messages',
    'DROP TABLE IF EXISTS nothing',
    'DROP INDEX idem_hash',
    'CREATE TABLE evil (x)',
    'CREATE TABLE evil AS SELECT * FROM messages',
    'CREATE TEMP TABLE evil (x)',
    'CREATE TEMP VIEW v AS SELECT 1',
    'CREATE VIEW v AS SELECT 1',
    'CREATE INDEX evil ON messages (data)',
    'CREATE TRIGGER t AFTER INSERT ON messages BEGIN DELETE FROM messages; END',
    'CREATE VIRTUAL TABLE v USING fts5(x)',
    'ALTER TABLE messages ADD COLUMN evil',
    'ALTER TABLE messages RENAME TO m2',
    'ALTER TABLE messages RENAME COLUMN data TO d',
    'ALTER TABLE messages DROP COLUMN room',
    `ATTACH DATABASE '${evil}' AS evil`,
    `ATTACH '${evil}' AS evil`,
    `SELECT * FROM (SELECT 1) WHERE 0; ATTACH '${evil}' AS e`,
    'DETACH DATABASE main',
    'DETACH temp',
    'PRAGMA user_version = 9',
    'PRAGMA main.user_version = 9',
    'PRAGMA user_version(9)',
    'PRAGMA journal_mode = DELETE',
    'PRAGMA journal_mode = OFF',
    'PRAGMA writable_schema = 1',
    'PRAGMA writable_schema = RESET',
    'PRAGMA query_only = 0',
    'PRAGMA schema_version = 1',
    'PRAGMA application_id = 7',
    'PRAGMA foreign_keys = OFF',
    'PRAGMA wal_checkpoint(TRUNCATE)',
    'PRAGMA incremental_vacuum',
    'PRAGMA optimize',
    'PRAGMA auto_vacuum = FULL',
    'PRAGMA page_size = 1024',
    "PRAGMA temp_store_directory = '/tmp'",
    'PRAGMA secure_delete = ON',
    'PRAGMA locking_mode = EXCLUSIVE',
    'PRAGMA mmap_size = 1000000',
    'PRAGMA cache_size = 1',
    'PRAGMA trusted_schema = 1',
    'VACUUM',
    'VACUUM main',
    `VACUUM INTO '${path.join(scratch, 'copy.db')}'`,
    "VACUUM INTO '/tmp/bs-sql-vacuum-into.db'",
    "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
    "SELECT load_extension('x', 'y')",
    "SELECT writefile('/tmp/bs-sql-writefile', 'x')",
    "SELECT readfile('/etc/passwd')",
    "SELECT fts3_tokenizer('simple')",
    'SELECT 1; DELETE FROM messages',
    'SELECT 1;DELETE FROM messages;',
    'SELECT 1 /* c */ ; DROP TABLE messages',
    'SELECT 1 -- c\n; UPDATE messages SET data = 1',
    'BEGIN',
    'BEGIN IMMEDIATE',
    'BEGIN EXCLUSIVE',
    'COMMIT',
    'END',
    'ROLLBACK',
    'SAVEPOINT a',
    'RELEASE a',
    'ROLLBACK TO a',
    'REINDEX',
    'REINDEX messages',
    'ANALYZE',
    'ANALYZE messages',
  ];
  for (const q of attempts) {
    const r = await sql(q);
    assert.equal(r.status, 400, `${q}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json?.error, 'string', q);
    // reads still work between the attempts
    const s = await sql('SELECT count(*) FROM messages');
    assert.equal(s.status, 200, `after ${q}: ${s.text}`);
  }
  // A NUL cannot hide a second statement (the text is refused outright).
  let r = await sql('SELECT 1\u0000; DELETE FROM messages');
  assert.equal(r.status, 400, r.text);

  assert.deepEqual(await fingerprint(), before);
  assert.deepEqual(readdirSync(scratch), []);
  assert.ok(!existsSync('/tmp/bs-sql-vacuum-into.db'));
  assert.ok(!existsSync('/tmp/bs-sql-writefile'));
  // the broker itself still writes
  r = await api(srv, 'POST', '/api/publish', { to: 'bob', data: 'still works' });
  assert.equal(r.status, 200, r.text);
});

test('a runaway query is stopped by the time limit; how long the loop waits', async () => {
  const ws = await connect(srv, 'pinger');
  const t0 = Date.now();
  const q = sql('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c');
  await sleep(100);
  const p0 = Date.now();
  ws.send({ type: 'ping' });
  await ws.next('pong', 10000);
  const pingMs = Date.now() - p0;
  const r = await q;
  const took = Date.now() - t0;
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error, /time limit/);
  assert.ok(took < 5000, `the query ran ${took} ms`);
  console.log(`# runaway query refused after ${took} ms; a ping sent meanwhile waited ${pingMs} ms`);
  // the broker kept serving WebSocket traffic while the query ran
  assert.ok(pingMs < 1000, `a ping waited ${pingMs} ms behind the query`);
  // A slow query and a fast one at the same time: the fast one is not held.
  const slow = sql('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c');
  await sleep(50);
  const f0 = Date.now();
  const fast = await sql('SELECT 42');
  assert.deepEqual(fast.json.rows, [[42]]);
  assert.ok(Date.now() - f0 < 1000, `a fast query waited ${Date.now() - f0} ms`);
  assert.equal((await slow).status, 400);
  await ws.close();
});

test('queries at once are capped; a client that leaves mid-query; stop during a query', async () => {
  const runaway = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
  // a client that gives up: the answer goes nowhere, nothing breaks
  const ac = new AbortController();
  const gone = fetch(srv.http + '/admin/sql', { method: 'POST', headers: { Authorization: 'Bearer ' + ADMIN_KEY }, body: JSON.stringify({ sql: runaway }), signal: ac.signal }).catch((e) => e);
  await sleep(100);
  ac.abort();
  await gone;
  await sleep(50);
  const rs = await Promise.all([0, 1, 2, 3, 4, 5].map(() => sql(runaway)));
  const codes = rs.map((r) => r.status).sort();
  assert.ok(codes.includes(503), JSON.stringify(codes));
  assert.ok(codes.every((c) => c === 400 || c === 503), JSON.stringify(codes));
  for (const r of rs) assert.equal(typeof r.json.error, 'string');
  assert.deepEqual((await sql('SELECT 1')).json.rows, [[1]]);

  // SIGTERM while a query runs: a clean exit 0 within the 5 s budget
  const s2 = await startServer();
  const q = api(s2, 'POST', '/admin/sql', { sql: runaway }, ADMIN_KEY).catch((e) => e);
  await sleep(200);
  const t0 = Date.now();
  await s2.cleanup();
  assert.ok(Date.now() - t0 < 5000);
  await q;
});

test('basestation sql: table and --json output, refusals exit 1, usage exits 2', async () => {
  let r = await cli(['--db', srv.db, "SELECT seq, sender AS who, data FROM messages WHERE to_uid = 'bob' ORDER BY seq LIMIT 2"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.match(lines[0], /^ seq \| who\s+\| data\s*$/);
  assert.match(lines[1], /^-+\+-+\+-+$/);
  // aligned: every separator at the same column on every row
  const bars = (l) => [...l].map((ch, i) => (ch === '|' || ch === '+' ? i : -1)).filter((i) => i >= 0);
  assert.deepEqual(bars(lines[1]), bars(lines[0]));
  assert.deepEqual(bars(lines[2]), bars(lines[0]));
  assert.deepEqual(bars(lines[3]), bars(lines[0]));
  assert.match(lines[2], /\| alice \| \{"i":0\}$/);
  assert.equal(lines[4], '(2 rows)');

  r = await cli(['--json', "SELECT 1 AS a, 'x' AS b, NULL AS c", '--db', srv.db]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(j.columns, ['a', 'b', 'c']);
  assert.deepEqual(j.rows, [[1, 'x', null]]);
  assert.equal(j.truncated, false);

  // BASESTATION_DB works instead of --db
  r = await cli(['--json', 'SELECT count(*) FROM members'], { env: { ...process.env, BASESTATION_DB: srv.db } });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).rows, [[2]]);

  const before = await fingerprint();
  for (const q of ['DELETE FROM messages', "INSERT INTO meta VALUES ('a', 'b')", 'DROP TABLE messages',
    'PRAGMA user_version = 9', 'PRAGMA journal_mode = DELETE', `ATTACH '${path.join(scratch, 'e.db')}' AS e`,
    'VACUUM', `VACUUM INTO '${path.join(scratch, 'v.db')}'`, "SELECT load_extension('x')", 'SELECT 1; DELETE FROM messages',
    'BEGIN', 'CREATE TEMP TABLE t (x)', 'no sql at all', 'SELECT * FROM nope']) {
    r = await cli(['--db', srv.db, q]);
    assert.equal(r.code, 1, `${q}: ${r.code} ${r.stdout} ${r.stderr}`);
    assert.equal(r.stdout, '', q);
    assert.match(r.stderr, /^basestation sql: .+\n$/, q);
  }
  assert.deepEqual(await fingerprint(), before);
  assert.deepEqual(readdirSync(scratch), []);
  // a database that does not exist is not created
  const missing = path.join(scratch, 'missing.db');
  r = await cli(['--db', missing, 'SELECT 1']);
  assert.equal(r.code, 1);
  assert.ok(!existsSync(missing));

  for (const args of [[], ['--json'], ['--db'], ['SELECT 1', 'SELECT 2'], ['--max-rows', '0', 'SELECT 1'], ['--max-rows', 'x', 'SELECT 1'], ['--max-rows', '5x', 'SELECT 1'], ['--bogus', 'SELECT 1'], ['SELECT 1', '--db'], ['--']]) {
    r = await cli(args);
    assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.code} ${r.stderr}`);
    assert.ok(r.stderr.length > 0);
  }
  // SQL that starts with a dash comes after "--"
  r = await cli(['--json', '--db', srv.db, '--', '--comment\nSELECT 7']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).rows, [[7]]);
  r = await cli(['--json', '--max-rows', '3', '--db', srv.db, 'SELECT seq FROM messages']);
  assert.equal(JSON.parse(r.stdout).rows.length, 3);
  assert.equal(JSON.parse(r.stdout).truncated, true);
  r = await cli(['--max-rows', '1', '--db', srv.db, 'SELECT seq FROM messages']);
  assert.match(r.stdout, /\(1 row\)\n\(truncated\)\n$/);
  r = await cli(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /usage: basestation sql/);
});

test('basestation sql works while the broker runs and writes', async () => {
  const a = await connect(srv, 'writer');
  let stop = false, acked = 0;
  const writer = (async () => {
    while (!stop) {
      a.send({ type: 'send', to: 'bob', data: 'w' });
      await a.next('ack');
      acked++;
    }
  })();
  const counts = [];
  for (let i = 0; i < 5; i++) {
    const r = await cli(['--json', '--db', srv.db, "SELECT count(*) FROM messages WHERE data = '\"w\"'"]);
    assert.equal(r.code, 0, r.stderr);
    counts.push(JSON.parse(r.stdout).rows[0][0]);
  }
  stop = true;
  await writer;
  assert.ok(acked > 0);
  // it saw the committed rows, more over time
  for (let i = 1; i < counts.length; i++) assert.ok(counts[i] >= counts[i - 1], JSON.stringify(counts));
  assert.ok(counts[counts.length - 1] > 0, JSON.stringify(counts));
  const r = await cli(['--json', '--db', srv.db, "SELECT count(*) FROM messages WHERE data = '\"w\"'"]);
  assert.equal(JSON.parse(r.stdout).rows[0][0], acked);
  await a.close();
});
