// Contract §8: permessage-deflate (RFC 7692) on the wire. Negotiation (the
// answer always carries both no-context-takeover parameters; an offer with
// unknown or invalid parameters is declined and the upgrade goes on),
// compressed messages both ways checked on the raw socket (RSV1), limits on
// the inflated message (1009, 1007), RSV1 where it is not allowed (1002),
// --compression off, --compression-min, and a room message compressed once
// for all its members.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { spawnSync } from 'node:child_process';
import { BIN, startServer, token, connect, frame, openRawWs, upgradeRequest, rawExchange, rssBytes, metricValue, sleep, MEMORY_ENV } from './lib.mjs';

const MAX = 4096;
const OFFER = 'permessage-deflate; client_max_window_bits';
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);

// A message compressed as a client does: raw deflate, sync flush, the
// trailing 00 00 ff ff removed (RFC 7692 §7.2.1).
const deflate = (buf) => {
  const z = zlib.deflateRawSync(Buffer.from(buf), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual(z.subarray(-4), TAIL);
  return z.subarray(0, -4);
};
const inflate = (payload, windowBits = 15) =>
  zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { windowBits, finishFlush: zlib.constants.Z_SYNC_FLUSH });
// A compressed text frame (RSV1) and its JSON when decoded.
const ztext = (obj, o = {}) => frame(1, deflate(typeof obj === 'string' ? obj : JSON.stringify(obj)), { rsv: 4, ...o });
const decode = (f, bits) => JSON.parse((f.rsv & 4 ? inflate(f.payload, bits) : f.payload).toString());
const isType = (t, bits) => (f) => f.opcode === 1 && decode(f, bits).type === t;

let srv;
before(async () => {
  srv = await startServer({ args: ['--max-message', String(MAX), '--rate', '0'], env: MEMORY_ENV });
});
after(async () => { await srv.cleanup(); });

const raw = (uid, headers = { 'Sec-WebSocket-Extensions': OFFER }, s = srv) =>
  openRawWs(s.wsPort, token(s.db, uid), { headers });
const extOf = (head) => (/^sec-websocket-extensions: (.*)$/im.exec(head) || [])[1] || null;

async function joinRaw(ws, room) {
  ws.write(ztext({ type: 'join', room, ref: 'j' }));
  assert.ok(await ws.waitFor(isType('joined')), 'joined');
}

async function expectClose(ws, bytes, code, note) {
  for (const b of [].concat(bytes)) ws.write(b);
  const r = await ws.closed();
  ws.destroy();
  assert.equal(r.code, code, note);
  assert.ok(r.ended, 'TCP closed after the close frame ' + note);
}

