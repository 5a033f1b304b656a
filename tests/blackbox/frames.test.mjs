// Contract §3: frames and closing. Every protocol violation gets its close
// code and then the TCP close; ping/pong, fragmentation, the size limit on
// the header, strict UTF-8; bad JSON gets an error frame and the connection
// stays. Last, a storm of malformed frames and garbage does not slow down
// or hurt a well-behaved client.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { startServer, token, connect, frame, upgradeRequest, sleep, openRawWs } from './lib.mjs';

const MAX = 1024;
let srv, tok;
before(async () => {
  // rate limit off: the storm below must not be cut by it
  srv = await startServer({ args: ['--max-message', String(MAX), '--rate', '0'] });
  tok = token(srv.db, 'raw');
});
after(async () => { await srv.cleanup(); });

// A raw WebSocket that does not block the test process (no CLI calls).
const openRaw = (first = null, t = tok) => openRawWs(srv.wsPort, t, { first });

const text = (s, o) => frame(1, Buffer.from(s), o);
const ping = (p = '', o) => frame(9, Buffer.from(p), o);
const closeFrame = (code, reason = Buffer.alloc(0)) =>
  frame(8, code === undefined ? Buffer.alloc(0) : Buffer.concat([Buffer.from([code >> 8, code & 255]), Buffer.from(reason)]));

// Open a connection, send bytes, expect this close code and the TCP close.
async function expectClose(bytes, code, note = '', { replies = 0 } = {}) {
  const ws = await openRaw();
  for (const b of [].concat(bytes)) ws.write(b);
  const r = await ws.closed();
  ws.destroy();
  assert.equal(r.code, code, `close code ${note}`);
  assert.ok(r.ended, `TCP closed after the close frame ${note}`);
  // nothing but the connect frame (and the replies expected) before the close
  const others = ws.frames.filter((f) => f.opcode !== 8 && !(f.json && f.json.type === 'connect'));
  assert.equal(others.length, replies, note + ' ' + JSON.stringify(others.map((f) => f.payload.toString())));
  return r;
}

