// Contract §2: the WebSocket handshake. Every refusal with its status, the
// TCP connection closed after it, the handshake deadline (also against a
// slowloris), the ways of presenting a token (opaque and JWT), the
// subprotocol reply and Sec-WebSocket-Accept.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import {
  BIN, startServer, token, connect, upgradeRequest, httpExchange, acceptKey, jwt, sleep,
} from './lib.mjs';

const JWT_SECRET = 'jwt-test-secret';
let srv;
before(async () => {
  srv = await startServer({ args: ['--jwt-secret', JWT_SECRET, '--handshake-timeout', '1'] });
});
after(async () => { await srv.cleanup(); });

// The request is refused with status, the server closes TCP promptly.
async function refused(req, status, port = srv.wsPort) {
  const r = await httpExchange(port, req, 3000);
  assert.equal(r.status, status, 'reply: ' + r.text.slice(0, 300));
  assert.ok(r.closed, 'server must close the TCP connection after a refusal');
  assert.ok(r.ms < 1500, `closed after ${r.ms} ms`);
  return r;
}

// The request is upgraded: 101 and then the connect frame.
async function accepted(req, port = srv.wsPort) {
  const r = await httpExchange(port, req, 3000,
    (t) => t.includes('\r\n\r\n') && (!t.startsWith('HTTP/1.1 101') || t.includes('"type":"connect"')));
  assert.equal(r.status, 101, 'reply: ' + r.text.slice(0, 300));
  assert.equal(r.closed, false, 'an upgraded connection stays open');
  const m = /\{"type":"connect".*?\}/.exec(r.text);
  assert.ok(m, 'connect frame after the 101');
  r.hello = JSON.parse(m[0]);
  return r;
}

const req = (opts) => upgradeRequest(srv.wsPort, opts);
const withToken = (uid, opts = {}) => req({ ...opts, query: '?token=' + token(srv.db, uid) + (opts.query || '') });

describe('400: not a valid upgrade request', () => {
  test('method other than GET', async () => {
    const r = withToken('m1').replace(/^GET /, 'POST ');
    await refused(r, 400);
    await refused(withToken('m1').replace(/^GET /, 'get '), 400);
  });
  test('HTTP/1.0 (and HTTP/2.0)', async () => {
    await refused(withToken('v10').replace('HTTP/1.1\r\n', 'HTTP/1.0\r\n'), 400);
    await refused(withToken('v10').replace('HTTP/1.1\r\n', 'HTTP/2.0\r\n'), 400);
  });
  test('Upgrade missing or not websocket', async () => {
    await refused(withToken('up', { omit: ['Upgrade'] }), 400);
    await refused(withToken('up', { headers: { Upgrade: 'h2c' } }), 400);
  });
  test('Connection without the upgrade token', async () => {
    await refused(withToken('cn', { headers: { Connection: 'keep-alive' } }), 400);
    await refused(withToken('cn', { omit: ['Connection'] }), 400);
    // a list that contains it is fine
    await accepted(withToken('cn', { headers: { Connection: 'keep-alive, Upgrade' } }));
  });
  test('Sec-WebSocket-Key missing, not base64 or not 16 bytes', async () => {
    await refused(withToken('k', { omit: ['Sec-WebSocket-Key'] }), 400);
    const bad = [
      crypto.randomBytes(15).toString('base64'), // 15 bytes
      crypto.randomBytes(17).toString('base64'), // 17 bytes
      crypto.randomBytes(32).toString('base64'),
      '!!!!!!!!!!!!!!!!!!!!!!==', // 24 chars, not base64
      '',
    ];
    for (const key of bad) await refused(withToken('k', { headers: { 'Sec-WebSocket-Key': key } }), 400);
  });
  test('no Host; Host, Sec-WebSocket-Key, Sec-WebSocket-Version or Upgrade twice (RFC 6455 §4.2.1, §11.3.1)', async () => {
    // the request is valid but for the header in question
    const twice = (uid, line) => withToken(uid).replace(/\r\n\r\n$/, `\r\n${line}\r\n\r\n`);
    await accepted(withToken('dup'));
    await refused(withToken('dup', { omit: ['Host'] }), 400);
    await refused(twice('dup', 'Host: 127.0.0.1'), 400);
    await refused(twice('dup', 'Sec-WebSocket-Key: ' + crypto.randomBytes(16).toString('base64')), 400);
    await refused(twice('dup', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=='), 400);
    await refused(twice('dup', 'Sec-WebSocket-Version: 13'), 400);
    await refused(twice('dup', 'Upgrade: websocket'), 400);
    // two Origins (RFC 6454 §7.3): which one would be judged?
    await refused(withToken('dup', { headers: { Origin: 'http://127.0.0.1' } }).replace(/\r\n\r\n$/, '\r\nOrigin: http://evil.example\r\n\r\n'), 400);
    await accepted(withToken('dup', { headers: { Origin: 'http://127.0.0.1' } }));
    // a list header may come twice; an empty Host is allowed
    await accepted(twice('dup', 'Connection: keep-alive'));
    await accepted(withToken('dup', { headers: { Host: '' } }));
  });
  test('since that is not a sequence number (contract §2: malformed request)', async () => {
    for (const since of ['-1', 'abc', '', '1e3', '+5', ' 5', '0x10', '99999999999999999999', '5abc']) {
      await refused(withToken('since', { query: '&since=' + encodeURIComponent(since) }), 400);
    }
    await accepted(withToken('since', { query: '&since=0' }));
    await accepted(withToken('since', { query: '&since=12' }));
  });
  test('malformed request line or header line', async () => {
    await refused('GET /ws\r\n\r\n', 400);
    await refused(withToken('mf').replace('Upgrade: websocket', 'Upgrade websocket'), 400);
    await refused(withToken('mf').replace('Upgrade: websocket\r\n', 'Upgrade: websocket\r\n continued\r\n'), 400);
  });
  test('too many headers: 64 are fine, 65 are refused', async () => {
    const extra = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`X-H${i}`, 'v']));
    // upgradeRequest sends 5 headers of its own
    await accepted(withToken('hdr', { headers: extra(59) }));
    await refused(withToken('hdr', { headers: extra(60) }), 400);
  });
  test('request head too large (one header, many headers, no end at all)', async () => {
    await refused(withToken('big', { headers: { 'X-Pad': 'a'.repeat(9000) } }), 400);
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`X-P${i}`, 'b'.repeat(250)]));
    await refused(withToken('big', { headers: many }), 400);
    // a head that never ends is refused as soon as the limit is crossed,
    // not at the handshake deadline (1 s here)
    const r = await refused('GET /ws HTTP/1.1\r\nX-Pad: ' + 'c'.repeat(10000), 400);
    assert.ok(r.ms < 800, `refused after ${r.ms} ms`);
  });
});

