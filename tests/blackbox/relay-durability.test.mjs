// Durability: history, membership and the inbox survive a restart, and
// kill -9 right after a burst of acks loses nothing that was acked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { startServer, connect, tempDb, token, sleep, BIN } from './lib.mjs';

test('restart in the middle: history, membership and inbox survive', async () => {
  const { db, dir } = tempDb();
  let srv, a, b;
  try {
    srv = await startServer({ db });
    const btok = token(db, 'bob');
    a = await connect(srv, 'alice');
    b = await connect(srv, 'bob', { token: btok });
    b.send({ type: 'join', room: 'crew' }); await b.next('joined');
    a.send({ type: 'join', room: 'crew' }); await a.next('joined');
    await b.close();
    a.send({ type: 'publish', room: 'crew', data: 'one' }); const s1 = (await a.next('ack')).seq;
    const epoch = a.hello.epoch;
    await a.close();
    assert.equal((await srv.stop()).code, 0);
    srv = await startServer({ db });
    a = await connect(srv, 'alice');
    assert.equal(a.hello.epoch, epoch, 'epoch changed across a restart');
    assert.equal(a.hello.seq, s1);
    a.send({ type: 'publish', room: 'crew', data: 'two' }); const s2 = (await a.next('ack')).seq;
    assert.ok(s2 > s1);
    b = await connect(srv, 'bob', { token: btok });
    const got = [await b.next('message'), await b.next('message')];
    assert.deepEqual(got.map((m) => m.data), ['one', 'two']);
    await a.close(); await b.close();
    await srv.cleanup(); // checks the exit status
  } finally {
    // Also when an assertion failed: nothing may keep running.
    for (const c of [a, b]) if (c) c.terminate();
    if (srv) await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kill -9 right after a burst: every acked message is there', async () => {
  const { db, dir } = tempDb();
  let srv, a, c;
  try {
    srv = await startServer({ db, args: ['--rate', '0'] });
    a = await connect(srv, 'alice');
    const acked = new Set();
    a.ws.on('message', (d) => { const m = JSON.parse(d); if (m.type === 'ack') acked.add(m.seq); });
    for (let i = 0; i < 3000; i++) a.send({ type: 'send', to: 'bob', data: i, ref: 'k' + i });
    // Kill while acks are still flowing.
    const deadline = Date.now() + 20000;
    while (acked.size < 500 && Date.now() < deadline) await sleep(5);
    await srv.kill9();
    await sleep(50);
    assert.ok(acked.size >= 500, `only ${acked.size} acks within 20 s`);
    const out = execFileSync(BIN, ['sql', '--json', '--max-rows', '100000', 'SELECT seq FROM messages', '--db', db], { encoding: 'utf8' });
    const stored = new Set(JSON.parse(out).rows.map((r) => r[0]));
    for (const s of acked) assert.ok(stored.has(s), 'acked seq ' + s + ' lost');
    // After a restart the store is consistent and seqs continue.
    srv = await startServer({ db });
    c = await connect(srv, 'carol');
    c.send({ type: 'send', to: 'bob', data: 'after' });
    const { seq } = await c.next('ack');
    assert.ok(seq > Math.max(...stored));
    await c.close();
    await srv.cleanup(); // checks the exit status
  } finally {
    for (const x of [a, c]) if (x) x.terminate();
    if (srv) await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
