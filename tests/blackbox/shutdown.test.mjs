// Contract §3: on SIGTERM/SIGINT every client gets close 1001, pending
// writes are committed, the process exits 0 within 5 s. A client that
// does not cooperate does not hold the exit back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { BIN, startServer, connect, rawWs, token, upgradeRequest, sleep } from './lib.mjs';

// Wait for the exit after a signal; returns { code, sig, ms }.
async function signalAndWait(srv, sig) {
  const t0 = Date.now();
  srv.proc.kill(sig);
  let timer;
  const r = await Promise.race([srv.exitedPromise, new Promise((res) => { timer = setTimeout(res, 8000, null); })]);
  clearTimeout(timer);
  if (!r) srv.proc.kill('SIGKILL');
  return { ...(r || { code: null, sig: 'timeout' }), ms: Date.now() - t0 };
}

function sql(db, q) {
  return JSON.parse(execFileSync(BIN, ['sql', '--json', q, '--db', db], { encoding: 'utf8' })).rows;
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig}: every client gets 1001, exit 0 within 5 s`, async () => {
    const srv = await startServer({ keepDb: true });
    try {
      const clients = [];
      for (const uid of ['a', 'b', 'c', 'a']) clients.push(await connect(srv, uid));
      const raw = await rawWs(srv, 'raw');
      // one mid-handshake: it is dropped, without a 101
      const half = net.connect(srv.wsPort, '127.0.0.1');
      let halfReply = '', halfClosed = false;
      half.on('data', (d) => { halfReply += d; });
      half.on('close', () => { halfClosed = true; });
      half.on('error', () => {});
      await new Promise((r, j) => { half.once('connect', r); half.once('error', j); });
      half.write('GET /ws HTTP/1.1\r\nHost: x\r\n');
      await sleep(100);

      const closes = clients.map((c) => c.closed);
      const r = await signalAndWait(srv, sig);
      assert.equal(r.code, 0, `exit ${JSON.stringify(r)}\n${srv.logs.slice(-2000)}`);
      assert.ok(r.ms < 5000, `exit after ${r.ms} ms`);
      for (const c of await Promise.all(closes)) assert.equal(c.code, 1001);
      assert.equal(await raw.closeCode(1000), 1001);
      assert.ok(await raw.waitEnd(1000));
      for (let i = 0; i < 20 && !halfClosed; i++) await sleep(50);
      assert.ok(halfClosed, 'mid-handshake socket dropped');
      assert.equal(halfReply, '');
      // the listener is gone
      const refused = await new Promise((resolve) => {
        const s = net.connect(srv.wsPort, '127.0.0.1');
        s.on('error', () => resolve(true));
        s.on('connect', () => { s.destroy(); resolve(false); });
      });
      assert.ok(refused, 'no more connections accepted');
    } finally {
      if (!srv.exited) srv.proc.kill('SIGKILL');
      await srv.exitedPromise;
      const { rmSync } = await import('node:fs');
      rmSync(srv.dir, { recursive: true, force: true });
    }
  });
}

test('clients that ignore the close do not hold the exit back', async () => {
  const srv = await startServer();
  try {
    // half-open: never sends its FIN, never answers the close
    const tok = token(srv.db, 'stubborn');
    const sockets = [];
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ port: srv.wsPort, host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => {});
      await new Promise((r, j) => { s.once('connect', r); s.once('error', j); });
      s.write(upgradeRequest(srv.wsPort, { query: '?token=' + tok }));
      let got = '';
      await new Promise((r, j) => {
        const t = setTimeout(() => j(new Error('no connect frame')), 5000);
        s.on('data', (d) => { got += d; if (got.includes('"connect"')) { clearTimeout(t); r(); } });
      });
      if (i === 2) s.pause(); // and one stops reading altogether
      sockets.push(s);
    }
    const r = await signalAndWait(srv, 'SIGTERM');
    assert.equal(r.code, 0, srv.logs.slice(-2000));
    assert.ok(r.ms < 5000, `exit after ${r.ms} ms`);
    sockets.forEach((s) => s.destroy());
  } finally {
    if (!srv.exited) srv.proc.kill('SIGKILL');
    await srv.exitedPromise;
  }
});

test('after SIGTERM every acked message is in the database and is delivered after a restart', async (t) => {
  const srv = await startServer({ keepDb: true });
  const db = srv.db;
  const acked = new Set();
  let restarted;
  try {
    const a = await connect(srv, 'sender');
    // a stream of sends; SIGTERM lands in the middle of it
    a.ws.on('message', (d) => { const m = JSON.parse(d); if (m.type === 'ack') acked.add(m.seq); });
    let N = 0, open = true;
    a.closed.then(() => { open = false; });
    const sender = (async () => {
      while (open && N < 20000) {
        for (let k = 0; k < 10; k++, N++) a.send({ type: 'send', to: 'offline-bob', data: { i: N }, ref: 'm' + N });
        await sleep(1);
      }
    })();
    for (let i = 0; i < 400 && acked.size < 50; i++) await sleep(5);
    const r = await signalAndWait(srv, 'SIGTERM');
    await sender;
    assert.equal(r.code, 0, srv.logs.slice(-2000));
    assert.ok(r.ms < 5000);
    assert.equal((await a.closed).code, 1001);
    assert.ok(acked.size >= 20, `${acked.size} acks before the stop`);

    const stored = new Set(sql(db, "SELECT seq FROM messages WHERE to_uid = 'offline-bob'").map((row) => row[0]));
    const missing = [...acked].filter((s) => !stored.has(s));
    assert.deepEqual(missing, [], 'acked but not stored');
    assert.equal(sql(db, 'SELECT count(*) FROM messages')[0][0], stored.size);
    t.diagnostic(`${acked.size} acked, ${stored.size} stored of ${N} sent`);

    // the same database again: bob gets what was stored, in order
    restarted = await startServer({ db });
    const bob = await connect(restarted, 'offline-bob');
    const got = [];
    for (let i = 0; i < stored.size; i++) got.push((await bob.next('message')).seq);
    assert.deepEqual(got, [...stored].sort((x, y) => x - y));
    await bob.close();
  } finally {
    if (!srv.exited) srv.proc.kill('SIGKILL');
    await srv.exitedPromise;
    if (restarted) await restarted.cleanup();
    const { rmSync } = await import('node:fs');
    rmSync(srv.dir, { recursive: true, force: true });
  }
});
