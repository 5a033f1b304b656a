// --io uring|epoll (BASESTATION_IO): which path carries plain TCP output,
// shown by the start log and /metrics; io_uring really carries the bytes
// (its submission counters grow with the deliveries, several connections'
// sends in one submission); a probe that fails (the test hook
// BASESTATION_TEST_URING_FAIL, as on a kernel without io_uring) falls back to
// epoll with a logged line; with --tls-cert no ring is made (TLS writes
// through OpenSSL), said in the log; a reader that stops reading keeps a send in
// flight, counted as buffered, and the connection is freed safely when it
// goes away (RST) or the server stops with the send still in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, connect, api, incompressible, sleep, needTool, selfSignedPair, ADMIN_KEY } from './lib.mjs';

async function metricsText(srv) {
  return (await fetch(srv.http + '/metrics')).text();
}

function sample(text, name) {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

// n members of one room, then one publish: every member gets it.
async function roomOf(srv, prefix, n) {
  const cs = [];
  for (let i = 0; i < n; i++) {
    const c = await connect(srv, `${prefix}${i}`);
    c.send({ type: 'join', room: prefix });
    await c.next('joined');
    cs.push(c);
  }
  return cs;
}

async function deliverAll(cs, k) {
  const [pub, ...rest] = cs;
  for (let i = 0; i < k; i++) pub.send({ type: 'publish', room: 'r', data: { i } });
  for (const c of rest) {
    for (let i = 0; i < k; i++) assert.equal((await c.next('message', 10000)).data.i, i);
  }
}

async function connsOf(srv) {
  return (await api(srv, 'GET', '/admin/connections', undefined, ADMIN_KEY)).json.connections;
}

// meson test runs the server on io_uring (setup `uring`, the default) and,
// with --setup epoll, on epoll: BASESTATION_IO reaches the server.
test('the path of this run: BASESTATION_IO from the test setup, else uring', async () => {
  const want = process.env.BASESTATION_IO || 'uring';
  const srv = await startServer();
  try {
    assert.match(srv.logs, new RegExp(`level=info event=io io=${want}\\b`));
    assert.match(await metricsText(srv), new RegExp(`^basestation_io_path\\{io="${want}"\\} 1$`, 'm'));
  } finally {
    await srv.cleanup();
  }
});

test('--io uring: the log and /metrics name it, and its submissions carry the deliveries', async () => {
  const srv = await startServer({ args: ['--io', 'uring', '--rate', '0'] });
  const cs = [];
  try {
    assert.match(srv.logs, /level=info event=io io=uring/);
    assert.doesNotMatch(srv.logs, /fallback/);
    let t = await metricsText(srv);
    assert.match(t, /^basestation_io_path\{io="uring"\} 1$/m);
    const sqes0 = sample(t, 'basestation_io_uring_sqes_total');
    const submits0 = sample(t, 'basestation_io_uring_submits_total');
    assert.notEqual(sqes0, null);
    cs.push(...await roomOf(srv, 'r', 20));
    t = await metricsText(srv);
    const sqes1 = sample(t, 'basestation_io_uring_sqes_total');
    const submits1 = sample(t, 'basestation_io_uring_submits_total');
    // Every connect frame and join reply went out through the ring.
    assert.ok(sqes1 - sqes0 >= 40, `sqes ${sqes0} -> ${sqes1}`);
    await deliverAll(cs, 10);
    t = await metricsText(srv);
    const sqes2 = sample(t, 'basestation_io_uring_sqes_total');
    const submits2 = sample(t, 'basestation_io_uring_submits_total');
    // 10 publishes to 19 members: at least one send per member that got
    // them, and fewer submissions than sends (one per turn, for all).
    assert.ok(sqes2 - sqes1 >= 19, `sqes ${sqes1} -> ${sqes2}`);
    assert.ok(submits2 - submits1 >= 1 && submits2 - submits1 < sqes2 - sqes1,
      `submits ${submits1} -> ${submits2}, sqes ${sqes1} -> ${sqes2}`);
    assert.ok(submits1 > submits0);
    assert.equal(sample(t, 'basestation_io_uring_inflight'), 0);
  } finally {
    for (const c of cs) c.terminate();
    await srv.cleanup();
  }
});

test('--io uring where the probe fails (test hook): epoll, with an event=io fallback line', async () => {
  const srv = await startServer({ args: ['--io', 'uring'], env: { BASESTATION_TEST_URING_FAIL: '1' } });
  const cs = [];
  try {
    assert.match(srv.logs, /level=warn event=io io=epoll requested=uring fallback=epoll reason="[^"]*test hook[^"]*"/);
    const t = await metricsText(srv);
    assert.match(t, /^basestation_io_path\{io="epoll"\} 1$/m);
    assert.equal(sample(t, 'basestation_io_uring_sqes_total'), null);
    cs.push(...await roomOf(srv, 'r', 3));
    await deliverAll(cs, 5);
  } finally {
    for (const c of cs) c.terminate();
    await srv.cleanup();
  }
});

test('BASESTATION_IO=epoll: epoll without a fallback; a bad value is refused', async () => {
  const srv = await startServer({ env: { BASESTATION_IO: 'epoll' } });
  const cs = [];
  try {
    assert.match(srv.logs, /level=info event=io io=epoll\n/);
    assert.doesNotMatch(srv.logs, /fallback/);
    assert.match(await metricsText(srv), /^basestation_io_path\{io="epoll"\} 1$/m);
    cs.push(...await roomOf(srv, 'r', 3));
    await deliverAll(cs, 5);
  } finally {
    for (const c of cs) c.terminate();
    await srv.cleanup();
  }
  await assert.rejects(startServer({ args: ['--io', 'poll'] }), /invalid value for --io: poll/);
});

test('--io uring with --tls-cert: epoll, said so (TLS writes through OpenSSL)', { skip: needTool('openssl', 'makes the test certificate') }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-io-tls-'));
  let srv;
  try {
    const { cert, key } = selfSignedPair(dir, 'io');
    srv = await startServer({ args: ['--io', 'uring', '--tls-cert', cert, '--tls-key', key] });
    assert.match(srv.logs, /level=info event=io io=epoll requested=uring reason="--tls-cert: TLS connections write through OpenSSL"/);
    // The HTTP port speaks TLS too.
    const text = await new Promise((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: srv.httpPort, path: '/metrics', ca: readFileSync(cert) }, (res) => {
        let b = '';
        res.on('data', (d) => { b += d; });
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    assert.match(text, /^basestation_io_path\{io="epoll"\} 1$/m);
  } finally {
    if (srv) await srv.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Publish 2000-byte messages until the paused reader has a send in flight
// (the ring says so) and bytes buffered; bounded (30 MB: loopback buffers
// have been seen to take over 8 MB from a reader that does not read).
async function stallReader(srv, pub, slowUid) {
  const payload = incompressible(2000);
  for (let b = 0; b < 15000; b += 50) {
    for (let i = b; i < b + 50; i++) pub.send({ type: 'publish', room: 'r', data: { i, payload } });
    for (let i = b; i < b + 50; i++) await pub.next('ack', 20000);
    const inflight = sample(await metricsText(srv), 'basestation_io_uring_inflight');
    const slow = (await connsOf(srv)).find((c) => c.uid === slowUid);
    if (inflight > 0 && slow && slow.out_buffered > 0) return slow.out_buffered;
  }
  throw new Error('the paused reader never had a send in flight');
}

test('--io uring: a send in flight to a reader that does not read counts as buffered, and its connection goes safely', async () => {
  const srv = await startServer({ args: ['--io', 'uring', '--rate', '0', '--max-outbuf', '50000000'] });
  const cs = [];
  try {
    const [pub, fast] = await roomOf(srv, 'r', 2);
    cs.push(pub, fast);
    const slow = await connect(srv, 'slow');
    cs.push(slow);
    slow.send({ type: 'join', room: 'r' });
    await slow.next('joined');
    slow.ws._socket.pause();
    const buffered = await stallReader(srv, pub, 'slow');
    assert.ok(buffered > 0);
    // The peer goes (RST) while its send is in the kernel: the send fails
    // or is cancelled, the connection is freed after its completion.
    slow.ws._socket.resetAndDestroy();
    const deadline = Date.now() + 10000;
    while ((await connsOf(srv)).some((c) => c.uid === 'slow') && Date.now() < deadline) await sleep(50);
    assert.ok(!(await connsOf(srv)).some((c) => c.uid === 'slow'), 'the reset reader is still listed');
    let inflight = 1;
    while (inflight > 0 && Date.now() < deadline) {
      inflight = sample(await metricsText(srv), 'basestation_io_uring_inflight');
      if (inflight > 0) await sleep(50);
    }
    assert.equal(inflight, 0);
    // The others go on.
    fast.queue.length = 0;
    pub.send({ type: 'publish', room: 'r', data: { after: 1 } });
    assert.equal((await fast.next((m) => m.type === 'message' && m.data.after === 1, 20000)).data.after, 1);
    // A second reader stalls, and the server stops with its send in flight:
    // exit 0 within 5 s (srv.cleanup), under ASan without a leak or a use
    // after free.
    const slow2 = await connect(srv, 'slow2');
    cs.push(slow2);
    slow2.send({ type: 'join', room: 'r' });
    await slow2.next('joined');
    slow2.ws._socket.pause();
    await stallReader(srv, pub, 'slow2');
  } finally {
    await srv.cleanup();
    for (const c of cs) c.terminate();
  }
});