describe('401: identity', () => {
  test('no token at all', async () => {
    await refused(req(), 401);
    await refused(req({ query: '?uid=alice' }), 401);
    await refused(req({ headers: { 'Sec-WebSocket-Protocol': 'basestation.v1' } }), 401);
    await refused(req({ headers: { Authorization: 'Basic YTpi' } }), 401);
  });
  test('unknown token, in each place a token is looked for', async () => {
    const fake = 'bs_' + crypto.randomBytes(24).toString('hex');
    await refused(req({ query: '?token=' + fake }), 401);
    await refused(req({ query: '?token=' }), 401);
    await refused(req({ headers: { Authorization: 'Bearer ' + fake } }), 401);
    await refused(req({ headers: { 'Sec-WebSocket-Protocol': fake } }), 401);
    await refused(req({ headers: { 'Sec-WebSocket-Protocol': 'basestation.v1, ' + fake } }), 401);
  });
  test('the first token found is the one judged', async () => {
    const good = token(srv.db, 'first');
    await refused(req({ query: '?token=nope', headers: { Authorization: 'Bearer ' + good } }), 401);
  });
  test('revoked token', async () => {
    const tok = token(srv.db, 'rev');
    await accepted(req({ query: '?token=' + tok }));
    execFileSync(BIN, ['token', 'revoke', tok, '--db', srv.db], { stdio: 'pipe' });
    await refused(req({ query: '?token=' + tok }), 401);
    await refused(req({ headers: { Authorization: 'Bearer ' + tok } }), 401);
  });
  test('expired token (--ttl 1)', async () => {
    const tok = token(srv.db, 'ttl', 'user', 1);
    await accepted(req({ query: '?token=' + tok }));
    await sleep(1200);
    await refused(req({ query: '?token=' + tok }), 401);
  });
});