describe('1002: protocol errors', () => {
  test('unmasked frame', async () => {
    await expectClose(text('{"type":"ping"}', { mask: false }), 1002);
    await expectClose(ping('x', { mask: false }), 1002, 'unmasked ping');
  });
  test('reserved bits', async () => {
    for (const rsv of [1, 2, 4, 7]) await expectClose(text('{"type":"ping"}', { rsv }), 1002, `rsv=${rsv}`);
    await expectClose(ping('x', { rsv: 4 }), 1002, 'rsv on a ping');
  });
  test('unknown opcodes', async () => {
    for (const op of [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]) await expectClose(frame(op, 'x'), 1002, `opcode ${op}`);
  });
  test('control frame over 125 bytes (ping, pong, close)', async () => {
    await expectClose(ping('p'.repeat(126)), 1002, 'ping 126');
    await expectClose(frame(0xA, 'p'.repeat(200)), 1002, 'pong 200');
    await expectClose(closeFrame(1000, 'r'.repeat(124)), 1002, 'close 126');
    // the limit is judged on the header: the payload never has to come
    await expectClose(ping('', { len: 1000 }), 1002, 'ping header claiming 1000');
  });
  test('fragmented control frames', async () => {
    await expectClose(ping('x', { fin: false }), 1002, 'ping');
    await expectClose([text('{"type":', { fin: false }), frame(0xA, 'x', { fin: false })], 1002, 'pong inside a message');
    await expectClose(frame(8, Buffer.from([3, 232]), { fin: false }), 1002, 'close');
  });
  test('continuation without a start', async () => {
    await expectClose(frame(0, '{"type":"ping"}'), 1002, 'final continuation');
    await expectClose(frame(0, '{"ty', { fin: false }), 1002, 'non-final continuation');
    // a finished message does not leave a message open
    await expectClose([text('{"type":"ping"}'), frame(0, 'x')], 1002, 'after a complete message', { replies: 1 });
  });
  test('new data frame inside a fragmented message', async () => {
    await expectClose([text('{"type":', { fin: false }), text('"ping"}')], 1002, 'text in text');
    await expectClose([text('{"type":', { fin: false }), text('"ping"}', { fin: false })], 1002, 'non-final text in text');
    await expectClose([text('{"type":', { fin: false }), frame(2, 'x')], 1002, 'binary in text');
  });
  test('invalid close frames: 1-byte payload, codes that may not be sent', async () => {
    await expectClose(frame(8, Buffer.from([3])), 1002, '1 byte');
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
      await expectClose(closeFrame(code), 1002, `code ${code}`);
  });
  test('64-bit length with the top bit set', async () => {
    const h = Buffer.from([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    await expectClose(h, 1002);
  });
  test('nothing after the bad frame is processed', async () => {
    const ws = await openRaw();
    ws.write(Buffer.concat([text('{"type":"ping","ref":"before"}'), frame(3, ''), text('{"type":"ping","ref":"after"}'), ping('late')]));
    const r = await ws.closed();
    assert.equal(r.code, 1002);
    assert.ok(ws.frames.some((f) => f.json && f.json.ref === 'before'));
    assert.ok(!ws.frames.some((f) => (f.json && f.json.ref === 'after') || f.opcode === 0xA));
  });
});

describe('1003, 1007, 1009', () => {
  test('binary message: 1003', async () => {
    await expectClose(frame(2, Buffer.from([1, 2, 3])), 1003);
    await expectClose(frame(2, Buffer.from('{"type":"ping"}'), { fin: false }), 1003, 'first fragment');
    await expectClose(frame(2, '', { len: 100000 }), 1003, 'judged on the header');
  });
  test('invalid UTF-8 in a whole message: 1007', async () => {
    const bad = [
      [0xff], [0xc0, 0xaf], // overlong
      [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], // surrogate
      [0xf4, 0x90, 0x80, 0x80], // > U+10FFFF
      [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80],
    ];
    for (const b of bad) {
      const msg = Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from(b), Buffer.from('"}')]);
      await expectClose(frame(1, msg), 1007, Buffer.from(b).toString('hex'));
    }
  });
  test('invalid UTF-8 across fragments, detected at the bad byte', async () => {
    // "€" is e2 82 ac: split valid, then the same split with a bad tail
    const ws = await openRaw();
    ws.write(frame(1, Buffer.from([0x7b, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x70, 0x69, 0x6e, 0x67, 0x22, 0x2c, 0x22, 0x72, 0x65, 0x66, 0x22, 0x3a, 0x22, 0xe2, 0x82]), { fin: false }));
    ws.write(frame(0, Buffer.from([0xac, 0x22, 0x7d])));
    const pong = await ws.json((j) => j.type === 'pong');
    assert.equal(pong.ref, '€');
    ws.destroy();
    await expectClose([frame(1, Buffer.from('{"ref":"\xe2\x82', 'latin1'), { fin: false }), frame(0, Buffer.from('A"}'))], 1007, 'bad continuation byte');
    // only the first fragment, not final: the error does not wait for the end
    await expectClose(frame(1, Buffer.from('{"ref":"\xff', 'latin1'), { fin: false }), 1007, 'bad byte in a first fragment');
  });
  test('truncated multi-byte sequence at the end of a message: 1007', async () => {
    await expectClose(frame(1, Buffer.from('"\xe2\x82', 'latin1')), 1007, 'single frame');
    await expectClose([frame(1, Buffer.from('"a', 'latin1'), { fin: false }), frame(0, Buffer.from('\xf0\x9f\x98', 'latin1'))], 1007, 'fragmented');
  });
  test('invalid UTF-8 in a close reason: 1007', async () => {
    await expectClose(closeFrame(1000, Buffer.from([0xff, 0xfe])), 1007);
    await expectClose(closeFrame(1000, Buffer.from([0x61, 0xe2, 0x82])), 1007, 'truncated');
  });
  test(`message over --max-message (${MAX}): 1009 on the header alone`, async () => {
    for (const len of [MAX + 1, 70000, 10_000_000, 2 ** 40]) {
      const ws = await openRaw();
      const t0 = Date.now();
      ws.write(text('', { len })); // the header and mask key only
      const r = await ws.closed(3000);
      ws.destroy();
      assert.equal(r.code, 1009, `len ${len}`);
      assert.ok(r.ended && Date.now() - t0 < 2000);
    }
  });
  test('exactly --max-message is accepted', async () => {
    const ws = await openRaw();
    const base = '{"type":"ping","ref":"a","pad":""}';
    const msg = base.slice(0, -2) + 'x'.repeat(MAX - base.length) + '"}';
    assert.equal(msg.length, MAX);
    ws.write(text(msg));
    assert.ok(await ws.json((j) => j.type === 'pong'), 'reply to a max-size message');
    ws.destroy();
  });
  test('a fragmented message whose total exceeds the limit: 1009 at the header of the fragment that crosses it', async () => {
    const ws = await openRaw();
    ws.write(text('{"type":"ping","pad":"' + 'x'.repeat(500), { fin: false }));
    ws.write(frame(0, 'y'.repeat(400), { fin: false }));
    await sleep(100);
    assert.ok(!ws.ended, 'still fine at 922 bytes');
    ws.write(frame(0, '', { len: 200, fin: false })); // header only
    const r = await ws.closed(3000);
    ws.destroy();
    assert.equal(r.code, 1009);
    assert.ok(r.ended);
  });
  test('many small fragments are counted together', async () => {
    const parts = [text('{"type":"ping","pad":"', { fin: false })];
    for (let i = 0; i < 120; i++) parts.push(frame(0, 'z'.repeat(10), { fin: false }));
    parts.push(frame(0, '"}'));
    await expectClose(parts, 1009);
  });
});

