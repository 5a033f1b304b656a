// Contract §3: the server pings every --heartbeat seconds; any frame
// received counts as life; a connection silent for --idle-timeout seconds
// is dropped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, rawWs, frame, sleep } from './lib.mjs';

const HEARTBEAT = 1, IDLE = 3;
let srv;
before(async () => {
  srv = await startServer({ args: ['--heartbeat', String(HEARTBEAT), '--idle-timeout', String(IDLE)] });
});
after(async () => { await srv.cleanup(); });

// All four scenarios run side by side: the file takes one idle period.
test('heartbeat pings, idle drop, and what counts as life', async () => {
  const t0 = Date.now();

  // 1. a `ws` client: sees pings, answers pongs (automatically), stays
  const wsc = await connect(srv, 'ws-client');
  assert.equal(wsc.hello.heartbeat, HEARTBEAT, 'the connect frame announces the interval');
  const pings = [];
  wsc.ws.on('ping', (d) => pings.push({ at: Date.now(), len: d.length }));
  let wscClosed = null;
  wsc.closed.then((c) => { wscClosed = c; });

  // 2. a raw client that sends nothing at all: dropped after the idle timeout
  const silent = await rawWs(srv, 'silent');
  const silentAt = Date.now();
  let silentEnd = null;
  silent.socket.on('close', () => { silentEnd = Date.now(); });

  // 3. a raw client whose only traffic is a JSON ping now and then
  const chatty = await rawWs(srv, 'chatty');
  // 4. a raw client whose only traffic is control pings (no pongs)
  const pinger = await rawWs(srv, 'pinger');

  const until = Date.now() + (IDLE + 1.7) * 1000;
  for (let i = 0; Date.now() < until && i < 100; i++) {
    chatty.write(frame(1, '{"type":"ping"}'));
    pinger.write(frame(9, 'alive'));
    await sleep(800);
  }

  // the ws client saw pings at about the interval and is still open
  assert.ok(pings.length >= IDLE, `${pings.length} pings in ${Date.now() - t0} ms`);
  for (let i = 1; i < pings.length; i++) {
    const gap = pings[i].at - pings[i - 1].at;
    assert.ok(gap > HEARTBEAT * 1000 * 0.6 && gap < HEARTBEAT * 1000 * 1.6, `ping gap ${gap} ms`);
  }
  assert.equal(wscClosed, null, 'a client answering pongs stays past the idle timeout');
  wsc.send({ type: 'ping', ref: 'still-here' });
  assert.equal((await wsc.next((m) => m.ref === 'still-here')).type, 'pong');

  // the silent client got server pings, then was dropped: close, then TCP
  assert.ok(silent.frames.filter((f) => f.opcode === 9).length >= 2, 'the silent client was pinged');
  assert.ok(silent.ended, 'the silent client was dropped');
  const close = silent.frames.find((f) => f.opcode === 8);
  assert.ok(close, 'with a close frame');
  assert.equal(close.code, 1001);
  const dropIdx = silent.frames.indexOf(close);
  assert.ok(silent.frames.slice(dropIdx + 1).length === 0, 'nothing after the close');
  // dropped at the deadline: not before, not long after
  const dt = silentEnd - silentAt;
  assert.ok(dt >= IDLE * 1000 - 100 && dt < IDLE * 1000 + 1000, `dropped after ${dt} ms`);

  // the raw clients that sent frames are alive
  for (const [name, c] of [['chatty', chatty], ['pinger', pinger]]) {
    assert.ok(!c.ended, `${name} still connected`);
    assert.ok(!c.frames.some((f) => f.opcode === 8), `${name} got no close`);
  }
  assert.ok(pinger.frames.filter((f) => f.opcode === 0xA).length >= IDLE, 'pinger got its pongs');

  chatty.destroy();
  pinger.destroy();
  await wsc.close();
});


// Life is a complete frame, not a byte: a frame trickled a byte at a time
// is dropped at the idle timeout (before, each byte kept it open).
test('a frame trickled a byte at a time is not life', async () => {
  const ws = await rawWs(srv, 'trickler');
  try {
    const f = frame(1, '{"type":"ping","pad":"' + 'x'.repeat(60) + '"}');
    const t0 = Date.now();
    for (let i = 0; i < f.length && !ws.ended && Date.now() - t0 < (IDLE + 3) * 1000; i++) {
      ws.write(f.subarray(i, i + 1));
      await sleep(250);
    }
    const c = await ws.closed(1000);
    assert.equal(c.code, 1001);
    assert.equal(c.reason, 'idle timeout');
    const dt = Date.now() - t0;
    assert.ok(dt < (IDLE + 2) * 1000, `closed after ${dt} ms`);
  } finally { ws.destroy(); }
});

// A started message must be complete within --message-timeout, pings in
// between or not: an unfinished one holds up to --max-message of memory.
test('a message left unfinished is closed after --message-timeout', async () => {
  const s = await startServer({ args: ['--message-timeout', '2', '--idle-timeout', '30', '--heartbeat', '10'] });
  try {
    // Completed in time, in fragments with a ping between: fine.
    const ok = await rawWs(s, 'fragmenter');
    ok.write(frame(1, '{"type":"ping",', { fin: false }));
    await sleep(500);
    ok.write(frame(9, 'mid'));
    ok.write(frame(0, '"ref":"whole"}'));
    assert.equal((await ok.json((j) => j.ref === 'whole')).type, 'pong');
    // Never completed, kept busy with pings: closed at the deadline.
    const ws = await rawWs(s, 'holder');
    try {
      const t0 = Date.now();
      ws.write(frame(1, '{"type":"ping","pad":"' + 'a'.repeat(60000), { fin: false }));
      while (!ws.ended && Date.now() - t0 < 6000) {
        ws.write(frame(9, 'alive'));
        await sleep(300);
      }
      const c = await ws.closed(1000);
      assert.equal(c.code, 1008);
      assert.equal(c.reason, 'message not completed in time');
      const dt = Date.now() - t0;
      assert.ok(dt >= 1500 && dt < 4500, `closed after ${dt} ms`);
      // The other connection, idle between messages, is untouched.
      ok.write(frame(1, '{"type":"ping","ref":"later"}'));
      assert.equal((await ok.json((j) => j.ref === 'later')).type, 'pong');
    } finally { ws.destroy(); ok.destroy(); }
  } finally { await s.cleanup(); }
});
