// Retention by count and age: pruned messages are counted in /metrics and
// make a resume that needed them report complete:false.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, connect, sleep, token, api, ADMIN_KEY, tempDb } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--retention-count', '5'] }); });
after(async () => { await srv.cleanup(); });

async function metric(name, s = srv) {
  const t = await (await fetch(s.http + '/metrics')).text();
  const m = new RegExp('^' + name.replace(/[{}"]/g, '\\$&') + ' (\\d+)', 'm').exec(t);
  return m ? Number(m[1]) : null;
}

test('keeps the newest N, counts the rest, reports complete:false', async () => {
  const a = await connect(srv, 'alice');
  const seqs = [];
  for (let i = 0; i < 20; i++) { a.send({ type: 'send', to: 'bob', data: i }); seqs.push((await a.next('ack')).seq); }
  // The pruner runs once a second in small steps.
  const deadline = Date.now() + 8000;
  while ((await metric('basestation_drops_total{reason="retention"}')) < 15 && Date.now() < deadline) await sleep(200);
  assert.equal(await metric('basestation_drops_total{reason="retention"}'), 15);
  const b = await connect(srv, 'bob', { query: { since: '0' } });
  const got = [];
  for (let i = 0; i < 5; i++) got.push(await b.next('message'));
  assert.deepEqual(got.map((m) => m.data), [15, 16, 17, 18, 19]);
  const res = await b.next('resumed');
  assert.equal(res.complete, false);
  // Resuming after the pruned range is complete.
  const b2 = await connect(srv, 'bob', { query: { since: String(seqs[16]) } });
  assert.equal((await b2.next('message')).data, 17);
  assert.equal((await b2.next('resumed')).complete, true);
  await Promise.all([a.close(), b.close(), b2.close()]);
});

test('age retention', async () => {
  const s2 = await startServer({ args: ['--retention-age', '1'] });
  try {
    const a = await connect(s2, 'alice');
    a.send({ type: 'send', to: 'zed', data: 'old' }); await a.next('ack');
    await sleep(2600);
    const z = await connect(s2, 'zed', { query: { since: '0' } });
    const res = await z.next('resumed');
    assert.equal(res.complete, false);
    assert.equal(z.all.filter((m) => m.type === 'message').length, 0);
    await a.close(); await z.close();
  } finally { await s2.cleanup(); }
});

// Retention keeps pace with a flood: one connection stores thousands of
// messages a second, and a full prune batch goes on at the next loop turn
// instead of a second later. So soon after the flood, what is stored is
// back within --retention-count (before: 500 rows a second at most, so
// 20,000 messages stayed for 40 s).
async function flood(s, uid, n, body = () => ({})) {
  const ws = new WebSocket(s.url('?token=' + token(s.db, uid)), { perMessageDeflate: false });
  let sent = 0, replies = 0, errors = 0, timer;
  try {
    await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`flood: ${replies} of ${n} replies`)), 60000);
      const pump = () => {
        while (sent < n && sent - replies < 500) {
          ws.send(JSON.stringify({ type: 'send', to: 'nobody', data: sent, ...body(sent) }));
          sent++;
        }
      };
      ws.on('error', reject);
      ws.on('message', (d) => {
        const m = JSON.parse(d);
        if (m.type === 'connect') return pump();
        if (m.type === 'error') errors++;
        if (m.type !== 'ack' && m.type !== 'error') return;
        if (++replies === n) resolve(); else pump();
      });
    });
    assert.equal(errors, 0);
  } finally { clearTimeout(timer); ws.terminate(); }
}

async function sqlCount(s, sql) {
  const r = await api(s, 'POST', '/admin/sql', { sql }, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  return r.json.rows[0][0];
}

async function waitCount(s, sql, ok, ms) {
  const deadline = Date.now() + ms;
  let n;
  while (!ok(n = await sqlCount(s, sql)) && Date.now() < deadline) await sleep(100);
  return n;
}

test('a flood is pruned back to --retention-count within seconds', async () => {
  const s = await startServer({ args: ['--retention-count', '100'] });
  try {
    await flood(s, 'flooder', 20000);
    const n = await waitCount(s, 'SELECT count(*) FROM messages', (c) => c <= 100, 3000);
    assert.ok(n <= 100, `${n} messages stored 3 s after the flood, bound 100`);
    assert.equal(await metric('basestation_drops_total{reason="retention"}', s), 19900);
  } finally { await s.cleanup(); }
});

// Idempotency keys older than 24 h go the same way, in steps that keep
// going while they are full: 20,000 expired keys are gone within seconds
// (before: 500 a second), the recent ones stay.
test('expired idempotency keys are pruned in steps that keep going', async () => {
  const { db, dir } = tempDb();
  let s = await startServer({ db });
  try {
    await s.stop();
    const old = Date.now() - 2 * 86400 * 1000, now = Date.now();
    execFileSync('sqlite3', [db], { input: `
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20010)
      INSERT INTO idem (seq, ts, hash) SELECT i, CASE WHEN i > 20000 THEN ${now} ELSE ${old} END, randomblob(16) FROM n;
    ` });
    s = await startServer({ db });
    const n = await waitCount(s, 'SELECT count(*) FROM idem', (c) => c <= 10, 4000);
    assert.equal(n, 10);
    assert.equal(await sqlCount(s, 'SELECT min(seq) FROM idem'), 20001);
  } finally { await s.cleanup(); rmSync(dir, { recursive: true, force: true }); }
});
