// The connect hook (contract §10): a token that is neither an opaque token
// of the broker nor a valid JWT goes to --auth-url as
// POST {"token","uid"?,"remote","origin"?}; 200 {"uid","role"?,"expires_at"?}
// admits, any other status is 401, no answer within 2 s or a refused
// connection is 503; 200s are cached for --auth-cache seconds; the token is
// never logged. The backend is a small Node HTTP server started here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  startServer, token, Client, httpExchange, upgradeRequest, needTool, sleep, freePort,
} from './lib.mjs';

const noOpenssl = needTool('openssl', 'makes the certificate of the https backend');

// Every token used here carries this marker, so the log can be searched
// for any of them.
const MARK = 'SeCrEtTok';
const tk = (name) => `${MARK}-${name}-${Math.random().toString(36).slice(2)}`;

// The backend: answers by the token's name (the part after the marker).
// hits[token] counts requests; bodies keeps every request body.
function startBackend(opts = {}) {
  const host = opts.host || '127.0.0.1';
  const hits = {};
  const bodies = [];
  const held = [];
  const handler = (req, res) => {
    let data = '';
    req.on('data', (d) => { data += d; });
    req.on('end', () => {
      let body = {};
      try { body = JSON.parse(data); } catch {}
      bodies.push({ body, headers: req.headers, method: req.method, url: req.url });
      const t = String(body.token || '');
      hits[t] = (hits[t] || 0) + 1;
      const name = t.split('-')[1];
      const json = (status, o) => { res.writeHead(status, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(o)); };
      switch (name) {
        case 'alice': return json(200, { uid: 'alice' });
        case 'prod': return json(200, { uid: 'pat', role: 'producer' });
        case 'deny403': return json(403, { error: 'no' });
        case 'deny401': return json(401, { error: 'no' });
        case 'err500': return json(500, { error: 'oops' });
        case 'badrole': return json(200, { uid: 'mallory', role: 'superuser' });
        case 'garbage': res.writeHead(200); return res.end('not json');
        case 'huge': return json(200, { uid: 'big', pad: 'x'.repeat(100000) });
        case 'expsoon': return json(200, { uid: 'eve', expires_at: Date.now() + 1500 });
        case 'exppast': return json(200, { uid: 'eve', expires_at: Date.now() - 1000 });
        case 'chunked': // no Content-Length: a chunked body, in two parts
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.write('{"uid":');
          return setTimeout(() => res.end('"chunky"}'), 50);
        case 'later': return setTimeout(() => json(200, { uid: 'carol' }), 400);
        case 'slow': held.push(res); return setTimeout(() => { if (!res.writableEnded) json(200, { uid: 'late' }); }, 3000);
        default: return json(404, {});
      }
    });
  };
  const server = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = server.address().port;
      resolve({
        port, hits, bodies, server,
        url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/auth?app=1`,
        close: () => new Promise((r) => { for (const h of held) h.destroy(); server.closeAllConnections?.(); server.close(r); }),
      });
    });
  });
}

// Open a WebSocket; resolves { ok, status, client }.
async function tryConnect(srv, query, opts = {}) {
  const c = new Client(srv.url('?' + new URLSearchParams(query)), opts);
  try {
    await c.opened;
    return { ok: true, client: c, hello: await c.next('connect') };
  } catch (e) {
    return { ok: false, status: e.status, client: c };
  }
}

// The broker's stderr reaches us a little after its answers.
async function logMatch(srv, re) {
  for (let i = 0; i < 40 && !re.test(srv.logs); i++) await sleep(50);
  assert.match(srv.logs, re);
}

let backend, srv;
const clients = [];
before(async () => {
  backend = await startBackend();
  srv = await startServer({ args: ['--auth-url', backend.url, '--auth-cache', '2', '--log-level', 'debug', '--origin', '*'] });
});
after(async () => {
  for (const c of clients) c.terminate();
  try {
    if (srv) {
      await srv.cleanup();
      // Not one token in the log, at debug level, with all the cases run.
      assert.ok(!srv.logs.includes(MARK), 'a token was logged:\n' + srv.logs.split('\n').filter((l) => l.includes(MARK)).join('\n'));
    }
  } finally {
    if (backend) await backend.close();
  }
});

test('a 200 admits with the backend\'s uid; the backend gets token, remote, uid and origin', async () => {
  const t = tk('alice');
  const r = await tryConnect(srv, { token: t, uid: 'alice' }, { wsOptions: { origin: 'https://app.example' } });
  assert.ok(r.ok, 'refused: ' + r.status);
  clients.push(r.client);
  assert.equal(r.hello.uid, 'alice');
  const req = backend.bodies.find((b) => b.body.token === t);
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/auth?app=1');
  assert.match(req.headers['content-type'], /application\/json/);
  assert.deepEqual(req.body, { token: t, uid: 'alice', remote: '127.0.0.1', origin: 'https://app.example' });
  // Without uid and Origin, neither is sent; the Bearer header works too.
  const t2 = tk('alice');
  const r2 = await tryConnect(srv, {}, { headers: { Authorization: 'Bearer ' + t2 } });
  assert.ok(r2.ok);
  clients.push(r2.client);
  assert.deepEqual(backend.bodies.find((b) => b.body.token === t2).body, { token: t2, remote: '127.0.0.1' });
  // As the only subprotocol value: admitted, and echoed.
  const t3 = tk('alice');
  const r3 = await tryConnect(srv, {}, { protocols: [t3] });
  assert.ok(r3.ok);
  clients.push(r3.client);
  assert.equal(r3.client.ws.protocol, t3);
  // A chunked answer (no Content-Length).
  const r4 = await tryConnect(srv, { token: tk('chunked') });
  assert.ok(r4.ok);
  assert.equal(r4.hello.uid, 'chunky');
  r4.client.terminate();
});

test('a host name in --auth-url is resolved (evdns) and used', async () => {
  // Listening on :: takes IPv4 too, so "localhost" works whichever
  // address the resolver gives first; without IPv6, 127.0.0.1.
  const be = await startBackend({ host: '::' }).catch(() => startBackend());
  const s2 = await startServer({ args: ['--auth-url', `http://localhost:${be.port}/auth`] });
  try {
    const r = await tryConnect(s2, { token: tk('alice') });
    assert.ok(r.ok, 'refused: ' + r.status + '\n' + s2.logs);
    assert.equal(r.hello.uid, 'alice');
    r.client.terminate();
    assert.equal(be.bodies[0].headers.host, `localhost:${be.port}`);
  } finally {
    await s2.cleanup();
    await be.close();
  }
});

test('the role is honoured: a producer from the backend creates a task, a user may not', async () => {
  const p = await tryConnect(srv, { token: tk('prod') });
  assert.ok(p.ok);
  clients.push(p.client);
  assert.equal(p.hello.uid, 'pat');
  p.client.send({ type: 'task.create', id: 'hook1', title: 'Build', steps: ['a'], ref: 'c' });
  const created = await p.client.next('task');
  assert.equal(created.task.id, 'hook1');
  const u = await tryConnect(srv, { token: tk('alice') });
  assert.ok(u.ok);
  clients.push(u.client);
  u.client.send({ type: 'task.create', title: 'x', ref: 'u' });
  assert.equal((await u.client.next('error')).code, 'forbidden');
});

test('any other status is 401; a broken 200 is 503; a uid that differs is 403', async () => {
  for (const name of ['deny403', 'deny401', 'err500', 'unknown', 'exppast']) {
    const r = await tryConnect(srv, { token: tk(name) });
    assert.equal(r.status, 401, name);
  }
  for (const name of ['badrole', 'garbage', 'huge']) {
    const r = await tryConnect(srv, { token: tk(name) });
    assert.equal(r.status, 503, name);
  }
  const r = await tryConnect(srv, { token: tk('alice'), uid: 'bob' });
  assert.equal(r.status, 403);
  // A token of the broker's own is judged by the broker, never sent.
  const own = token(srv.db, 'dave');
  const o = await tryConnect(srv, { token: own });
  assert.ok(o.ok);
  clients.push(o.client);
  execFileSync(process.env.BASESTATION_BIN || path.resolve(import.meta.dirname, '../../build/basestation'), ['token', 'revoke', own, '--db', srv.db]);
  await o.client.closed;
  const revoked = await tryConnect(srv, { token: own });
  assert.equal(revoked.status, 401);
  assert.ok(!backend.bodies.some((b) => b.body.token === own), 'an opaque token of the broker went to the backend');
});

test('a 200 is reused for --auth-cache seconds, then asked again; checks in flight share one request', async () => {
  const t = tk('alice');
  for (let i = 0; i < 2; i++) {
    const r = await tryConnect(srv, { token: t });
    assert.ok(r.ok);
    r.client.terminate();
  }
  assert.equal(backend.hits[t], 1);
  // A refusal is not cached.
  const d = tk('deny403');
  for (let i = 0; i < 2; i++) assert.equal((await tryConnect(srv, { token: d })).status, 401);
  assert.equal(backend.hits[d], 2);
  await sleep(2300); // --auth-cache 2
  const r = await tryConnect(srv, { token: t });
  assert.ok(r.ok);
  r.client.terminate();
  assert.equal(backend.hits[t], 2);
  // Three at once while the backend takes 400 ms: one request.
  const l = tk('later');
  const all = await Promise.all([0, 1, 2].map(() => tryConnect(srv, { token: l })));
  for (const x of all) { assert.ok(x.ok); assert.equal(x.hello.uid, 'carol'); x.client.terminate(); }
  assert.equal(backend.hits[l], 1);
});

test('expires_at is honoured: the connection is closed with 4001 "token expired"', async () => {
  const r = await tryConnect(srv, { token: tk('expsoon') });
  assert.ok(r.ok);
  clients.push(r.client);
  const closed = await Promise.race([r.client.closed, sleep(5000).then(() => null)]);
  assert.deepEqual(closed, { code: 4001, reason: 'token expired' });
});

test('a backend that says nothing within 2 s is a 503; the loop keeps serving meanwhile', async () => {
  const t = tk('slow');
  let answered = null;
  const slow = httpExchange(srv.wsPort, upgradeRequest(srv.wsPort, { query: '?token=' + t }), 8000)
    .then((x) => { answered = x; return x; });
  await sleep(300);
  assert.equal(backend.hits[t], 1, 'the backend was not asked');
  // While the check waits: /healthz, and a WebSocket with a broker token.
  const h = await fetch(srv.http + '/healthz');
  assert.equal(h.status, 200);
  const other = await tryConnect(srv, { token: token(srv.db, 'frank') });
  assert.ok(other.ok);
  other.client.terminate();
  assert.equal(answered, null, 'the slow check was answered before the others');
  const x = await slow;
  assert.equal(x.status, 503);
  assert.ok(x.closed);
});

test('a client that leaves while its check waits, and one cut by the handshake deadline', async () => {
  const s2 = await startServer({ args: ['--auth-url', backend.url, '--handshake-timeout', '1'] });
  try {
    const t = tk('slow');
    // Gone at once: the broker notices at the answer (it does not read).
    const gone = net.connect(s2.wsPort, '127.0.0.1', () => { gone.write(upgradeRequest(s2.wsPort, { query: '?token=' + t })); setTimeout(() => gone.destroy(), 100); });
    gone.on('error', () => {});
    // Still there, but the 1 s deadline drops it before the 2 s answer.
    const cut = await httpExchange(s2.wsPort, upgradeRequest(s2.wsPort, { query: '?token=' + tk('slow') }), 5000);
    assert.ok(cut.closed);
    assert.equal(cut.status, null);
    await sleep(2500); // both requests time out with nobody waiting
    const h = await fetch(s2.http + '/healthz');
    assert.equal(h.status, 200);
    // And one still waiting when the broker stops.
    const pending = httpExchange(s2.wsPort, upgradeRequest(s2.wsPort, { query: '?token=' + tk('slow') }), 5000);
    await sleep(300);
    await s2.cleanup(); // exit 0 (under ASan: no error, no leak)
    await pending;
  } finally {
    await s2.stop();
  }
});

test('more checks in flight than the cap: 503 at once for the rest', async () => {
  const s2 = await startServer({ args: ['--auth-url', backend.url] });
  try {
    // 64 slow checks hold every slot (AUTH_HOOK_MAX_INFLIGHT).
    const slow = Array.from({ length: 64 }, () => tk('slow'));
    const waits = slow.map((t) => httpExchange(s2.wsPort, upgradeRequest(s2.wsPort, { query: '?token=' + t }), 8000));
    const t0 = Date.now();
    while (slow.some((t) => !backend.hits[t]) && Date.now() - t0 < 5000) await sleep(50);
    assert.ok(slow.every((t) => backend.hits[t] === 1), 'not every slow check reached the backend');
    let first = null;
    const over = httpExchange(s2.wsPort, upgradeRequest(s2.wsPort, { query: '?token=' + tk('alice') }), 8000).then((x) => { first ??= 'over'; return x; });
    const held = Promise.all(waits).then((x) => { first ??= 'held'; return x; });
    const o = await over;
    assert.equal(o.status, 503);
    assert.equal(first, 'over', 'the check over the cap waited for a slot');
    for (const w of await held) assert.equal(w.status, 503);
    await logMatch(s2, /event=auth\.hook\.busy/);
  } finally {
    await s2.cleanup();
  }
});

test('a backend that refuses connections is a 503, and so is a broken URL at start', async () => {
  const port = await freePort();
  const s2 = await startServer({ args: ['--auth-url', `http://127.0.0.1:${port}/auth`] });
  try {
    const r = await tryConnect(s2, { token: tk('alice') });
    assert.equal(r.status, 503);
    await logMatch(s2, /event=auth\.hook\.error /);
  } finally {
    await s2.cleanup();
  }
  for (const bad of ['ftp://x/y', 'http://', 'http://user@127.0.0.1/', 'nonsense']) {
    let err = null;
    try {
      execFileSync(process.env.BASESTATION_BIN || path.resolve(import.meta.dirname, '../../build/basestation'), ['serve', '--auth-url', bad, '--listen', '127.0.0.1:0', '--http', 'off', '--db', ':memory:'], { stdio: 'pipe', timeout: 5000 });
    } catch (e) { err = e; }
    assert.equal(err?.status, 2, bad);
    assert.match(err.stderr.toString(), /invalid --auth-url/);
  }
});

test('https: a backend whose certificate is trusted admits; an untrusted one is a 503', { skip: noOpenssl }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-hook-'));
  let tlsBackend, s1, s2;
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    const cert = readFileSync(path.join(dir, 'cert.pem'));
    tlsBackend = await startBackend({ tls: { key: readFileSync(path.join(dir, 'key.pem')), cert } });
    s1 = await startServer({ args: ['--auth-url', tlsBackend.url], env: { SSL_CERT_FILE: path.join(dir, 'cert.pem') } });
    const r = await tryConnect(s1, { token: tk('alice') });
    assert.ok(r.ok, 'refused: ' + r.status);
    assert.equal(r.hello.uid, 'alice');
    r.client.terminate();
    s2 = await startServer({ args: ['--auth-url', tlsBackend.url], env: { SSL_CERT_FILE: '/nonexistent' } });
    const u = await tryConnect(s2, { token: tk('alice') });
    assert.equal(u.status, 503);
    await logMatch(s2, /event=auth\.hook\.error .*reason="?tls: certificate verify failed/);
  } finally {
    if (s1) await s1.cleanup();
    if (s2) await s2.cleanup();
    if (tlsBackend) await tlsBackend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
