// The broker behind Debian's real nginx, configured FROM the shipped
// deploy/nginx/basestation.conf (only the ports, the listen address and
// proxy_read_timeout are changed, the last one lowered to 3 s so that the
// test is short). What the seed's pitfall was: nginx closed idle WebSockets
// after proxy_read_timeout (60 s). What must hold here:
//   - with heartbeats (--heartbeat 1) a connection idle for longer than the
//     read timeout stays open, and still answers a ping;
//   - without heartbeats (--heartbeat 0) nginx drops it at its timeout;
//   - the broker logs the address nginx saw, not a client's X-Forwarded-For;
//   - /healthz, pages and the API pass through; /admin, /api/ and /metrics
//     are refused to addresses the shipped allow list does not name;
//   - the commented TLS lines, once uncommented, serve wss://.
// Client addresses: all of 127.0.0.0/8 is loopback on Linux, so a client
// bound to 127.0.0.3 is a "remote" client that nginx tells apart from the
// proxy itself (127.0.0.1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { startServer, token, Client, sleep, needTool, API_KEY, ADMIN_KEY } from './lib.mjs';
import { MAP, READ_TIMEOUT_S, active, within, nginxes, startNginx, nginxMissing } from './nginx-lib.mjs';

const CLIENT_IP = '127.0.0.3'; // a client that is not the proxy
// Missing nginx: these tests skip, except under CI=true, where it fails.
const skip = nginxMissing
  || needTool('openssl', 'Debian package openssl: the certificate of the TLS test');

// A plain HTTP request from a chosen source address.
function request(port, p, { method = 'GET', headers = {}, body, from = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, headers, localAddress: from }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body !== undefined) req.end(typeof body === 'string' ? body : JSON.stringify(body));
    else req.end();
  });
}

async function open(url, opts = {}) {
  const c = new Client(url, opts);
  await c.opened;
  c.hello = await c.next('connect');
  return c;
}

// The remote= of the broker's conn.open line for uid (waits a little: the
// log is a pipe, the WebSocket another).
async function loggedRemote(srv, uid) {
  const re = new RegExp(`event=conn\\.open .*uid=${uid} .*remote=(\\S+)`);
  for (let i = 0; i < 100; i++) {
    const m = re.exec(srv.logs);
    if (m) return m[1];
    await sleep(20);
  }
  throw new Error(`no conn.open for ${uid} in:\n` + srv.logs.slice(-2000));
}

// ---- fixtures ---------------------------------------------------------------

let hb;    // heartbeat 1 s, trusts nginx
let hbNg;
let quiet; // no heartbeat, no idle timeout, trusts nobody
let quietNg;

before(async () => {
  if (skip) return;
  hb = await startServer({ args: ['--heartbeat', '1', '--idle-timeout', '5', '--trusted-proxy', '127.0.0.1'] });
  hbNg = await startNginx(hb);
  quiet = await startServer({ args: ['--heartbeat', '0', '--idle-timeout', '0'] });
  quietNg = await startNginx(quiet);
});

after(async () => {
  await Promise.all([...nginxes].map((n) => n.stop()));
  if (hb) await hb.cleanup();
  if (quiet) await quiet.cleanup();
});

// ---- the shipped file itself ------------------------------------------------

test('shipped conf: upgrade headers, HTTP/1.1, no buffering, read timeout well above the heartbeat', { skip: false }, () => {
  const ws = /location = \/ws \{([^}]*)\}/.exec(active);
  assert.ok(ws, 'a location = /ws block');
  const body = ws[1];
  assert.match(body, /proxy_pass http:\/\/127\.0\.0\.1:8080;/);
  assert.match(body, /proxy_http_version 1\.1;/);
  assert.match(body, /proxy_set_header Upgrade\s+\$http_upgrade;/);
  assert.match(body, /proxy_set_header Connection\s+\$connection_upgrade;/);
  assert.match(body, /proxy_set_header X-Forwarded-For\s+\$proxy_add_x_forwarded_for;/);
  assert.match(body, /proxy_set_header X-Real-IP\s+\$remote_addr;/);
  assert.match(body, /proxy_set_header Host\s+\$host;/);
  assert.match(body, /proxy_buffering off;/);
  assert.match(body, /proxy_send_timeout \d+s;/);
  const rt = Number(/proxy_read_timeout (\d+)s;/.exec(body)[1]);
  // The broker's default heartbeat is 25 s: leave room for missed pings.
  assert.ok(rt >= 4 * 25, `proxy_read_timeout ${rt}s is not comfortably above the 25 s heartbeat`);
  assert.match(fs.readFileSync(MAP, 'utf8'), /^map \$http_upgrade \$connection_upgrade \{/m);
  for (const loc of ['location / ', 'location /client/ ', 'location = /healthz ', 'location /admin ', 'location /api/ ', 'location = /metrics ']) {
    const i = active.indexOf(loc);
    assert.ok(i >= 0, `missing ${loc}`);
    assert.match(active.slice(i, active.indexOf('}', i)), /proxy_pass http:\/\/127\.0\.0\.1:8081;/, loc);
  }
});

