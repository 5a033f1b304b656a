// Limits of the WebSocket layer: output per connection (--max-outbuf) also
// for pongs, the default message size, connections per address, and the
// cost of a request head (token candidates in Sec-WebSocket-Protocol).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startServer, token, connect, frame, upgradeRequest, httpExchange, api, ADMIN_KEY, sleep,
} from './lib.mjs';

const OUTBUF = 65536;
let srv;
before(async () => { srv = await startServer({ args: ['--max-outbuf', String(OUTBUF), '--rate', '0'] }); });
after(async () => { await srv.cleanup(); });

// A raw upgraded socket; frames are parsed only when asked.
async function rawSocket(s, uid) {
  const sock = net.connect(s.wsPort, '127.0.0.1');
  await new Promise((r, j) => { sock.on('connect', r); sock.on('error', j); });
  sock.on('error', () => {});
  const chunks = [];
  sock.on('data', (d) => chunks.push(d));
  sock.write(upgradeRequest(s.wsPort, { query: '?token=' + token(s.db, uid) }));
  for (let i = 0; i < 100 && !Buffer.concat(chunks).includes('"connect"'); i++) await sleep(20);
  assert.ok(Buffer.concat(chunks).includes('"connect"'), 'upgraded');
  chunks.length = 0;
  let ended = false;
  sock.on('close', () => { ended = true; });
  return {
    sock, chunks,
    get ended() { return ended; },
    // the server's frames received so far
    frames() {
      const buf = Buffer.concat(chunks);
      const out = [];
      for (let off = 0; off + 2 <= buf.length;) {
        let n = buf[off + 1] & 127, h = 2;
        if (n === 126) { n = buf.readUInt16BE(off + 2); h = 4; } else if (n === 127) { n = Number(buf.readBigUInt64BE(off + 2)); h = 10; }
        if (off + h + n > buf.length) break;
        const f = { opcode: buf[off] & 15, payload: buf.subarray(off + h, off + h + n) };
        if (f.opcode === 8) f.code = f.payload.readUInt16BE(0);
        out.push(f);
        off += h + n;
      }
      return out;
    },
  };
}

async function outBuffered(uid) {
  const r = await api(srv, 'GET', '/admin/connections', undefined, ADMIN_KEY);
  const c = r.json.connections.find((x) => x.uid === uid);
  return c ? c.out_buffered : null;
}

// Flood `bytes` at the server without reading its answers; returns the
// largest out_buffered seen for uid and then reads everything.
async function floodWithoutReading(uid, unit, total) {
  const c = await rawSocket(srv, uid);
  c.sock.pause();
  const chunk = Buffer.concat(Array(Math.ceil(65536 / unit.length)).fill(unit));
  let sent = 0, maxBuffered = 0, gone = false;
  for (let i = 0; sent < total && i < 10000 && !c.ended; i++) {
    if (!c.sock.write(chunk)) await new Promise((r) => { c.sock.once('drain', r); setTimeout(r, 200); });
    sent += chunk.length;
    if (i % 32 === 0) {
      const b = await outBuffered(uid);
      if (b === null) gone = true; else maxBuffered = Math.max(maxBuffered, b);
    }
  }
  c.sock.resume();
  for (let i = 0; i < 100 && !c.ended; i++) await sleep(50);
  return { c, sent, maxBuffered, gone };
}

test('a client that pings without reading is cut at --max-outbuf (1008), memory stays bounded', async () => {
  const observer = await connect(srv, 'observer');
  const r = await floodWithoutReading('pinger', frame(9, Buffer.alloc(125, 7)), 40 << 20);
  assert.ok(r.maxBuffered <= OUTBUF + 256, `out_buffered reached ${r.maxBuffered}`);
  assert.ok(r.gone, 'the connection was dropped during the flood');
  const close = r.c.frames().find((f) => f.opcode === 8);
  assert.ok(close, 'a close frame after the pongs');
  assert.equal(close.code, 1008);
  assert.ok(r.c.ended);
  r.c.sock.destroy();
  // others were not affected
  observer.send({ type: 'ping', ref: 'obs' });
  assert.equal((await observer.next((m) => m.ref === 'obs', 2000)).type, 'pong');
  await observer.close();
});

test('a client that sends JSON pings without reading is cut the same way', async () => {
  const r = await floodWithoutReading('jsonpinger', frame(1, '{"type":"ping","ref":"' + 'r'.repeat(50) + '"}'), 30 << 20);
  assert.ok(r.maxBuffered <= OUTBUF + 256, `out_buffered reached ${r.maxBuffered}`);
  assert.ok(r.gone);
  assert.equal(r.c.frames().find((f) => f.opcode === 8)?.code, 1008);
  r.c.sock.destroy();
});

