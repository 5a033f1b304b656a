// Native TLS (contract §8): --tls-cert/--tls-key put both ports on TLS 1.2
// and 1.3 (wss:// and https://), older versions are refused, a stalled TLS
// handshake is dropped at --handshake-timeout, SIGHUP reloads the pair (new
// connections see the new certificate, open ones keep working) and a bad
// pair at reload is logged with the running one kept.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import { startServer, connect, needTool, selfSignedPair, sleep, API_KEY } from './lib.mjs';

const skip = needTool('openssl', 'makes the test certificates');
const HANDSHAKE_S = 2;

let srv, dir, certFile, keyFile;
const pairs = {}; // name -> { cert, key } (paths)


const fingerprint = (name) => new crypto.X509Certificate(readFileSync(pairs[name].cert)).fingerprint256;

// Install pair name as the server's files (what a renewal does).
function install(name) {
  copyFileSync(pairs[name].cert, certFile);
  copyFileSync(pairs[name].key, keyFile);
}

// A TLS connection to port; resolves with the socket once the handshake is done.
function tlsConnect(port, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('TLS handshake timed out')); }, 5000);
    s.once('secureConnect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); s.destroy(); reject(e); });
  });
}

async function peerFingerprint(port) {
  const s = await tlsConnect(port);
  try { return s.getPeerCertificate().fingerprint256; } finally { s.destroy(); }
}

// HTTPS request to the HTTP port, the certificate checked against ca.
function httpsRequest(method, p, { body, key, ca } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (key) headers.Authorization = 'Bearer ' + key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const req = https.request({ host: '127.0.0.1', port: srv.httpPort, path: p, method, headers,
      ca: readFileSync(ca), agent: false, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text, cert: res.socket.getPeerCertificate?.() }));
    });
    req.on('timeout', () => req.destroy(new Error('HTTPS request timed out')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

// How long until the server closes a socket that stalls (ms), bounded.
function closedAfter(sock, limitMs) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => { sock.destroy(); resolve(Infinity); }, limitMs);
    sock.on('error', () => {});
    sock.once('close', () => { clearTimeout(timer); resolve(Date.now() - t0); });
  });
}

const wssOpts = (name) => ({ wsOptions: { ca: readFileSync(pairs[name].cert) } });

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'bs-tls-'));
  for (const n of ['first', 'second', 'third']) pairs[n] = selfSignedPair(dir, n);
  certFile = path.join(dir, 'server.crt');
  keyFile = path.join(dir, 'server.key');
  install('first');
  srv = await startServer({ args: ['--tls-cert', certFile, '--tls-key', keyFile,
    '--handshake-timeout', String(HANDSHAKE_S), '--http-request-timeout', String(HANDSHAKE_S)] });
  srv.url = (q = '') => `wss://127.0.0.1:${srv.wsPort}/ws${q}`;
});

