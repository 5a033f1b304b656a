// Per-connection token bucket: frames over the rate get rate_limited; a
// client that keeps flooding is closed with 1008.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, sleep, rawWs, frame } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--rate', '10', '--burst', '5'] }); });
after(async () => { await srv.cleanup(); });

test('over the rate: rate_limited, then recovery', async () => {
  const a = await connect(srv, 'alice');
  for (let i = 0; i < 8; i++) a.send({ type: 'ping', ref: i });
  const replies = [];
  for (let i = 0; i < 8; i++) replies.push(await a.next((m) => m.type === 'pong' || m.type === 'error'));
  assert.equal(replies.filter((m) => m.type === 'pong').length, 5);
  const errs = replies.filter((m) => m.type === 'error');
  assert.equal(errs.length, 3);
  assert.ok(errs.every((e) => e.code === 'rate_limited'));
  await sleep(600);
  a.send({ type: 'ping' });
  await a.next('pong');
  await a.close();
});

test('a client that keeps flooding is closed 1008', async () => {
  const a = await connect(srv, 'flooder');
  const other = await connect(srv, 'calm');
  for (let i = 0; i < 200; i++) a.send({ type: 'ping' });
  const c = await a.closed;
  assert.equal(c.code, 1008);
  other.send({ type: 'ping' });
  await other.next('pong');
  const metrics = await (await fetch(srv.http + '/metrics')).text();
  assert.match(metrics, /basestation_drops_total\{reason="rate_limit"\} 1/);
  assert.match(metrics, /basestation_rate_limited_total [1-9]/);
  await other.close();
});

// Contract v2 §6: control frames (ping) count against the same limit.
test('WebSocket pings take tokens from the same bucket as messages', async () => {
  const ws = await rawWs(srv, 'pinger');
  try {
    for (let i = 0; i < 5; i++) ws.write(frame(9, 'p' + i));
    assert.ok(await ws.waitFor((f) => f.opcode === 10 && f.payload.toString() === 'p4'));
    ws.write(frame(1, JSON.stringify({ type: 'ping', ref: 'after' })));
    const reply = await ws.json((j) => j.ref === 'after');
    assert.equal(reply.type, 'error');
    assert.equal(reply.code, 'rate_limited');
  } finally { ws.destroy(); }
});

// 2000 control frames of opcode op at once: closed 1008 (returns the frames).
async function controlFlood(uid, op) {
  const ws = await rawWs(srv, uid);
  try {
    ws.write(Buffer.concat(Array.from({ length: 2000 }, () => frame(op, 'x'))));
    const c = await ws.closed();
    assert.equal(c.code, 1008);
    assert.equal(c.reason, 'rate limit exceeded');
    return ws.frames;
  } finally { ws.destroy(); }
}

test('a ping flood is not answered without end: closed 1008', async () => {
  const frames = await controlFlood('pingflood', 9);
  const pongs = frames.filter((f) => f.opcode === 10).length;
  // The bucket holds 5; a few more may refill while the flood is read.
  assert.ok(pongs <= 10, `${pongs} pongs for 2000 pings`);
  assert.ok(frames.some((f) => f.json && f.json.code === 'rate_limited'));
});

// Pongs too: every control frame takes a token (before, unsolicited pongs
// were read without limit, millions a second).
test('an unsolicited pong flood is closed 1008', async () => {
  await controlFlood('pongflood', 10);
});

test('a pong takes a token from the same bucket as messages', async () => {
  const ws = await rawWs(srv, 'ponger');
  try {
    for (let i = 0; i < 5; i++) ws.write(frame(10, 'p' + i));
    ws.write(frame(1, JSON.stringify({ type: 'ping', ref: 'after' })));
    const reply = await ws.json((j) => j.ref === 'after');
    assert.equal(reply.type, 'error');
    assert.equal(reply.code, 'rate_limited');
  } finally { ws.destroy(); }
});