describe('JWT (--jwt-secret)', () => {
  const now = () => Math.floor(Date.now() / 1000);
  test('a valid HS256 JWT is accepted; sub is the uid', async () => {
    const t = jwt(JWT_SECRET, { sub: 'jwt-alice', exp: now() + 60 });
    const r = await accepted(req({ query: '?token=' + t + '&uid=jwt-alice' }));
    assert.equal(r.hello.uid, 'jwt-alice');
    const r2 = await accepted(req({ headers: { Authorization: 'Bearer ' + jwt(JWT_SECRET, { sub: 'jwt-bob' }) } }));
    assert.equal(r2.hello.uid, 'jwt-bob');
    const t3 = jwt(JWT_SECRET, { sub: 'jwt-carol', exp: now() + 60 });
    const r3 = await accepted(req({ headers: { 'Sec-WebSocket-Protocol': t3 } }));
    assert.equal(r3.headers['sec-websocket-protocol'], t3);
    assert.equal(r3.hello.uid, 'jwt-carol');
  });
  test('alg none, wrong signature, tampered claims, expired: 401', async () => {
    const none = jwt(JWT_SECRET, { sub: 'x', exp: now() + 60 }, { alg: 'none', typ: 'JWT' });
    await refused(req({ query: '?token=' + none }), 401);
    const noneSigned = none.slice(0, -1) + crypto.createHmac('sha256', JWT_SECRET).update(none.slice(0, -1)).digest('base64url');
    await refused(req({ query: '?token=' + noneSigned }), 401);
    await refused(req({ query: '?token=' + jwt('another-secret', { sub: 'x', exp: now() + 60 }) }), 401);
    const [h, , s] = jwt(JWT_SECRET, { sub: 'x', exp: now() + 60 }).split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'admin', exp: now() + 60 })).toString('base64url');
    await refused(req({ query: `?token=${h}.${forged}.${s}` }), 401);
    await refused(req({ query: '?token=' + jwt(JWT_SECRET, { sub: 'x', exp: now() - 5 }) }), 401);
    await refused(req({ query: '?token=' + jwt(JWT_SECRET, { exp: now() + 60 }) }), 401); // no sub
  });
  test('uid differing from the JWT sub: 403', async () => {
    const t = jwt(JWT_SECRET, { sub: 'jwt-dave', exp: now() + 60 });
    await refused(req({ query: '?token=' + t + '&uid=jwt-eve' }), 403);
  });
});

describe('403: uid and Origin', () => {
  test('uid (or id, as in the seeds) differing from the token uid', async () => {
    const tok = token(srv.db, 'alice');
    await refused(req({ query: `?token=${tok}&uid=bob` }), 403);
    await refused(req({ query: `?token=${tok}&id=bob` }), 403);
    await refused(req({ query: `?token=${tok}&uid=alic` }), 403);
    await refused(req({ query: `?uid=bob&token=${tok}` }), 403);
    assert.equal((await accepted(req({ query: `?token=${tok}&uid=alice` }))).hello.uid, 'alice');
    assert.equal((await accepted(req({ query: `?id=alice&token=${tok}` }))).hello.uid, 'alice');
  });
  test('a uid with a NUL or a control character: 400, never cut into the token\'s uid', async () => {
    const tok = token(srv.db, 'alice');
    await refused(req({ query: `?token=${tok}&uid=alice%00` }), 400);
    await refused(req({ query: `?token=${tok}&uid=alice%0a` }), 400);
    await refused(req({ query: `?token=${tok}&id=al%7fice` }), 400);
    await refused(req({ query: `?token=${tok}&uid=%ff` }), 400); // not UTF-8
    await refused(req({ query: `?token=${tok}&uid=%zz` }), 400); // a bad escape
    await refused(req({ query: `?token=${tok}&uid=${'a'.repeat(129)}` }), 400); // past 128 bytes
  });
  test('default: Origin must have the Host header hostname (any port, any scheme)', async () => {
    const tok = token(srv.db, 'orig');
    const o = (origin, host) => req({ query: '?token=' + tok, headers: { Origin: origin, ...(host ? { Host: host } : {}) } });
    await accepted(o(`http://127.0.0.1:${srv.wsPort}`));
    await accepted(o(`http://127.0.0.1:${srv.httpPort}`)); // the pages on the HTTP port
    await accepted(o('https://127.0.0.1'));
    await accepted(o('http://localhost:8081', `localhost:${srv.wsPort}`));
    await accepted(o('http://LocalHost:1', `localhost:${srv.wsPort}`));
    for (const bad of ['http://evil.example', 'http://localhost:8081', 'null', 'http://127.0.0.1.evil.example',
      'http://evil.example/127.0.0.1', 'http://127.0.0.1@evil.example', 'http://127.0.0.12']) {
      await refused(o(bad), 403);
    }
    // an Origin with an empty Host to compare it to (no Host at all is a 400)
    await refused(req({ query: '?token=' + tok, headers: { Origin: 'http://127.0.0.1', Host: '' } }), 403);
  });
  test('--origin allowlist and --origin *', async () => {
    const list = await startServer({ args: ['--origin', 'https://app.example', '--origin', 'http://other.example:8000'] });
    let any;
    try {
      any = await startServer({ args: ['--origin', '*'] });
      const tl = token(list.db, 'o1');
      const o = (s, origin) => upgradeRequest(s.wsPort, { query: '?token=' + (s === list ? tl : ta), headers: { Origin: origin } });
      const ta = token(any.db, 'o2');
      await accepted(o(list, 'https://app.example'), list.wsPort);
      await accepted(o(list, 'http://other.example:8000'), list.wsPort);
      await refused(o(list, 'http://app.example'), 403, list.wsPort); // other scheme
      await refused(o(list, 'https://app.example:444'), 403, list.wsPort); // other port
      await refused(o(list, 'https://evil.example'), 403, list.wsPort);
      await accepted(o(any, 'https://evil.example'), any.wsPort);
      await accepted(o(any, 'null'), any.wsPort);
      // no Origin (not a browser): allowed by every policy
      await accepted(upgradeRequest(list.wsPort, { query: '?token=' + tl }), list.wsPort);
      // a JWT means nothing without --jwt-secret
      await refused(upgradeRequest(list.wsPort, { query: '?token=' + jwt(JWT_SECRET, { sub: 'o1' }) }), 401, list.wsPort);
    } finally {
      await list.cleanup();
      if (any) await any.cleanup();
    }
  });
});