describe('negotiation', () => {
  test('an offer is answered with both no-context-takeover parameters', async () => {
    const ws = await raw('n1');
    try {
      const ext = extOf(ws.head);
      assert.ok(ext, 'Sec-WebSocket-Extensions in the 101');
      const params = ext.split(';').map((x) => x.trim());
      assert.equal(params[0], 'permessage-deflate');
      assert.ok(params.includes('server_no_context_takeover'), ext);
      assert.ok(params.includes('client_no_context_takeover'), ext);
    } finally { ws.destroy(); }
  });

  test('an offer with unknown or invalid parameters is declined, the upgrade succeeds', async () => {
    for (const offer of ['permessage-deflate; foo=1', 'permessage-deflate; server_max_window_bits=99',
      'permessage-deflate; client_no_context_takeover; client_no_context_takeover', 'x-webkit-deflate-frame']) {
      const ws = await raw('n2', { 'Sec-WebSocket-Extensions': offer });
      try {
        assert.equal(extOf(ws.head), null, offer);
        // RSV1 is then a protocol error on this connection
        await expectClose(ws, ztext({ type: 'ping' }), 1002, 'RSV1 after a declined offer: ' + offer);
      } finally { ws.destroy(); }
    }
  });

  test('the first acceptable offer wins, across a list and across headers', async () => {
    const ws = await raw('n3', { 'Sec-WebSocket-Extensions': 'permessage-deflate; bogus, permessage-deflate' });
    try { assert.match(extOf(ws.head) || '', /^permessage-deflate; /); } finally { ws.destroy(); }
    // two headers: the first declined, the second taken (all are read, not the last only)
    const req = upgradeRequest(srv.wsPort, { query: '?token=' + token(srv.db, 'n3'), headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; bogus' } })
      .replace('\r\n\r\n', '\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n');
    const res = (await rawExchange(srv.wsPort, req, 1000)).toString('latin1');
    assert.match(res, /^HTTP\/1\.1 101/);
    assert.match(extOf(res.split('\r\n\r\n')[0]) || '', /server_max_window_bits=12/);
    // and a first acceptable header is not replaced by a later one
    const req2 = upgradeRequest(srv.wsPort, { query: '?token=' + token(srv.db, 'n3'), headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; server_max_window_bits=10' } })
      .replace('\r\n\r\n', '\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n');
    const res2 = (await rawExchange(srv.wsPort, req2, 1000)).toString('latin1');
    assert.match(extOf(res2.split('\r\n\r\n')[0]) || '', /server_max_window_bits=10/);
  });

  test('no offer: no header, RSV1 is 1002', async () => {
    const ws = await raw('n4', {});
    try {
      assert.equal(extOf(ws.head), null);
      await expectClose(ws, ztext({ type: 'ping' }), 1002, 'RSV1 without negotiation');
    } finally { ws.destroy(); }
  });
});

describe('messages', () => {
  test('the ws package with permessage-deflate: compressed both ways', async () => {
    const opts = { wsOptions: { perMessageDeflate: { threshold: 0 } } };
    const a = await connect(srv, 'w-a', opts);
    const b = await connect(srv, 'w-b', opts);
    try {
      assert.match(a.ws.extensions, /permessage-deflate/);
      for (const c of [a, b]) { c.send({ type: 'join', room: 'wsroom', ref: 'j' }); await c.next('joined'); }
      const data = { text: 'hé '.repeat(700) };
      const before = await metricValue(srv, 'basestation_inflate_messages_total');
      a.send({ type: 'publish', room: 'wsroom', data, ref: 'p' });
      await a.next('ack');
      assert.deepEqual((await b.next('message')).data, data);
      assert.ok(await metricValue(srv, 'basestation_inflate_messages_total') > before, 'the server inflated');
    } finally { await Promise.all([a.close(), b.close()]); }
  });

  test('raw: a compressed frame in, RSV1 on the long reply, a short one plain', async () => {
    const a = await raw('r-a');
    const b = await raw('r-b');
    try {
      await joinRaw(a, 'raw'); await joinRaw(b, 'raw');
      const data = 'x'.repeat(2000);
      a.write(ztext({ type: 'publish', room: 'raw', data, ref: 'p1' }));
      const ack = await a.waitFor(isType('ack'));
      assert.ok(ack, 'ack');
      assert.equal(ack.rsv, 0, 'a short reply (below --compression-min) goes with RSV1 clear');
      const m = await b.waitFor(isType('message'));
      assert.ok(m, 'message');
      assert.equal(m.rsv, 4, 'a long message is compressed');
      assert.ok(m.payload.length < 200, 'compressed payload ' + m.payload.length);
      assert.equal(decode(m).data, data);
    } finally { a.destroy(); b.destroy(); }
  });

  test('a fragmented compressed message', async () => {
    const a = await raw('f-a');
    try {
      const z = deflate(JSON.stringify({ type: 'join', room: 'frag', ref: 'fr' }));
      const k = z.length >> 1;
      a.write(frame(1, z.subarray(0, k), { rsv: 4, fin: false }));
      a.write(frame(0, z.subarray(k, k + 1), { fin: false }));
      a.write(frame(0, z.subarray(k + 1)));
      const j = await a.waitFor(isType('joined'));
      assert.ok(j, 'joined');
      assert.equal(decode(j).ref, 'fr');
    } finally { a.destroy(); }
  });

  test('an uncompressed frame on a compressing connection is accepted', async () => {
    const a = await raw('u-a');
    try {
      a.write(frame(1, Buffer.from(JSON.stringify({ type: 'join', room: 'plain', ref: 'pl' }))));
      assert.ok(await a.waitFor(isType('joined')));
    } finally { a.destroy(); }
  });

  test('a smaller server_max_window_bits: the client gets frames it can inflate with it', async () => {
    const a = await raw('wb-a');
    const b = await raw('wb-b', { 'Sec-WebSocket-Extensions': 'permessage-deflate; server_max_window_bits=9' });
    try {
      assert.match(extOf(b.head), /server_max_window_bits=9/);
      await joinRaw(a, 'wb'); await joinRaw(b, 'wb');
      let data = '';
      for (let i = 0; i < 300; i++) data += i.toString(36) + (i * 7919 % 1000) + ' ';
      a.write(ztext({ type: 'publish', room: 'wb', data, ref: 'p' }));
      const m = await b.waitFor((f) => f.opcode === 1 && f.rsv === 4);
      assert.ok(m, 'compressed message');
      assert.equal(decode(m, 9).data, data);
    } finally { a.destroy(); b.destroy(); }
  });

  test('a room message to N members is compressed once', async () => {
    const N = 5;
    const pub = await raw('once-pub');
    const members = [];
    try {
      for (let i = 0; i < N; i++) members.push(await raw('once-' + i));
      await joinRaw(pub, 'once');
      for (const m of members) await joinRaw(m, 'once');
      const before = await metricValue(srv, 'basestation_deflate_messages_total');
      const data = 'y'.repeat(1500) + '-end';
      pub.write(ztext({ type: 'publish', room: 'once', data, ref: 'p' }));
      for (const m of members) {
        const f = await m.waitFor(isType('message'));
        assert.ok(f, 'delivered');
        assert.equal(f.rsv, 4);
        assert.equal(decode(f).data, data);
      }
      const frames = members.map((m) => m.frames.find(isType('message')).payload);
      for (const p of frames) assert.deepEqual(p, frames[0], 'the same compressed bytes to every member');
      assert.equal(await metricValue(srv, 'basestation_deflate_messages_total') - before, 1, 'compressed once, not per member');
    } finally { pub.destroy(); members.forEach((m) => m.destroy()); }
  });
});

describe('limits and errors', () => {
  test('a compression bomb is 1009 and the broker RSS stays flat', async () => {
    const rss0 = rssBytes(srv);
    for (let i = 0; i < 5; i++) {
      const ws = await raw('bomb');
      const bomb = deflate(Buffer.alloc(8 << 20, 0x20)); // 8 MiB of spaces: ~8 KiB compressed
      assert.ok(bomb.length < 2 * MAX * 4, 'the frame is small: ' + bomb.length);
      await expectClose(ws, frame(1, bomb, { rsv: 4 }), 1009, 'bomb');
    }
    // just past the limit is 1009 too, just under it goes through
    const ok = await raw('bomb2');
    try {
      const body = JSON.stringify({ type: 'join', room: 'b', ref: 'z'.repeat(MAX - 60) });
      assert.ok(body.length <= MAX);
      ok.write(ztext(body));
      // answered (joined or an error about the long ref), not closed
      const r = await ok.waitFor((f) => f.opcode === 8 || (f.opcode === 1 && decode(f).type !== 'connect'));
      assert.ok(r && r.opcode === 1, 'a message at the limit is accepted: ' + (r && r.opcode === 8 ? 'closed ' + r.code : 'nothing'));
    } finally { ok.destroy(); }
    const ws = await raw('bomb3');
    await expectClose(ws, ztext(JSON.stringify({ type: 'join', room: 'b', ref: 'z'.repeat(MAX) })), 1009, 'one past the limit');
    await sleep(100);
    const grown = rssBytes(srv) - rss0;
    assert.ok(grown < 4 << 20, `RSS grew by ${grown} bytes over 5 bombs of 8 MiB`);
  });

  test('invalid deflate data is 1007', async () => {
    const ws = await raw('bad-z');
    await expectClose(ws, frame(1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x13]), { rsv: 4 }), 1007, 'corrupt deflate');
  });

  test('invalid UTF-8 after inflate is 1007', async () => {
    const ws = await raw('bad-u');
    await expectClose(ws, frame(1, deflate(Buffer.from([0x22, 0xc3, 0x28, 0x22])), { rsv: 4 }), 1007, 'bad UTF-8 inflated');
  });

  test('RSV1 on a continuation or a control frame is 1002', async () => {
    const z = deflate('{"type":"ping"}');
    let ws = await raw('rsv-c');
    await expectClose(ws, [frame(1, z.subarray(0, 3), { rsv: 4, fin: false }), frame(0, z.subarray(3), { rsv: 4 })], 1002, 'RSV1 on a continuation');
    ws = await raw('rsv-c2');
    await expectClose(ws, [frame(1, Buffer.from('{"ty'), { fin: false }), frame(0, Buffer.from('pe":"ping"}'), { rsv: 4 })], 1002, 'RSV1 on the continuation of a plain message');
    ws = await raw('rsv-p');
    await expectClose(ws, frame(9, Buffer.from('hi'), { rsv: 4 }), 1002, 'RSV1 on a ping');
  });
});

describe('flags', () => {
  test('--compression off: offers declined, RSV1 is 1002', async () => {
    const off = await startServer({ args: ['--compression', 'off'] });
    try {
      const ws = await raw('off', undefined, off);
      assert.equal(extOf(ws.head), null);
      await expectClose(ws, ztext({ type: 'ping' }), 1002, 'RSV1 with compression off');
      const c = new WebSocket(off.url('?token=' + token(off.db, 'off2')), { perMessageDeflate: { threshold: 0 } });
      await new Promise((r, j) => { c.on('open', r); c.on('error', j); });
      assert.equal(c.extensions, '');
      c.terminate();
    } finally { await off.cleanup(); }
    // a bad value is refused at start
    const bad = spawnSync(BIN, ['serve', '--compression', 'maybe', '--db', ':memory:'], { encoding: 'utf8', timeout: 5000 });
    assert.notEqual(bad.status, 0, 'bad --compression refused');
    assert.match(bad.stderr, /compression/);
  });

  test('--compression-min: shorter messages go plain, longer compressed', async () => {
    const s = await startServer({ env: { BASESTATION_COMPRESSION_MIN: '1000' } });
    try {
      const a = await raw('m-a', undefined, s);
      const b = await raw('m-b', undefined, s);
      try {
        await joinRaw(a, 'm'); await joinRaw(b, 'm');
        a.write(ztext({ type: 'publish', room: 'm', data: 's'.repeat(500), ref: 1 }));
        a.write(ztext({ type: 'publish', room: 'm', data: 'l'.repeat(1500), ref: 2 }));
        assert.ok(await b.waitFor(() => b.frames.filter(isType('message')).length >= 2));
        const [short, long] = b.frames.filter(isType('message'));
        assert.equal(short.rsv, 0, 'below --compression-min: RSV1 clear');
        assert.equal(decode(short).data, 's'.repeat(500));
        assert.equal(long.rsv, 4, 'at or above it: compressed');
        assert.equal(decode(long).data, 'l'.repeat(1500));
      } finally { a.destroy(); b.destroy(); }
    } finally { await s.cleanup(); }
  });
});