describe('close handshake', () => {
  test('the same code is echoed, then the server closes TCP', async () => {
    for (const code of [1000, 1001, 1003, 1007, 1011, 3000, 4000, 4999]) {
      const r = await expectClose(closeFrame(code, 'bye'), code, `code ${code}`);
      assert.ok(r.reason.length <= 123);
    }
  });
  test('a close frame without a code gets 1000', async () => {
    await expectClose(closeFrame(), 1000);
  });
  test('a close frame split across TCP writes, with data still pending', async () => {
    const bytes = closeFrame(4001, 'split');
    const ws = await openRaw();
    for (const b of bytes) { ws.write(Buffer.from([b])); await sleep(2); }
    const r = await ws.closed();
    assert.equal(r.code, 4001);
    assert.ok(r.ended);
  });
  test('a close between fragments of a message is answered', async () => {
    await expectClose([text('{"type":', { fin: false }), closeFrame(1000)], 1000);
  });
});

describe('ping, fragments, JSON', () => {
  test('ping gets a pong with the same payload', async () => {
    const ws = await openRaw();
    const payloads = [Buffer.alloc(0), Buffer.from('hello'), crypto.randomBytes(125), Buffer.from([0, 0xff, 0x80])];
    for (const p of payloads) ws.write(frame(9, p));
    const got = [];
    for (let i = 0; i < 40 && got.length < payloads.length; i++) {
      await ws.waitFor((f) => f.opcode === 0xA && !got.includes(f), 250);
      got.splice(0, got.length, ...ws.frames.filter((f) => f.opcode === 0xA));
    }
    assert.deepEqual(got.map((f) => f.payload.toString('hex')), payloads.map((p) => p.toString('hex')));
    // a ping arriving one byte at a time
    const p = ping('bytewise');
    for (const b of p) { ws.write(Buffer.from([b])); await sleep(2); }
    const f = await ws.waitFor((x) => x.opcode === 0xA && x.payload.toString() === 'bytewise');
    assert.ok(f);
    assert.ok(!ws.ended);
    ws.destroy();
  });
  test('unsolicited pong is ignored', async () => {
    const ws = await openRaw();
    ws.write(frame(0xA, 'unsolicited'));
    ws.write(text('{"type":"ping","ref":"after-pong"}'));
    assert.ok(await ws.json((j) => j.ref === 'after-pong'));
    ws.destroy();
  });
  test('fragmented text with a ping between fragments yields the pong and the JSON reply', async () => {
    const ws = await openRaw();
    ws.write(text('{"type":"pi', { fin: false }));
    ws.write(ping('between'));
    ws.write(frame(0, 'ng","ref":', { fin: false }));
    ws.write(frame(0, '', { fin: false })); // empty fragment
    ws.write(frame(0, '"frag"}'));
    const reply = await ws.json((j) => j.type === 'pong');
    assert.deepEqual(reply, { type: 'pong', ref: 'frag' });
    const i = ws.frames.findIndex((f) => f.opcode === 0xA);
    assert.ok(i >= 0 && ws.frames[i].payload.toString() === 'between');
    assert.ok(i < ws.frames.findIndex((f) => f.json && f.json.ref === 'frag'), 'the pong comes first');
    ws.destroy();
  });
  test('frames sent together with the upgrade request are processed', async () => {
    const ws = await openRaw(Buffer.concat([text('{"type":"ping","ref":"pipelined"}'), ping('p')]));
    assert.ok(await ws.json((j) => j.ref === 'pipelined'));
    assert.ok(await ws.waitFor((f) => f.opcode === 0xA && f.payload.toString() === 'p'));
    ws.destroy();
  });
  test('not an object, bad JSON, unknown type: error frame, connection stays open', async () => {
    const ws = await openRaw();
    const cases = [
      ['[1,2]', 'bad_request'], ['"str"', 'bad_request'], ['42', 'bad_request'], ['null', 'bad_request'],
      ['{', 'bad_request'], ['', 'bad_request'], ['{"type":"ping"} x', 'bad_request'],
      ['{"type":"nope","ref":"u1"}', 'unknown_type'], ['{"type":7}', 'bad_request'],
    ];
    for (const [msg, code] of cases) {
      ws.write(text(msg));
      ws.write(text(`{"type":"ping","ref":${JSON.stringify('after ' + msg)}}`));
      const pong = await ws.json((j) => j.ref === 'after ' + msg);
      assert.ok(pong, `still open after ${msg}`);
      const errs = ws.frames.filter((f) => f.json && f.json.type === 'error');
      assert.equal(errs.length, cases.indexOf(cases.find((c) => c[0] === msg)) + 1, `one error for ${msg}`);
      assert.equal(errs.at(-1).json.code, code, msg);
    }
    const unknown = ws.frames.find((f) => f.json && f.json.code === 'unknown_type');
    assert.equal(unknown.json.ref, 'u1');
    assert.ok(!ws.ended);
    assert.ok(!ws.frames.some((f) => f.opcode === 8));
    ws.destroy();
  });
});