describe('404, 426, 503', () => {
  test('path other than /ws', async () => {
    const tok = token(srv.db, 'path');
    for (const p of ['/', '/wsx', '/ws/', '/WS', '/api/ws', '/ws%20'])
      await refused(req({ path: p, query: '?token=' + tok }), 404);
  });
  test('Sec-WebSocket-Version other than 13: 426 with Sec-WebSocket-Version: 13', async () => {
    for (const v of ['8', '12', '14', 'x']) {
      const r = await refused(withToken('ver', { headers: { 'Sec-WebSocket-Version': v } }), 426);
      assert.equal(r.headers['sec-websocket-version'], '13');
    }
    const r = await refused(withToken('ver', { omit: ['Sec-WebSocket-Version'] }), 426);
    assert.equal(r.headers['sec-websocket-version'], '13');
  });
  test('over --max-connections: 503, and a freed slot is usable again', async () => {
    const s = await startServer({ args: ['--max-connections', '2'] });
    try {
      const a = await connect(s, 'a');
      const b = await connect(s, 'b');
      await refused(upgradeRequest(s.wsPort, { query: '?token=' + token(s.db, 'c') }), 503, s.wsPort);
      await a.close();
      let ok = null;
      for (let i = 0; i < 20 && !ok; i++) {
        const r = await httpExchange(s.wsPort, upgradeRequest(s.wsPort, { query: '?token=' + token(s.db, 'c') }), 2000,
          (t) => t.includes('"type":"connect"'));
        if (r.status === 101) ok = r; else await sleep(50);
      }
      assert.ok(ok, 'a slot is free again after a close');
      await b.close();
    } finally {
      await s.cleanup();
    }
  });
});