after(async () => {
  if (srv) await srv.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('wss://: connect, send and ack, a room message; https:// on the HTTP port', { skip }, async () => {
  let r = await httpsRequest('GET', '/healthz', { ca: pairs.first.cert });
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).status, 'ok');
  r = await httpsRequest('POST', '/api/tokens', { body: { uid: 'tls-bob' }, key: API_KEY, ca: pairs.first.cert });
  assert.equal(r.status, 201, r.text);
  const bobToken = JSON.parse(r.text).token;
  r = await httpsRequest('POST', '/api/tokens', { body: { uid: 'x' }, ca: pairs.first.cert });
  assert.equal(r.status, 401, 'the key is still required over HTTPS');

  const a = await connect(srv, 'tls-alice', wssOpts('first'));
  const b = await connect(srv, 'tls-bob', { token: bobToken, ...wssOpts('first') });
  try {
    assert.equal(a.ws._socket.getPeerCertificate().fingerprint256, fingerprint('first'));
    for (const c of [a, b]) {
      c.send({ type: 'join', room: 'tls-room', ref: 'j' });
      await c.next('joined');
    }
    a.send({ type: 'send', to: 'tls-bob', data: { n: 1 }, ref: 's1' });
    const ack = await a.next('ack');
    assert.equal(ack.ref, 's1');
    const direct = await b.next('message');
    assert.equal(direct.seq, ack.seq);
    assert.deepEqual(direct.data, { n: 1 });
    // A large room message: many TLS records, read back whole.
    const big = 'x'.repeat(40000);
    a.send({ type: 'publish', room: 'tls-room', data: big, ref: 'p1' });
    const pack = await a.next('ack');
    const m = await b.next('message');
    assert.equal(m.seq, pack.seq);
    assert.equal(m.room, 'tls-room');
    assert.equal(m.data, big);
    // From the HTTP API over HTTPS to the wss:// client.
    r = await httpsRequest('POST', '/api/publish', { body: { to: 'tls-bob', data: 'via-api' }, key: API_KEY, ca: pairs.first.cert });
    assert.equal(r.status, 200, r.text);
    const viaApi = await b.next((x) => x.type === 'message' && x.data === 'via-api');
    assert.ok(viaApi.seq > m.seq);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('TLS 1.2 and 1.3 are accepted; TLS 1.1 and 1.0 are refused by the server on both ports', { skip }, async () => {
  for (const port of [srv.wsPort, srv.httpPort]) {
    for (const v of ['TLSv1.2', 'TLSv1.3']) {
      const s = await tlsConnect(port, { minVersion: v, maxVersion: v });
      assert.equal(s.getProtocol(), v);
      s.destroy();
    }
    for (const v of ['TLSv1', 'TLSv1.1']) {
      // SECLEVEL=0: the client itself would offer the old version; the
      // refusal must come from the server (a protocol_version alert).
      await assert.rejects(tlsConnect(port, { minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' }),
        (e) => /PROTOCOL_VERSION|protocol version/i.test(`${e.code} ${e.message}`), `${v} on port ${port}`);
    }
  }
  assert.match(srv.logs, /event=conn\.tls\.error .*unsupported protocol/);
});

test('a TLS handshake that never completes is dropped at --handshake-timeout', { skip }, async () => {
  const limit = (HANDSHAKE_S + 4) * 1000;
  // Nothing at all after the TCP connect.
  const silent = net.connect(srv.wsPort, '127.0.0.1');
  // Half a ClientHello: a record header announcing 512 bytes, 5 of them sent.
  const partial = net.connect(srv.wsPort, '127.0.0.1', () => partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])));
  // The TLS handshake done, no HTTP request head: the same deadline covers both.
  const noHead = await tlsConnect(srv.wsPort);
  const times = await Promise.all([closedAfter(silent, limit), closedAfter(partial, limit), closedAfter(noHead, limit)]);
  for (const t of times) {
    assert.ok(t < limit, `not dropped within ${limit} ms`);
    assert.ok(t >= HANDSHAKE_S * 1000 - 500, `dropped after ${t} ms, before the timeout`);
  }
  const timeouts = srv.logs.match(/event=conn\.refused .*reason=timeout/g) || [];
  assert.ok(timeouts.length >= 3, srv.logs.slice(-2000));
  // The HTTP port: its request deadline covers the TLS handshake.
  const httpSilent = net.connect(srv.httpPort, '127.0.0.1');
  assert.ok(await closedAfter(httpSilent, limit) < limit, 'HTTP port: a silent TLS client was not dropped');
  // The server still serves.
  const c = await connect(srv, 'after-stall', wssOpts('first'));
  await c.close();
});

test('SIGHUP: new connections get the new certificate, open ones keep working; a bad pair keeps the old one', { skip }, async () => {
  const a = await connect(srv, 'hup-alice', wssOpts('first'));
  const b = await connect(srv, 'hup-bob', wssOpts('first'));
  const reloads = () => (srv.logs.match(/event=tls\.reloaded/g) || []).length;
  const errors = () => (srv.logs.match(/event=tls\.reload\.error/g) || []).length;
  const waitFor = async (fn, n, what) => {
    for (let i = 0; i < 100 && fn() < n; i++) await sleep(50);
    assert.equal(fn(), n, `no ${what} logged:\n${srv.logs.slice(-2000)}`);
  };
  try {
    assert.equal(await peerFingerprint(srv.wsPort), fingerprint('first'));
    install('second');
    srv.proc.kill('SIGHUP');
    await waitFor(reloads, 1, 'tls.reloaded');
    for (const port of [srv.wsPort, srv.httpPort]) assert.equal(await peerFingerprint(port), fingerprint('second'), `port ${port}`);
    // The open connections (made with the first pair) still carry traffic.
    a.send({ type: 'send', to: 'hup-bob', data: 'after-reload', ref: 'r1' });
    assert.equal((await a.next('ack')).ref, 'r1');
    assert.equal((await b.next('message')).data, 'after-reload');
    // A new wss:// client trusting only the second certificate connects.
    const c = await connect(srv, 'hup-carol', wssOpts('second'));
    assert.equal(c.ws._socket.getPeerCertificate().fingerprint256, fingerprint('second'));
    await c.close();

    // Bad pairs: a key that does not match the certificate, then garbage.
    copyFileSync(pairs.third.cert, certFile); // keyFile still holds the second key
    srv.proc.kill('SIGHUP');
    await waitFor(errors, 1, 'tls.reload.error');
    writeFileSync(certFile, 'not a certificate\n');
    srv.proc.kill('SIGHUP');
    await waitFor(errors, 2, 'tls.reload.error');
    assert.equal(reloads(), 1);
    for (const port of [srv.wsPort, srv.httpPort]) assert.equal(await peerFingerprint(port), fingerprint('second'), `port ${port} after a bad pair`);
    const d = await connect(srv, 'hup-dave', wssOpts('second'));
    await d.close();
    a.send({ type: 'send', to: 'hup-bob', data: 'after-bad-reload', ref: 'r2' });
    assert.equal((await a.next('ack')).ref, 'r2');
    assert.equal((await b.next('message')).data, 'after-bad-reload');
    assert.equal(srv.exited, null, 'the server exited');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a pair that does not load at start: exit 1 with the reason', { skip }, async () => {
  const bad = path.join(dir, 'bad.crt');
  writeFileSync(bad, 'not a certificate\n');
  await assert.rejects(startServer({ args: ['--tls-cert', bad, '--tls-key', pairs.first.key] }),
    /server exited early:[\s\S]*event=tls\.error/);
  await assert.rejects(startServer({ args: ['--tls-cert', pairs.first.cert] }), /--tls-cert and --tls-key/);
});

test('refused at accept on a TLS port (--max-per-ip): closed without a plaintext 503 in the TLS stream', { skip }, async () => {
  const s = await startServer({ args: ['--tls-cert', pairs.first.cert, '--tls-key', pairs.first.key,
    '--max-per-ip', '1', '--handshake-timeout', '30'] });
  const held = [];
  try {
    for (const port of [s.wsPort, s.httpPort]) {
      const h = net.connect(port, '127.0.0.1');
      h.on('error', () => {});
      held.push(h);
      await new Promise((r) => h.once('connect', r));
      await sleep(200); // accepted and counted
      // The next one from the same address is refused: a TLS client gets
      // the close, not bytes that are no TLS record.
      const got = await new Promise((resolve) => {
        let data = '';
        const x = net.connect(port, '127.0.0.1');
        const timer = setTimeout(() => { x.destroy(); resolve({ data, closed: false }); }, 4000);
        x.on('data', (d) => { data += d.toString('latin1'); });
        x.on('error', () => {});
        x.on('close', () => { clearTimeout(timer); resolve({ data, closed: true }); });
      });
      assert.ok(got.closed, `port ${port}: the refused socket was not closed`);
      assert.equal(got.data, '', `port ${port}: plaintext in a TLS port`);
      await assert.rejects(tlsConnect(port), /ECONNRESET|socket disconnected|socket hang up/, `port ${port}`);
    }
    assert.match(await new Promise((r) => { setTimeout(() => r(s.logs), 1500); }), /event=conn\.shed ws=\d+ http=\d+/);
  } finally {
    for (const h of held) h.destroy();
    await s.cleanup();
  }
});