// Garbage and violations from many connections at once must not slow down
// or disturb a well-behaved client, nor kill the process.
test('a storm of malformed frames and garbage does not disturb another client', async (t) => {
  const good = await connect(srv, 'good');
  const bad = [
    [text('{}', { mask: false }), 1002], [text('{}', { rsv: 4 }), 1002], [frame(3, 'x'), 1002], [frame(0xB, 'x'), 1002],
    [ping('p'.repeat(126)), 1002], [ping('x', { fin: false }), 1002], [frame(0, 'x'), 1002],
    [Buffer.concat([text('{', { fin: false }), text('}')]), 1002], [frame(2, 'b'), 1003],
    [frame(1, Buffer.from([0x22, 0xff])), 1007], [frame(1, Buffer.from([0x22, 0xe2])), 1007],
    [Buffer.concat([frame(1, Buffer.from([0x22, 0xe2]), { fin: false }), frame(0, Buffer.from([0x41]))]), 1007],
    [closeFrame(1000, Buffer.from([0xff])), 1007], [text('', { len: 1 << 30 }), 1009],
    [Buffer.concat([text('x'.repeat(1000), { fin: false }), frame(0, 'y'.repeat(100))]), 1009],
  ];
  const stop = Date.now() + 5000;
  const rtts = [];
  let lost = 0;
  const prober = (async () => {
    for (let i = 0; Date.now() < stop && i < 1000; i++) {
      const t0 = Date.now();
      good.send({ type: 'ping', ref: 'probe' + i });
      try { await good.next((m) => m.ref === 'probe' + i, 2000); rtts.push(Date.now() - t0); } catch { lost++; }
      await sleep(20);
    }
  })();
  let wrongCodes = [], closes = 0, garbage = 0;
  const worker = async (w) => {
    for (let i = 0; Date.now() < stop && i < 200; i++) {
      if ((i + w) % 4 === 0) {
        // garbage instead of a request head, or after the upgrade
        await new Promise((resolve) => {
          const s = net.connect(srv.wsPort, '127.0.0.1');
          s.on('error', () => {});
          s.on('connect', () => { s.write(crypto.randomBytes(1 + crypto.randomInt(3000))); setTimeout(() => { s.destroy(); resolve(); }, 20); });
          s.on('close', resolve);
        });
        const ws = await openRaw(crypto.randomBytes(1 + crypto.randomInt(500)));
        await ws.waitFor((f) => f.opcode === 8, 100);
        ws.destroy();
        garbage++;
        continue;
      }
      const [bytes, code] = bad[(i * 7 + w) % bad.length];
      const ws = await openRaw();
      ws.write(bytes);
      const r = await ws.closed(3000);
      ws.destroy();
      closes++;
      if (r.code !== code) wrongCodes.push({ i: (i * 7 + w) % bad.length, got: r.code, want: code });
    }
  };
  await Promise.all([prober, ...Array.from({ length: 8 }, (_, w) => worker(w))]);
  rtts.sort((a, b) => a - b);
  const p99 = rtts[Math.floor(rtts.length * 0.99)];
  t.diagnostic(`${closes} malformed + ${garbage} garbage connections; ${rtts.length} probes, ` +
    `median ${rtts[rtts.length >> 1]} ms, p99 ${p99} ms, max ${rtts.at(-1)} ms`);
  assert.deepEqual(wrongCodes, []);
  assert.ok(closes >= 100, `only ${closes} malformed connections`);
  assert.ok(garbage >= 20, `only ${garbage} garbage connections`);
  assert.equal(lost, 0, 'every probe answered');
  assert.ok(rtts.length >= 50, `${rtts.length} probes`);
  // A liveness bound (the loop is never stuck on a hostile client), not a
  // speed target: generous for a loaded 2-core machine.
  assert.ok(p99 < 1000, `p99 ping RTT ${p99} ms (max ${rtts.at(-1)})`);
  assert.equal(srv.exited, null, 'server alive');
  // the good client is still fine
  good.send({ type: 'ping', ref: 'final' });
  assert.equal((await good.next((m) => m.ref === 'final')).type, 'pong');
  await good.close();
});