test('only the first few Sec-WebSocket-Protocol values are tried as tokens', async () => {
  const tok = token(srv.db, 'proto');
  const offer = (n) => Array.from({ length: n }, (_, i) => 'x' + i).concat(tok).join(', ');
  const ok = await httpExchange(srv.wsPort, upgradeRequest(srv.wsPort, { headers: { 'Sec-WebSocket-Protocol': offer(3) } }), 2000,
    (t) => t.includes('\r\n\r\n'));
  assert.equal(ok.status, 101);
  assert.equal(ok.headers['sec-websocket-protocol'], tok);
  const late = await httpExchange(srv.wsPort, upgradeRequest(srv.wsPort, { headers: { 'Sec-WebSocket-Protocol': offer(4) } }));
  assert.equal(late.status, 401);
  // basestation.v1 is found wherever it is
  const v1 = await httpExchange(srv.wsPort, upgradeRequest(srv.wsPort,
    { headers: { 'Sec-WebSocket-Protocol': offer(1) + ', ' + Array(500).fill('y').join(',') + ', basestation.v1' } }), 2000,
  (t) => t.includes('\r\n\r\n'));
  assert.equal(v1.status, 101);
  assert.equal(v1.headers['sec-websocket-protocol'], 'basestation.v1');
  // a head full of candidates is cheap to refuse, and refused
  const many = Array(3900).fill('a').join(',');
  for (let i = 0; i < 20; i++) {
    const r = await httpExchange(srv.wsPort, upgradeRequest(srv.wsPort, { headers: { 'Sec-WebSocket-Protocol': many } }));
    assert.equal(r.status, 401);
  }
});

test('a token given in the query and offered as the subprotocol is echoed', async () => {
  const tok = token(srv.db, 'both');
  const r = await httpExchange(srv.wsPort, upgradeRequest(srv.wsPort, { query: '?token=' + tok, headers: { 'Sec-WebSocket-Protocol': tok } }),
    2000, (t) => t.includes('\r\n\r\n'));
  assert.equal(r.status, 101);
  assert.equal(r.headers['sec-websocket-protocol'], tok);
  // what a browser does: new WebSocket(url + '?token=' + tok, [tok])
  const { Client } = await import('./lib.mjs');
  const c = new Client(srv.url('?token=' + tok), { protocols: [tok] });
  await c.opened;
  assert.equal(c.ws.protocol, tok);
  await c.close();
});

test('defaults: --max-message 65536 and --max-per-ip', async () => {
  const s = await startServer({ args: ['--max-per-ip', '2'] });
  try {
    const a = await rawSocket(s, 'big');
    const base = '{"type":"ping","ref":"big","pad":""}';
    const msg = base.slice(0, -2) + 'x'.repeat(65536 - base.length) + '"}';
    a.sock.write(frame(1, msg));
    for (let i = 0; i < 100 && !Buffer.concat(a.chunks).includes('"ref":"big"'); i++) await sleep(20);
    assert.ok(Buffer.concat(a.chunks).includes('"ref":"big"'), 'a 65536-byte message is accepted');
    const b = await rawSocket(s, 'big2');
    b.sock.write(frame(1, '', { len: 65537 }));
    for (let i = 0; i < 100 && !b.ended; i++) await sleep(20);
    assert.equal(b.frames().find((f) => f.opcode === 8)?.code, 1009);
    // a and (closing) b were two; b is gone now, so one more fits, then 503
    const c = await rawSocket(s, 'third');
    const r = await httpExchange(s.wsPort, upgradeRequest(s.wsPort, { query: '?token=' + token(s.db, 'fourth') }));
    assert.equal(r.status, 503);
    assert.ok(r.closed);
    a.sock.destroy();
    c.sock.destroy();
  } finally {
    await s.cleanup();
  }
});

test('--max-frames: a message in more fragments than allowed is closed 1009', async () => {
  const s = await startServer({ args: ['--max-frames', '4'] });
  try {
    const { rawWs } = await import('./lib.mjs');
    const ok = await rawWs(s, 'frag-ok');
    // 4 fragments: allowed
    ok.write(Buffer.concat([frame(1, '{"type"', { fin: false }), frame(0, ':"pi', { fin: false }), frame(0, 'ng"', { fin: false }), frame(0, '}')]));
    assert.ok(await ok.waitFor((f) => f.json && f.json.type === 'pong'));
    const bad = await rawWs(s, 'frag-bad');
    const parts = [frame(1, '{', { fin: false })];
    for (let i = 0; i < 5; i++) parts.push(frame(0, ' ', { fin: false }));
    bad.write(Buffer.concat(parts));
    assert.equal(await bad.closeCode(), 1009);
    ok.destroy(); bad.destroy();
  } finally { await s.cleanup(); }
});

test('one message larger than --max-outbuf still reaches a reader with nothing pending', async () => {
  const s = await startServer({ args: ['--max-outbuf', '1000'] });
  try {
    const a = await connect(s, 'big-a');
    const b = await connect(s, 'big-b');
    a.send({ type: 'send', to: 'big-b', data: 'z'.repeat(5000) });
    await a.next('ack');
    const m = await b.next('message');
    assert.equal(m.data.length, 5000);
    b.send({ type: 'ping' });
    await b.next('pong');
    await a.close(); await b.close();
  } finally { await s.cleanup(); }
});