test('SSE through nginx: events arrive unbuffered, heartbeat comments keep the stream past proxy_read_timeout', { skip }, async () => {
  const sse = /location = \/sse \{([^}]*)\}/.exec(active);
  assert.ok(sse, 'a location = /sse block');
  assert.match(sse[1], /proxy_buffering off;/);
  const t = token(hb.db, 'sse-ng');
  const sender = await open(`ws://127.0.0.1:${hb.wsPort}/ws?token=${token(hb.db, 'sse-sender')}`);
  let text = '';
  let res;
  const req = http.request({ host: '127.0.0.1', port: hbNg.port, path: `/sse?token=${t}`, headers: { Accept: 'text/event-stream' } }, (r) => {
    res = r;
    r.setEncoding('utf8');
    r.on('data', (d) => { text += d; });
  });
  req.on('error', () => {});
  req.end();
  try {
    for (let i = 0; i < 100 && !res; i++) await sleep(50);
    assert.equal(res?.statusCode, 200);
    assert.match(res.headers['content-type'], /^text\/event-stream/);
    sender.send({ type: 'send', to: 'sse-ng', data: 'through nginx' });
    const ack = await sender.next('ack');
    for (let i = 0; i < 100 && !text.includes(`id: ${ack.seq}\n`); i++) await sleep(50);
    assert.match(text, new RegExp(`event: message\nid: ${ack.seq}\ndata: .*"through nginx"`));
    await sleep((READ_TIMEOUT_S + 2) * 1000); // past nginx's read timeout
    assert.ok(!res.complete && !res.destroyed, 'stream closed while idle:\n' + hbNg.logs);
    assert.ok((text.match(/^: /gm) || []).length >= READ_TIMEOUT_S, 'heartbeat comments: ' + JSON.stringify(text));
  } finally {
    req.destroy();
    await sender.close();
  }
});

// ---- the seed's pitfall, and its cure ----------------------------------------

test('with heartbeats, a connection idle past proxy_read_timeout stays open and answers a ping', { skip }, async () => {
  const c = await open(hbNg.url('?token=' + token(hb.db, 'idle-hb')));
  assert.equal(c.hello.heartbeat, 1);
  let pings = 0;
  c.ws.on('ping', () => { pings++; });
  let closed = null;
  c.closed.then((x) => { closed = x; });
  await sleep(7000); // > 2 × nginx's 3 s read timeout; the client sends nothing itself
  assert.equal(closed, null, 'closed while idle: ' + JSON.stringify(closed) + '\n' + hbNg.logs);
  assert.equal(c.ws.readyState, WebSocket.OPEN);
  assert.ok(pings >= 5, `only ${pings} server pings in 7 s`);
  c.send({ type: 'ping', ref: 'after-idle' });
  assert.deepEqual(await c.next('pong'), { type: 'pong', ref: 'after-idle' });
  await c.close();
});

test('without heartbeats, nginx drops the idle connection at proxy_read_timeout (the seed pitfall)', { skip }, async () => {
  const tok = token(quiet.db, 'idle-quiet');
  const viaNginx = await open(quietNg.url('?token=' + tok));
  const direct = await open(quiet.url('?token=' + tok));
  assert.equal(viaNginx.hello.heartbeat, 0);
  const t0 = Date.now();
  const closed = await within(viaNginx.closed, 12000);
  const took = Date.now() - t0;
  assert.ok(closed, 'the connection through nginx was not dropped within 12 s');
  assert.equal(closed.code, 1006, 'nginx closes the TCP connection without a close frame');
  assert.ok(took >= (READ_TIMEOUT_S - 0.5) * 1000 && took <= (READ_TIMEOUT_S + 3) * 1000,
    `dropped after ${took} ms, expected about ${READ_TIMEOUT_S} s`);
  assert.match(quietNg.logs, /upstream timed out .*while proxying upgraded connection/);
  // The broker did not drop anything: the direct connection is still fine.
  assert.equal(direct.ws.readyState, WebSocket.OPEN);
  direct.send({ type: 'ping', ref: 'direct' });
  assert.deepEqual(await direct.next('pong'), { type: 'pong', ref: 'direct' });
  await direct.close();
});

// ---- client addresses ----------------------------------------------------------

