// A reader that stops reading is cut with 1008 once its buffered output
// passes --max-outbuf; the publisher and other members are not slowed, and
// the cut reader can resume without losing anything.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { incompressible, startServer, connect, sleep } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--max-outbuf', '65536', '--rate', '0'] }); });
after(async () => { await srv.cleanup(); });

test('slow consumer is closed 1008 and counted; others unaffected', async () => {
  const pub = await connect(srv, 'pub');
  const fast = await connect(srv, 'fast');
  const slow = await connect(srv, 'slow', { wsOptions: { maxPayload: 1 << 20 } });
  for (const c of [pub, fast, slow]) { c.send({ type: 'join', room: 'flood' }); await c.next('joined'); }
  // Stop reading: the kernel buffers fill, then the server's output buffer.
  slow.ws._socket.pause();
  const payload = incompressible(2000); // not shrunk by permessage-deflate
  const N = 3000;
  const t0 = Date.now();
  let lastSeq = 0, n = 0, prev = 0;
  // In batches that a reading client keeps up with even on a loaded
  // machine (the fast member must never trip the limit itself).
  for (let b = 0; b < N; b += 20) {
    for (let i = b; i < b + 20; i++) pub.send({ type: 'publish', room: 'flood', data: { i, payload } });
    for (let i = b; i < b + 20; i++) lastSeq = (await pub.next('ack', 20000)).seq;
    // The fast member gets everything, in order.
    for (; n < b + 20; n++) { const m = await fast.next('message', 20000); assert.ok(m.seq > prev); prev = m.seq; }
  }
  const took = Date.now() - t0;
  assert.ok(took < 20000);
  // Metrics say a slow consumer was dropped.
  const metrics = await (await fetch(srv.http + '/metrics')).text();
  assert.match(metrics, /basestation_drops_total\{reason="slow_consumer"\} [1-9]/);
  // Resume reading: the close frame (1008) arrives after what was buffered,
  // unless the server had to drop the socket first (then 1006).
  slow.ws._socket.resume();
  const closed = await slow.closed;
  assert.ok([1008, 1006].includes(closed.code), 'close code ' + closed.code);
  // The slow user can resume from what it saw and get the rest.
  const seen = slow.all.filter((m) => m.type === 'message');
  const since = seen.length ? seen[seen.length - 1].seq : 0;
  const again = await connect(srv, 'slow', { query: { since: String(since) } });
  const res = await again.next('resumed', 20000);
  const replayed = again.all.filter((m) => m.type === 'message');
  assert.equal(res.complete, true);
  assert.equal(seen.length + replayed.length, N);
  assert.equal(replayed.length ? replayed[replayed.length - 1].seq : since, lastSeq);
  await Promise.all([pub.close(), fast.close(), again.close()]);
});

test('messages held during a stalled replay are bounded too', async () => {
  const pub = await connect(srv, 'hpub');
  const r0 = await connect(srv, 'hsub');
  for (const c of [pub, r0]) { c.send({ type: 'join', room: 'held' }); await c.next('joined'); }
  await r0.close();
  const payload = incompressible(2000);
  // A history larger than the kernel's socket buffers can absorb.
  for (let b = 0; b < 4000; b += 100) {
    for (let i = b; i < b + 100; i++) pub.send({ type: 'publish', room: 'held', data: { i, payload } });
    for (let i = b; i < b + 100; i++) await pub.next('ack', 20000);
  }
  // Resume from 0 and read nothing: the replay stalls on the full output.
  // A raw socket that stops reading right after the connect frame (a `ws`
  // client resumes a paused socket by itself when its parser drains, and
  // then reads the whole history: that made this test flaky).
  const { openRawWs, token } = await import('./lib.mjs');
  const r = await openRawWs(srv.wsPort, token(srv.db, 'hsub') + '&since=0');
  r.socket.pause();
  await sleep(300);
  // Live traffic meanwhile is held, up to --max-outbuf, then the reader is cut.
  for (let i = 0; i < 100; i++) pub.send({ type: 'publish', room: 'held', data: { live: i, payload } });
  for (let i = 0; i < 100; i++) await pub.next('ack', 20000);
  const deadline = Date.now() + 5000;
  let cut = false;
  let row = null;
  while (!cut && Date.now() < deadline) {
    const t = await (await fetch(srv.http + '/admin/connections', { headers: { Authorization: 'Bearer test-admin-key' } })).json();
    row = t.connections.find((c) => c.uid === 'hsub');
    cut = !row;
    if (!cut) await sleep(100);
  }
  assert.ok(cut, 'the stalled replaying reader was not cut: ' + JSON.stringify(row));
  r.destroy();
  await pub.close();
});
