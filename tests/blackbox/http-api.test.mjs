// The HTTP API (contract §6): keys on every endpoint, POST /api/tokens,
// POST /api/publish, body validation and limits, unknown paths and
// methods, GET /healthz (also while another process holds the write lock).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  startServer, api, connect, Client, sleep, httpExchange, API_KEY, ADMIN_KEY,
} from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--max-http-body', '4096'] }); });
after(async () => { await srv.cleanup(); });

// Every endpoint with a body that is valid for it.
const API_ENDPOINTS = [
  ['POST', '/api/tokens', { uid: 'k1' }],
  ['POST', '/api/publish', { to: 'k1', data: 1 }],
  ['POST', '/api/tasks', { title: 't', owner: 'k1', total: 3 }],
  ['GET', '/api/tasks/nope'],
  ['POST', '/api/tasks/nope/progress', { done: 1 }],
  ['GET', '/api/nothing-here'],
];
const ADMIN_ENDPOINTS = [
  ['GET', '/admin/connections'],
  ['POST', '/admin/sql', { sql: 'SELECT 1' }],
  ['GET', '/admin/nothing-here'],
];

function assert401(r, what) {
  assert.equal(r.status, 401, `${what}: ${r.status} ${r.text}`);
  assert.equal(typeof r.json?.error, 'string', `${what}: ${r.text}`);
  assert.match(r.headers.get('content-type'), /^application\/json/);
}

test('/api needs the API key and refuses the admin key; /admin the reverse', async () => {
  const bad = [null, 'wrong', API_KEY + 'x', API_KEY.slice(0, -1), ' ', API_KEY.toUpperCase()];
  for (const [m, p, b] of API_ENDPOINTS) {
    for (const k of [...bad, ADMIN_KEY]) assert401(await api(srv, m, p, b, k), `${m} ${p} key=${k}`);
    const ok = await api(srv, m, p, b, API_KEY);
    assert.notEqual(ok.status, 401, `${m} ${p}: ${ok.text}`);
  }
  for (const [m, p, b] of ADMIN_ENDPOINTS) {
    for (const k of [...bad, API_KEY]) assert401(await api(srv, m, p, b, k), `${m} ${p} key=${k}`);
    const ok = await api(srv, m, p, b, ADMIN_KEY);
    assert.notEqual(ok.status, 401, `${m} ${p}: ${ok.text}`);
  }
  // Other schemes and odd spellings of the header.
  for (const auth of [`Basic ${Buffer.from('x:' + API_KEY).toString('base64')}`, API_KEY,
    `Bearer${API_KEY}`, `Token ${API_KEY}`, `Bearer ${API_KEY} x`]) {
    const r = await fetch(srv.http + '/api/tokens', { method: 'POST', headers: { Authorization: auth }, body: '{"uid":"a"}' });
    assert.equal(r.status, 401, auth);
  }
  // The scheme is case-insensitive (RFC 7235).
  const r = await fetch(srv.http + '/api/tokens', { method: 'POST', headers: { Authorization: 'bearer ' + API_KEY }, body: '{"uid":"a"}' });
  assert.equal(r.status, 201);
  // Public endpoints need no key.
  assert.equal((await api(srv, 'GET', '/healthz', undefined, null)).status, 200);
  assert.equal((await api(srv, 'GET', '/metrics', undefined, null)).status, 200);
});

test('without --api-key/--admin-key, /api and /admin answer 401 to everything', async () => {
  const s = await startServer({ noKeys: true });
  let e;
  try {
    // An empty key (e.g. BASESTATION_API_KEY= in an env file) is no key.
    e = await startServer({ noKeys: true, env: { BASESTATION_API_KEY: '', BASESTATION_ADMIN_KEY: '' } });
    for (const x of [s, e]) {
      for (const [m, p, b] of [...API_ENDPOINTS, ...ADMIN_ENDPOINTS]) {
        for (const k of [null, API_KEY, ADMIN_KEY, 'x']) assert401(await api(x, m, p, b, k), `${m} ${p} key=${k}`);
      }
      // "Bearer " with nothing after it, sent raw (fetch trims it).
      for (const auth of ['Bearer ', 'Bearer', 'Bearer  ']) {
        const r = await httpExchange(x.httpPort, `POST /api/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"uid":"a"}`);
        assert.equal(r.status, 401, JSON.stringify(auth));
        const a = await httpExchange(x.httpPort, `GET /admin/connections HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`);
        assert.equal(a.status, 401, JSON.stringify(auth));
      }
      assert.equal((await api(x, 'GET', '/healthz', undefined, null)).status, 200);
      // The console page itself stays public.
      assert.equal((await api(x, 'GET', '/admin', undefined, null)).status, 200);
    }
  } finally {
    await s.cleanup();
    if (e) await e.cleanup();
  }
});