test('trusted proxy: the broker logs the address nginx saw, never the client-sent X-Forwarded-For', { skip }, async () => {
  // Control: from a trusted peer the header IS honoured (so the next check
  // is not passing by accident).
  const ctl = await open(hb.url('?token=' + token(hb.db, 'xff-control')), { headers: { 'X-Forwarded-For': '6.6.6.6' } });
  assert.equal(await loggedRemote(hb, 'xff-control'), '6.6.6.6');
  await ctl.close();

  // Through nginx from 127.0.0.3 with a spoofed header: nginx appends the
  // address it saw ("6.6.6.6, 127.0.0.3"), the broker takes the last entry.
  const c = await open(hbNg.url('?token=' + token(hb.db, 'xff-nginx')),
    { headers: { 'X-Forwarded-For': '6.6.6.6' }, wsOptions: { localAddress: CLIENT_IP } });
  assert.equal(await loggedRemote(hb, 'xff-nginx'), CLIENT_IP);
  assert.doesNotMatch(hb.logs, /uid=xff-nginx .*remote=6\.6\.6\.6/);
  const conns = await request(hb.httpPort, '/admin/connections', { headers: { Authorization: 'Bearer ' + ADMIN_KEY } });
  assert.equal(conns.status, 200);
  assert.equal(conns.json.connections.find((x) => x.uid === 'xff-nginx').remote, CLIENT_IP);
  await c.close();
});

test('untrusted peer: X-Forwarded-For is ignored, the socket address is logged', { skip }, async () => {
  const d = await open(quiet.url('?token=' + token(quiet.db, 'xff-direct')),
    { headers: { 'X-Forwarded-For': '6.6.6.6' }, wsOptions: { localAddress: '127.0.0.5' } });
  assert.equal(await loggedRemote(quiet, 'xff-direct'), '127.0.0.5');
  await d.close();
  // Behind nginx without --trusted-proxy every client looks like the proxy:
  // that is why the deployment needs --trusted-proxy 127.0.0.1.
  const n = await open(quietNg.url('?token=' + token(quiet.db, 'xff-untrusted-nginx')),
    { headers: { 'X-Forwarded-For': '6.6.6.6' }, wsOptions: { localAddress: CLIENT_IP } });
  assert.equal(await loggedRemote(quiet, 'xff-untrusted-nginx'), '127.0.0.1');
  await n.close();
});

// ---- HTTP through nginx ----------------------------------------------------------

test('HTTP through nginx: /healthz, /, /api/publish reach the broker; private paths are refused to others', { skip }, async () => {
  const h = await request(hbNg.port, '/healthz', { from: CLIENT_IP });
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok' });
  const page = await request(hbNg.port, '/', { from: CLIENT_IP });
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /text\/html/);

  // The API from an allowed address (127.0.0.1), to a client connected
  // through nginx as well.
  const c = await open(hbNg.url('?token=' + token(hb.db, 'via-api')));
  const pub = await request(hbNg.port, '/api/publish', {
    method: 'POST', body: { to: 'via-api', data: { hello: 'nginx' } },
    headers: { Authorization: 'Bearer ' + API_KEY, 'Content-Type': 'application/json' },
  });
  assert.equal(pub.status, 200, pub.text);
  const msg = await c.next('message');
  assert.equal(msg.seq, pub.json.seq);
  assert.deepEqual(msg.data, { hello: 'nginx' });
  await c.close();

  const adm = await request(hbNg.port, '/admin/connections', { headers: { Authorization: 'Bearer ' + ADMIN_KEY } });
  assert.equal(adm.status, 200);
  const met = await request(hbNg.port, '/metrics');
  assert.equal(met.status, 200);

  // The same from 127.0.0.3: nginx's allow/deny answers 403, key or not.
  for (const p of ['/admin', '/admin/connections', '/api/publish', '/metrics']) {
    const r = await request(hbNg.port, p, { from: CLIENT_IP, headers: { Authorization: 'Bearer ' + ADMIN_KEY } });
    assert.equal(r.status, 403, p);
  }
});

test('the commented TLS lines, uncommented, serve wss:// with the same behaviour', { skip }, async () => {
  const ng = await startNginx(hb, { tls: true });
  try {
    const c = await open(`wss://127.0.0.1:${ng.tls.port}/ws?token=` + token(hb.db, 'tls-user'),
      { headers: { 'X-Forwarded-For': '6.6.6.6' }, wsOptions: { rejectUnauthorized: false, localAddress: CLIENT_IP } });
    assert.equal(c.hello.uid, 'tls-user');
    assert.equal(await loggedRemote(hb, 'tls-user'), CLIENT_IP);
    c.send({ type: 'ping', ref: 'tls' });
    assert.deepEqual(await c.next('pong'), { type: 'pong', ref: 'tls' });
    await c.close();
  } finally {
    await ng.stop();
  }
});