describe('handshake deadline (--handshake-timeout 1)', () => {
  test('half a request head, then silence: dropped after the deadline', async () => {
    const r = await httpExchange(srv.wsPort, 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n', 4000);
    assert.ok(r.closed, 'dropped');
    assert.ok(r.ms >= 900 && r.ms < 2000, `dropped after ${r.ms} ms`);
    assert.equal(r.status, null, 'no upgrade');
  });
  test('nothing at all: dropped after the deadline', async () => {
    const r = await httpExchange(srv.wsPort, '', 4000);
    assert.ok(r.closed && r.ms >= 900 && r.ms < 2000, `dropped after ${r.ms} ms`);
  });
  test('a slowloris trickling one byte at a time is not kept alive', async () => {
    const data = Buffer.from(withToken('slow', { headers: { 'X-Pad': 'p'.repeat(100) } }));
    const s = net.connect(srv.wsPort, '127.0.0.1');
    const t0 = Date.now();
    let closedAt = null, sent = 0, reply = '';
    s.on('data', (d) => { reply += d; });
    s.on('error', () => {});
    s.on('close', () => { closedAt = Date.now() - t0; });
    await new Promise((r, j) => { s.once('connect', r); s.once('error', j); });
    while (closedAt === null && sent < data.length && Date.now() - t0 < 4000) {
      s.write(data.subarray(sent, sent + 1));
      sent++;
      await sleep(50);
    }
    for (let i = 0; i < 40 && closedAt === null; i++) await sleep(50);
    s.destroy();
    assert.ok(sent < data.length, 'the head was never complete');
    assert.ok(closedAt !== null && closedAt >= 900 && closedAt < 2000, `dropped after ${closedAt} ms`);
    assert.equal(reply, '');
  });
  test('a head completed in pieces before the deadline is upgraded and then stays', async () => {
    const data = withToken('pieces');
    const s = net.connect(srv.wsPort, '127.0.0.1');
    let reply = '', closed = false;
    s.on('data', (d) => { reply += d; });
    s.on('close', () => { closed = true; });
    s.on('error', () => {});
    await new Promise((r, j) => { s.once('connect', r); s.once('error', j); });
    const cut = [0, 10, 60, data.length];
    for (let i = 0; i + 1 < cut.length; i++) {
      s.write(data.slice(cut[i], cut[i + 1]));
      await sleep(200);
    }
    await sleep(1300); // past the handshake deadline
    s.destroy();
    assert.match(reply, /^HTTP\/1\.1 101 /);
    assert.equal(closed, false, 'the handshake deadline no longer applies once upgraded');
  });
});

describe('accepted upgrades', () => {
  test('Sec-WebSocket-Accept is correct (RFC 6455 sample and a random key)', async () => {
    const sample = await accepted(withToken('acc', { headers: { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } }));
    assert.equal(sample.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(sample.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(sample.headers.connection, /upgrade/i);
    assert.equal(sample.headers['sec-websocket-protocol'], undefined, 'no subprotocol offered, none chosen');
    const key = crypto.randomBytes(16).toString('base64');
    const r = await accepted(withToken('acc', { headers: { 'Sec-WebSocket-Key': key } }));
    assert.equal(r.headers['sec-websocket-accept'], acceptKey(key));
  });
  test('header names and the Upgrade/Connection tokens are case-insensitive; bare LF line ends', async () => {
    const tok = token(srv.db, 'case');
    const key = crypto.randomBytes(16).toString('base64');
    const head = `GET /ws?token=${tok} HTTP/1.1\r\nhost: 127.0.0.1\r\nUPGRADE: WebSocket\r\nconnection: keep-alive,upgrade\r\n` +
      `sec-websocket-key: ${key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n`;
    const r = await accepted(head);
    assert.equal(r.headers['sec-websocket-accept'], acceptKey(key));
    await accepted(head.replaceAll('\r\n', '\n'));
  });
  test('token in the query, as Bearer, as the subprotocol (echoed), or next to basestation.v1', async () => {
    const q = await accepted(withToken('via-query'));
    assert.equal(q.hello.uid, 'via-query');
    const tb = token(srv.db, 'via-bearer');
    const b = await accepted(req({ headers: { Authorization: 'Bearer ' + tb } }));
    assert.equal(b.hello.uid, 'via-bearer');
    const ts = token(srv.db, 'via-proto');
    const p = await accepted(req({ query: '?id=via-proto', headers: { 'Sec-WebSocket-Protocol': ts } }));
    assert.equal(p.headers['sec-websocket-protocol'], ts);
    assert.equal(p.hello.uid, 'via-proto');
    const tv = token(srv.db, 'via-v1');
    for (const offer of [`basestation.v1, ${tv}`, `${tv}, basestation.v1`]) {
      const v = await accepted(req({ headers: { 'Sec-WebSocket-Protocol': offer } }));
      assert.equal(v.headers['sec-websocket-protocol'], 'basestation.v1');
      assert.equal(v.hello.uid, 'via-v1');
    }
    // token in the query, basestation.v1 offered: chosen
    const qv = await accepted(withToken('q-v1', { headers: { 'Sec-WebSocket-Protocol': 'basestation.v1' } }));
    assert.equal(qv.headers['sec-websocket-protocol'], 'basestation.v1');
  });
});