test('POST /api/tokens: 201, role and ttl validated, the token connects', async () => {
  let r = await api(srv, 'POST', '/api/tokens', { uid: 'alice' });
  assert.equal(r.status, 201, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(typeof r.json.token, 'string');
  assert.ok(r.json.token.length >= 20);
  assert.equal(r.json.uid, 'alice');
  assert.equal(r.json.expires_at, null);
  const c = await connect(srv, 'alice', { token: r.json.token });
  assert.equal(c.hello.uid, 'alice');
  await c.close();

  const t0 = Date.now();
  r = await api(srv, 'POST', '/api/tokens', { uid: 'bob', role: 'producer', ttl: 60 });
  assert.equal(r.status, 201, r.text);
  assert.equal(typeof r.json.expires_at, 'number');
  // milliseconds since the epoch, like every time in the protocol
  assert.ok(Math.abs(r.json.expires_at - (t0 + 60000)) < 5000, String(r.json.expires_at));
  const p = await connect(srv, 'bob', { token: r.json.token });
  p.send({ type: 'task.create', title: 'x', total: 2 });
  assert.equal((await p.next('task')).task.title, 'x'); // producer role held
  await p.close();
  // role null and ttl 0 / null mean the defaults
  r = await api(srv, 'POST', '/api/tokens', { uid: 'u', role: null, ttl: null });
  assert.equal(r.status, 201, r.text);
  r = await api(srv, 'POST', '/api/tokens', { uid: 'u', ttl: 0 });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.expires_at, null);
  // A token with ttl 1 stops working.
  r = await api(srv, 'POST', '/api/tokens', { uid: 'short', ttl: 1 });
  await sleep(1200);
  const dead = new Client(srv.url('?token=' + r.json.token));
  await assert.rejects(dead.opened, (e) => e.status === 401);

  const bad = [
    {}, { uid: '' }, { uid: 5 }, { uid: null }, { uid: ['a'] }, { uid: 'a\u0000b' }, { uid: 'a\nb' },
    { uid: 'x'.repeat(129) }, { uid: 'a', role: 'root' }, { uid: 'a', role: 1 }, { uid: 'a', role: '' },
    { uid: 'a', ttl: -1 }, { uid: 'a', ttl: '60' }, { uid: 'a', ttl: 1.5 }, { uid: 'a', ttl: true },
    { uid: 'a', ttl: 1e12 },
  ];
  for (const b of bad) {
    r = await api(srv, 'POST', '/api/tokens', b);
    assert.equal(r.status, 400, `${JSON.stringify(b)}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json.error, 'string');
  }
});

test('POST /api/publish to a uid, a room and an offline user', async () => {
  const bob = await connect(srv, 'pub-bob');
  let r = await api(srv, 'POST', '/api/publish', { to: 'pub-bob', data: { n: 1 } });
  assert.equal(r.status, 200, r.text);
  assert.ok(Number.isInteger(r.json.seq) && r.json.seq > 0);
  let m = await bob.next('message');
  assert.equal(m.seq, r.json.seq);
  assert.equal(m.from, 'system');
  assert.equal(m.to, 'pub-bob');
  assert.deepEqual(m.data, { n: 1 });
  assert.equal(typeof m.ts, 'number');

  const seq1 = r.json.seq;
  r = await api(srv, 'POST', '/api/publish', { to: 'pub-bob', data: 'hi', from: 'billing' });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.seq > seq1);
  m = await bob.next('message');
  assert.equal(m.from, 'billing');
  assert.equal(m.data, 'hi');

  // A room: every member gets it.
  bob.send({ type: 'join', room: 'pub-room' }); await bob.next('joined');
  const eve = await connect(srv, 'pub-eve');
  eve.send({ type: 'join', room: 'pub-room' }); await eve.next('joined');
  r = await api(srv, 'POST', '/api/publish', { room: 'pub-room', data: [1, 2], from: null });
  assert.equal(r.status, 200, r.text);
  for (const c of [bob, eve]) {
    m = await c.next('message');
    assert.equal(m.seq, r.json.seq);
    assert.equal(m.room, 'pub-room');
    assert.equal(m.from, 'system');
    assert.deepEqual(m.data, [1, 2]);
  }
  // data may be any JSON, null included
  r = await api(srv, 'POST', '/api/publish', { to: 'pub-bob', data: null });
  assert.equal(r.status, 200, r.text);
  assert.equal((await bob.next('message')).data, null);

  // Offline: stored, delivered from the inbox on connect.
  r = await api(srv, 'POST', '/api/publish', { to: 'pub-carol', data: 'while away' });
  assert.equal(r.status, 200);
  const sq = await api(srv, 'POST', '/admin/sql', { sql: 'SELECT sender, to_uid, room, data FROM messages WHERE seq = ?', params: [r.json.seq] }, ADMIN_KEY);
  assert.deepEqual(sq.json.rows, [['system', 'pub-carol', null, '"while away"']]);
  const carol = await connect(srv, 'pub-carol');
  m = await carol.next('message');
  assert.equal(m.seq, r.json.seq);
  assert.equal(m.data, 'while away');
  await Promise.all([bob.close(), eve.close(), carol.close()]);
});

test('bad bodies and fields answer 400 {"error"}', async () => {
  const raw = ['', '{', '{"to":"a",', 'nul', '[]', '"x"', '1', 'null', 'true', '[{"to":"a","data":1}]',
    '{"to":"a","data":1,"to":"b"}', '\u00ff\u00fe'];
  for (const p of ['/api/publish', '/api/tokens', '/api/tasks']) {
    for (const b of raw) {
      const r = await api(srv, 'POST', p, b);
      assert.equal(r.status, 400, `${p} ${JSON.stringify(b)}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.error, 'string');
    }
  }
  const bad = [
    {}, { data: 1 }, { to: 'a' }, { to: 'a', room: 'r', data: 1 }, { to: 5, data: 1 }, { room: [], data: 1 },
    { to: '', data: 1 }, { room: '', data: 1 }, { to: null, data: 1 }, { to: 'a\u0001', data: 1 },
    { to: 'a\u0000b', data: 1 }, { room: 'r\u0000x', data: 1 }, { to: 'a', data: 1, from: 5 },
    { to: 'a', data: 1, from: '' }, { to: 'a', data: 1, from: 'x\u0000y' }, { to: 'x'.repeat(129), data: 1 },
    { room: 'r'.repeat(129), data: 1 }, { to: { uid: 'a' }, data: 1 },
  ];
  for (const b of bad) {
    const r = await api(srv, 'POST', '/api/publish', b);
    assert.equal(r.status, 400, `${JSON.stringify(b)}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json?.error, 'string');
  }
  // nothing of the above was stored
  const n = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE to_uid IN ('a', 'b') OR room = 'r' OR to_uid LIKE 'a%'" }, ADMIN_KEY);
  assert.deepEqual(n.json.rows, [[0]]);
});

test('a body over --max-http-body is refused and the server keeps working', async () => {
  const big = JSON.stringify({ to: 'big', data: 'x'.repeat(10000) });
  let r = await api(srv, 'POST', '/api/publish', big);
  assert.ok(r.status === 413 || r.status === 400, String(r.status));
  // chunked, without a length up front
  const chunk = 'x'.repeat(3000);
  const req = 'POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + API_KEY +
    '\r\nTransfer-Encoding: chunked\r\n\r\n' +
    [`{"to":"big","data":"`, chunk, chunk, `"}`].map((c) => c.length.toString(16) + '\r\n' + c + '\r\n').join('') + '0\r\n\r\n';
  const x = await httpExchange(srv.httpPort, req, 3000);
  assert.ok(x.status === 413 || x.status === 400, x.text.slice(0, 200));
  // a lying Content-Length larger than the limit
  const y = await httpExchange(srv.httpPort, 'POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{', 3000);
  assert.ok(y.status === 413 || y.status === 400, y.text.slice(0, 200));
  // a body just under the limit is fine
  r = await api(srv, 'POST', '/api/publish', { to: 'big', data: 'y'.repeat(3000) });
  assert.equal(r.status, 200, r.text);
  assert.equal((await api(srv, 'GET', '/healthz', undefined, null)).status, 200);
  const n = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE to_uid = 'big'" }, ADMIN_KEY);
  assert.deepEqual(n.json.rows, [[1]]);
});

test('unknown paths are 404, wrong methods 405, always JSON under /api and /admin', async () => {
  for (const p of ['/api/', '/api/token', '/api/tokens/x', '/api/publish/x', '/api/tasksx', '/api/tasks/a/b', '/api/tasks/a/progress/x']) {
    const r = await api(srv, 'GET', p);
    assert.ok(r.status === 404 || r.status === 405, `${p}: ${r.status}`);
    assert.equal(typeof r.json?.error, 'string', p);
  }
  for (const p of ['/admin/connection', '/admin/sql/x']) {
    const r = await api(srv, 'GET', p, undefined, ADMIN_KEY);
    assert.equal(r.status, 404, `${p}: ${r.status}`);
    assert.equal(typeof r.json?.error, 'string', p);
  }
  // not normalised by the server: no route behind a dot segment
  for (const p of ['/admin/x/../sql', '/admin/./sql', '/api/x/../tokens', '/api//tokens']) {
    const [k, m] = p.startsWith('/api') ? [API_KEY, 'POST'] : [ADMIN_KEY, 'POST'];
    const r = await httpExchange(srv.httpPort, `${m} ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k}\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{"sql":"SELECT 1"}`);
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
  }
  const wrong = [
    ['GET', '/api/tokens', API_KEY], ['GET', '/api/publish', API_KEY], ['PUT', '/api/publish', API_KEY],
    ['DELETE', '/api/tokens', API_KEY], ['PATCH', '/api/tasks', API_KEY], ['GET', '/api/tasks', API_KEY],
    ['POST', '/api/tasks/x', API_KEY], ['GET', '/api/tasks/x/progress', API_KEY],
    ['GET', '/admin/sql', ADMIN_KEY], ['POST', '/admin/connections', ADMIN_KEY], ['DELETE', '/admin/connections', ADMIN_KEY],
    ['PUT', '/healthz', null], ['POST', '/metrics', null], ['DELETE', '/', null], ['OPTIONS', '/api/tokens', API_KEY],
  ];
  for (const [m, p, k] of wrong) {
    const r = await api(srv, m, p, undefined, k);
    assert.ok(r.status === 405, `${m} ${p}: ${r.status} ${r.text.slice(0, 100)}`);
    assert.equal(typeof r.json?.error, 'string', `${m} ${p}`);
    assert.ok(r.headers.get('allow'), `${m} ${p}: Allow header`);
  }
  // without the key a wrong method is still 401 (no probing of routes)
  assert.equal((await api(srv, 'PUT', '/api/publish', undefined, null)).status, 401);
});

test('GET /healthz: 200, then 503 while another process holds the write lock, then 200', async () => {
  let r = await api(srv, 'GET', '/healthz', undefined, null);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok' });
  // HEAD works too
  assert.equal((await fetch(srv.http + '/healthz', { method: 'HEAD' })).status, 200);

  // The sqlite3 shell takes the write lock and keeps it until told.
  const ws = await connect(srv, 'hz');
  const sh = spawn('sqlite3', [srv.db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  sh.stdout.on('data', (d) => { out += d; });
  sh.stdin.write(".timeout 5000\nBEGIN EXCLUSIVE;\nINSERT OR REPLACE INTO meta VALUES ('lock-test', '1');\nSELECT 'locked';\n");
  try {
    for (let i = 0; i < 100 && !out.includes('locked'); i++) await sleep(50);
    assert.ok(out.includes('locked'), 'sqlite3 did not take the lock');
    const t0 = Date.now();
    r = await api(srv, 'GET', '/healthz', undefined, null);
    const took = Date.now() - t0;
    assert.equal(r.status, 503, r.text);
    assert.equal(typeof r.json.status, 'string');
    assert.notEqual(r.json.status, 'ok');
    // The probe itself gives up fast; other writers in the loop may still
    // wait for the lock (the store's busy timeout) before it runs.
    console.log(`# healthz under a foreign write lock answered in ${took} ms`);
    // The loop keeps serving WebSocket pings.
    const p0 = Date.now();
    ws.send({ type: 'ping' });
    await ws.next('pong', 8000);
    console.log(`# ping under a foreign write lock answered in ${Date.now() - p0} ms`);
  } finally {
    sh.stdin.end('ROLLBACK;\n.quit\n');
    await new Promise((res) => sh.on('exit', res));
  }
  let ok = false;
  for (let i = 0; i < 40 && !ok; i++) {
    r = await api(srv, 'GET', '/healthz', undefined, null);
    ok = r.status === 200;
    if (!ok) await sleep(100);
  }
  assert.ok(ok, 'healthz did not recover');
  assert.deepEqual(r.json, { status: 'ok' });
  // and messages are stored again
  r = await api(srv, 'POST', '/api/publish', { to: 'hz', data: 'after' });
  assert.equal(r.status, 200, r.text);
  assert.equal((await ws.next('message')).data, 'after');
  await ws.close();
});

