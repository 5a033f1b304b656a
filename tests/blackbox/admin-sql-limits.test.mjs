// POST /admin/sql limits (issue 11 item 4): the bytes of a result
// (--admin-sql-max-bytes, default 16 MiB, 413 past it, counted while rows
// are read), the time limit within 1.5x also for rows of one expensive
// call and for a call SQLite cannot interrupt, the result encoded off the
// event loop (WebSocket pings stay fast meanwhile), and 503 with
// Retry-After when every worker is busy.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { startServer, api, connect, sleep, ADMIN_KEY, BIN } from './lib.mjs';

let srv, small;
before(async () => {
  srv = await startServer();
  small = await startServer({ args: ['--admin-sql-max-bytes', '1000'] });
});
after(async () => {
  await srv?.cleanup();
  await small?.cleanup();
});

const rows = (n) => `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) `;
const endless = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) ';

// The query over a plain socket: the body is counted, not parsed, so a big
// answer does not hold this process's own loop (and the pings it times).
function sqlRaw(s, q) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const body = JSON.stringify({ sql: q });
    const req = http.request({
      host: '127.0.0.1', port: s.httpPort, path: '/admin/sql', method: 'POST',
      headers: { Authorization: 'Bearer ' + ADMIN_KEY, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let len = 0, head = '';
      res.on('data', (d) => { len += d.length; if (head.length < 4096) head += d.toString('latin1', 0, Math.min(d.length, 4096)); });
      res.on('end', () => {
        let json = null;
        if (len < 4096) try { json = JSON.parse(head); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, len, head, json, ms: Date.now() - t0 });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// Run q while pinging over a WebSocket every 10 ms; the answer and the
// ping round trips (ms) seen meanwhile.
async function whilePinging(ws, s, q) {
  let done = false;
  const pings = [];
  const p = sqlRaw(s, q).finally(() => { done = true; });
  for (let i = 0; !done && i < 2000; i++) {
    const t0 = Date.now();
    ws.send({ type: 'ping' });
    await ws.next('pong', 20000);
    pings.push(Date.now() - t0);
    await sleep(10);
  }
  return { r: await p, pings };
}

function checkPings(what, pings) {
  assert.ok(pings.length > 0, what);
  const sorted = [...pings].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1], max = sorted[sorted.length - 1];
  console.log(`# ${what}: ${pings.length} pings, median ${median} ms, max ${max} ms`);
  // The loop never waits for a query: a ping is a few ms, and even on a
  // loaded machine no ping waits the seconds a query takes.
  assert.ok(median < 50, `${what}: median ping ${median} ms`);
  assert.ok(max < 500, `${what}: a ping waited ${max} ms`);
}

function peakRssMb(s) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.proc.pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

test('a result past --admin-sql-max-bytes is 413 and is never built; pings stay fast', async () => {
  const ws = await connect(srv, 'pinger');
  try {
    for (const [what, s, q] of [
      // 5 values of 30 MB: each is over the budget on its own
      ['5 x zeroblob(30 MB)', srv, rows(5) + 'SELECT zeroblob(30000000) FROM c'],
      // 3 MB blobs are 6 MB of hex: over after the third row
      ['60 x 3 MB blobs', srv, rows(60) + 'SELECT zeroblob(3000000 + x) FROM c'],
      // stepping stops once over: an endless generator is 413, neither
      // the time limit nor the row limit (on the 1000-byte server: 16 MiB
      // of hex takes seconds in a sanitizer build)
      ['endless rows', small, endless + 'SELECT x, zeroblob(10) FROM c'],
    ]) {
      const { r, pings } = await whilePinging(ws, s, q);
      assert.equal(r.status, 413, `${what}: ${r.status} ${r.head.slice(0, 200)}`);
      assert.match(r.headers['content-type'], /^application\/json/);
      assert.equal(typeof r.json?.error, 'string', r.head);
      assert.match(r.json.error, /too large/);
      checkPings(what, pings);
    }
    // Nothing of that size was ever held: 300 MB of hex (and its JSON
    // text, and a copy) would have been.
    const peak = peakRssMb(srv);
    console.log(`# peak RSS ${peak.toFixed(0)} MB`);
    assert.ok(peak < 400, `peak RSS ${peak} MB`);
    // just under the default limit is answered whole
    // (What is checked is the size, not the 2 s time limit: on a machine
    // loaded far past its cores, 16 MB of text can take longer, so a time
    // limit answer is tried again, a few times at most.)
    let r;
    for (let i = 0; i < 3; i++) {
      r = await sqlRaw(srv, "SELECT hex(zeroblob(8000000)) AS v");
      if (!(r.status === 400 && /time limit/.test(r.head))) break;
      console.log('# 16 MB answer hit the time limit; again');
    }
    assert.equal(r.status, 200, r.head.slice(0, 200));
    assert.ok(r.len > 16000000 && r.len <= 16 * 1024 * 1024, String(r.len));
  } finally {
    await ws.close();
  }

  // --admin-sql-max-bytes: the body is at most that many bytes
  let r = await api(small, 'POST', '/admin/sql', { sql: 'SELECT hex(zeroblob(450)) AS v' }, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.rows[0][0].length, 900);
  assert.ok(Buffer.byteLength(r.text) <= 1000, String(r.text.length));
  for (const q of ['SELECT hex(zeroblob(500)) AS v', 'SELECT zeroblob(490)', rows(100) + 'SELECT x, x * 2, x * 3 FROM c']) {
    r = await api(small, 'POST', '/admin/sql', { sql: q }, ADMIN_KEY);
    assert.equal(r.status, 413, `${q}: ${r.text}`);
    assert.deepEqual(Object.keys(r.json), ['error']);
  }
  r = await api(small, 'POST', '/admin/sql', { sql: rows(10) + 'SELECT x FROM c' }, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.rows.length, 10);

  // `basestation sql` has the same (default) limit: exit 1 and a message
  const cli = spawnSync(BIN, ['sql', '--json', '--db', srv.db, 'SELECT zeroblob(20000000)'], { encoding: 'utf8', timeout: 20000 });
  assert.equal(cli.status, 1, cli.stderr);
  assert.equal(cli.stdout, '');
  assert.match(cli.stderr, /^basestation sql: result too large: more than 16777216 bytes\n$/);
});

test('the time limit holds within 1.5x: rows of one expensive call, a call SQLite cannot interrupt', async () => {
  const ws = await connect(srv, 'pinger2');
  try {
    for (const [what, q] of [
      // ~0.1 s of work per row in one printf, a handful of opcodes each
      ['60 rows of 16 MB printf', rows(60) + "SELECT length(printf('%.*c', 16000000 - x, 'x')) FROM c"],
      // the same, filtered out in the VM: no row comes back in between
      ['filtered expensive rows', rows(60) + "SELECT count(*) FROM c WHERE length(printf('%.*c', 16000000 - x, 'x')) < 0"],
      // one instr() over 8 MB that runs for seconds and checks nothing:
      // the loop answers at the limit whatever the worker does
      ['one uninterruptible call', "SELECT instr(printf('%.*c', 8000000, 'a'), printf('%.*c', 30000, 'a') || 'b')"],
    ]) {
      const { r, pings } = await whilePinging(ws, srv, q);
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.head.slice(0, 200)}`);
      assert.equal(r.json?.error, 'interrupted: time limit 2000 ms', r.head);
      console.log(`# ${what}: answered after ${r.ms} ms`);
      assert.ok(r.ms < 3000, `${what}: answered after ${r.ms} ms`);
      checkPings(what, pings);
    }
    // the broker and the other workers go on
    const r = await api(srv, 'POST', '/admin/sql', { sql: 'SELECT 42' }, ADMIN_KEY);
    assert.deepEqual(r.json.rows, [[42]]);
  } finally {
    await ws.close();
  }
});

test('every worker busy: 503 with Retry-After: 1', async () => {
  const runaway = endless + 'SELECT count(*) FROM c';
  const rs = await Promise.all([0, 1, 2, 3, 4, 5].map(() => sqlRaw(srv, runaway)));
  const busy = rs.filter((r) => r.status === 503);
  assert.ok(busy.length >= 2, JSON.stringify(rs.map((r) => r.status)));
  for (const r of busy) {
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(typeof r.json?.error, 'string');
  }
  for (const r of rs.filter((x) => x.status !== 503)) assert.equal(r.status, 400, r.head);
});