// The broker's own writes wait at most the store's short busy timeout on the
// loop thread when another process holds the write lock, and the retention
// pass opens no transaction when there is nothing to prune.
test('the loop is not stalled by a foreign write lock', async () => {
  const ws = await connect(srv, 'stall');
  const sh = spawn('sqlite3', [srv.db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  sh.stdout.on('data', (d) => { out += d; });
  sh.stdin.write(".timeout 5000\nBEGIN EXCLUSIVE;\nINSERT OR REPLACE INTO meta VALUES ('lock-test', '2');\nSELECT 'locked';\n");
  let worst = 0;
  try {
    for (let i = 0; i < 100 && !out.includes('locked'); i++) await sleep(50);
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      const p0 = Date.now();
      ws.send({ type: 'ping' });
      await ws.next('pong', 8000);
      worst = Math.max(worst, Date.now() - p0);
      await sleep(100);
    }
  } finally {
    sh.stdin.end('ROLLBACK;\n.quit\n');
    await new Promise((res) => sh.on('exit', res));
    await ws.close();
  }
  assert.ok(worst < 500, `a ping waited ${worst} ms`);
});

test('publish: data larger than --max-message is 413, and nothing is stored', async () => {
  const s2 = await startServer({ args: ['--max-message', '1000'] });
  try {
    let r = await api(s2, 'POST', '/api/publish', { to: 'big', data: 'x'.repeat(2000) });
    assert.equal(r.status, 413);
    assert.ok(r.json.error);
    r = await api(s2, 'POST', '/api/publish', { to: 'big', data: 'x'.repeat(500) });
    assert.equal(r.status, 200);
    assert.equal(r.json.seq, 1);
  } finally { await s2.cleanup(); }
});

// RFC 9112 §6.3: a request with two Content-Length headers has no
// trustworthy length (libevent reads the first): 400 and the connection
// closed, so no bytes of it are read as another request.
test('Content-Length given twice is 400 and closes the connection', async () => {
  const smuggled = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  const body = '{"to":"cl","data":1}' + smuggled;
  for (const [a, b] of [[20, body.length], [body.length, 20], [20, 20]]) {
    const r = await httpExchange(srv.httpPort, 'POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + API_KEY +
      `\r\nContent-Type: application/json\r\nContent-Length: ${a}\r\nContent-Length: ${b}\r\n\r\n` + body, 3000);
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.ok(r.closed, 'closed after the 400');
    assert.equal((r.text.match(/HTTP\/1\.1 /g) || []).length, 1, 'one answer: ' + r.text);
  }
  const n = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE to_uid = 'cl'" }, ADMIN_KEY);
  assert.deepEqual(n.json.rows, [[0]]);
});
