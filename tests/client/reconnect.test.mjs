// Reconnecting: the broker restarts (same db, same port), the socket drops,
// the offline queue, unacknowledged sends, re-joining and re-subscribing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, copyFileSync, existsSync } from 'node:fs';
import {
  startBroker, restartBroker, stopBroker, makeClient, until, texts, recordingWs, api, tempDb, sleep,
} from './lib.mjs';

let srv, dir;
const clients = [];
const mk = (...a) => { const c = makeClient(srv, ...a); clients.push(c); return c; };
before(async () => {
  const t = tempDb();
  dir = t.dir;
  srv = await startBroker(t.db);
});
after(async () => {
  for (const c of clients) c.close();
  await stopBroker(srv);
  rmSync(dir, { recursive: true, force: true });
});

test('the broker restarts: the client reconnects, resumes by seq, and gets what was sent meanwhile', { timeout: 30000 }, async () => {
  const rec = recordingWs();
  // A fixed, longer delay so that a message is stored before bob is back.
  const bob = mk('bob', { WebSocket: rec.WebSocket, minDelay: 1500, maxDelay: 1500, factor: 1, jitter: 0 });
  const alice = mk('alice');
  await Promise.all([bob.waitFor('open', 5000), alice.waitFor('open', 5000)]);
  const epoch = bob.epoch;
  const a1 = await alice.send('bob', { text: 'before' });
  await until(() => bob.lastSeq === a1.seq, 5000, 'bob gets "before"');

  const t0 = Date.now();
  srv = await restartBroker(srv);
  await until(() => alice.state === 'open', 5000, 'alice back');
  // Bob is still waiting for his retry: this one is stored for him.
  assert.notEqual(bob.state, 'open');
  const a2 = await alice.send('bob', { text: 'while bob was away' });
  assert.ok(a2.seq > a1.seq);
  await bob.waitFor('open', 10000);
  assert.ok(Date.now() - t0 < 10000);
  await until(() => bob.log.resumed.length === 1, 5000, 'resumed');
  assert.deepEqual(bob.log.resumed[0].complete, true);
  assert.equal(bob.log.resumed[0].since, a1.seq);
  const q = new URL(rec.urls.at(-1)).searchParams;
  assert.equal(q.get('since'), String(a1.seq));
  assert.equal(q.get('epoch'), epoch);
  assert.equal(q.get('uid'), 'bob');
  await until(() => bob.log.messages.length === 2, 5000, 'the message sent while away');
  assert.deepEqual(texts(bob), ['before', 'while bob was away']);
  assert.equal(bob.epoch, epoch);
  assert.deepEqual(bob.log.states.slice(-2), ['reconnecting', 'open']);
  // And it keeps working.
  const b1 = await bob.send('alice', { text: 'back' });
  await until(() => alice.log.messages.some((m) => m.seq === b1.seq), 5000, 'alice gets "back"');
});

test('the offline queue is flushed after the restart, each message exactly once', { timeout: 30000 }, async () => {
  const carol = mk('carol', { minDelay: 200, maxDelay: 400 });
  const dave = mk('dave');
  await Promise.all([carol.waitFor('open', 5000), dave.waitFor('open', 5000)]);
  await stopBroker(srv);
  await until(() => carol.state === 'reconnecting', 5000, 'carol notices');
  const acks = [1, 2, 3].map((i) => carol.send('dave', { text: 'queued ' + i }));
  assert.equal(carol.queued, 3);
  await sleep(300);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort });
  const seqs = (await Promise.all(acks)).map((a) => a.seq);
  assert.equal(new Set(seqs).size, 3);
  assert.deepEqual([...seqs].sort((x, y) => x - y), seqs, 'stored in the order sent');
  await until(() => dave.log.messages.length >= 3, 8000, 'dave gets three');
  await sleep(300);
  assert.deepEqual(texts(dave), ['queued 1', 'queued 2', 'queued 3']);
  // The broker stored each once.
  const r = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE data LIKE '%queued%'" }, 'test-admin-key');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.rows[0][0], 3);
  assert.equal(carol.queued, 0);
});

test('sends whose ack was lost are resent with the same ref and delivered once', { timeout: 30000 }, async () => {
  const rec = recordingWs();
  const erin = mk('erin', { WebSocket: rec.WebSocket, minDelay: 100, maxDelay: 200 });
  const frank = mk('frank');
  await Promise.all([erin.waitFor('open', 5000), frank.waitFor('open', 5000)]);
  // The acks never reach the client (they are lost with the connection).
  rec.filter = (f) => (f.type === 'ack' ? [] : [f]);
  const p1 = erin.send('frank', { text: 'unacked 1' });
  const p2 = erin.send('frank', { text: 'unacked 2' });
  await until(() => frank.log.messages.length === 2, 5000, 'frank gets both');
  assert.equal(erin.queued, 2);
  const refs = rec.sent.filter((f) => f.type === 'send').map((f) => f.ref);
  rec.filter = null;
  rec.last().terminate();
  const [a1, a2] = await Promise.all([p1, p2]);
  assert.deepEqual([a1.seq, a2.seq], frank.log.messages.map((m) => m.seq));
  // The same refs went out again on the new connection.
  const resent = rec.sent.filter((f) => f.type === 'send').map((f) => f.ref);
  assert.deepEqual(resent, [...refs, ...refs]);
  await sleep(300);
  assert.deepEqual(texts(frank), ['unacked 1', 'unacked 2']);
});

test('resume by seq after the socket drops', { timeout: 30000 }, async () => {
  const rec = recordingWs();
  const gina = mk('gina', { WebSocket: rec.WebSocket, minDelay: 800, maxDelay: 800, factor: 1, jitter: 0 });
  await gina.waitFor('open', 5000);
  const s1 = (await api(srv, 'POST', '/api/publish', { to: 'gina', data: { text: 'one' } })).json.seq;
  await until(() => gina.lastSeq === s1, 5000, 'one');
  rec.last().terminate();
  await until(() => gina.state === 'reconnecting', 5000, 'drop noticed');
  const s2 = (await api(srv, 'POST', '/api/publish', { to: 'gina', data: { text: 'two' } })).json.seq;
  const s3 = (await api(srv, 'POST', '/api/publish', { to: 'gina', data: { text: 'three' } })).json.seq;
  await until(() => gina.log.messages.length === 3, 8000, 'two and three');
  assert.deepEqual(gina.log.messages.map((m) => m.seq), [s1, s2, s3]);
  assert.match(rec.urls[1], new RegExp(`since=${s1}\\b`));
  assert.equal(gina.log.resumed.length, 1);
  assert.deepEqual({ since: gina.log.resumed[0].since, complete: gina.log.resumed[0].complete }, { since: s1, complete: true });
  assert.equal(gina.duplicates, 0);
});

test('rooms are re-joined and tasks re-subscribed after a reconnect', { timeout: 30000 }, async () => {
  const rec = recordingWs();
  const r = await api(srv, 'POST', '/api/tasks', { id: 'rj-task', title: 'T', steps: ['s1', 's2'], owner: 'hank' });
  assert.equal(r.status, 201, r.text);
  const hank = mk('hank', { WebSocket: rec.WebSocket });
  const ivan = mk('ivan');
  await Promise.all([hank.waitFor('open', 5000), ivan.waitFor('open', 5000)]);
  await hank.join('lobby');
  await ivan.join('lobby');
  const snap = await hank.subscribe('rj-task');
  rec.last().terminate();
  await until(() => hank.log.connects.length === 2 && hank.state === 'open', 5000, 'reconnected');
  const second = rec.sockets.length - 1;
  await until(() => rec.sent.filter((f) => f.type === 'subscribe').length === 2, 5000, 'a second subscribe');
  const joins = rec.sent.filter((f) => f.type === 'join' && f.room === 'lobby');
  assert.equal(joins.length, 2);
  assert.equal(second, 1);
  // The task moves: the new connection is told.
  const v0 = hank.log.tasks.length;
  await api(srv, 'POST', '/api/tasks/rj-task/progress', { step: 0, status: 'finish' });
  await until(() => hank.log.tasks.length > v0, 5000, 'task push after reconnect');
  assert.equal(hank.task('rj-task').steps[0].status, 'finish');
  assert.ok(hank.task('rj-task').version > snap.version);
  // The room works both ways.
  const ack = await hank.publish('lobby', { text: 'hi lobby' });
  await until(() => ivan.log.messages.some((m) => m.seq === ack.seq), 5000, 'ivan gets it');
  const conns = await api(srv, 'GET', '/admin/connections', undefined, 'test-admin-key');
  const mine = conns.json.connections.filter((c) => c.uid === 'hank');
  assert.equal(mine.length, 1);
  assert.deepEqual(mine[0].rooms, ['lobby']);
});

test('the retry limit is reached: state failed, then connect() tries again', { timeout: 30000 }, async () => {
  const judy = mk('judy', { maxRetries: 3, minDelay: 50, maxDelay: 100 });
  await judy.waitFor('open', 5000);
  await stopBroker(srv);
  await judy.waitFor('failed', 5000);
  assert.equal(judy.log.closes.length, 4); // the drop, then three failed attempts
  assert.equal(judy.retries, 3);
  const states = judy.log.states.slice(judy.log.states.indexOf('open') + 1);
  assert.deepEqual(states, ['reconnecting', 'failed']);
  // No more attempts.
  await sleep(400);
  assert.equal(judy.log.closes.length, 4);
  const p = judy.send('judy', { text: 'to myself' });
  assert.equal(judy.queued, 1);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort });
  judy.connect();
  await judy.waitFor('open', 5000);
  assert.ok((await p).seq > 0);
});

test('backoff grows by factor, is capped, and jitter only shortens it', () => {
  const c = makeClient({ db: null, url: () => 'ws://127.0.0.1:1/ws' }, 'x', { token: 't', autoConnect: false, minDelay: 100, maxDelay: 1000, factor: 3, jitter: 0 });
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => c.delay(n)), [100, 300, 900, 1000, 1000]);
  const j = makeClient({ db: null, url: () => 'ws://127.0.0.1:1/ws' }, 'x', { token: 't', autoConnect: false, minDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5 });
  for (let i = 0; i < 50; i++) {
    const d = j.delay(2);
    assert.ok(d >= 200 && d <= 400, String(d));
  }
});

test('heartbeat: a broker that stops answering is detected, and the client comes back', { timeout: 30000 }, async () => {
  const kate = mk('kate', { heartbeatInterval: 300, pongTimeout: 400, connectTimeout: 800, minDelay: 100, maxDelay: 300 });
  await kate.waitFor('open', 5000);
  await sleep(800); // pings are answered: still the first connection
  assert.equal(kate.log.connects.length, 1);
  assert.equal(kate.log.errors.length, 0);
  srv.proc.kill('SIGSTOP');
  try {
    await until(() => kate.log.errors.some((e) => e.code === 'heartbeat_timeout'), 3000, 'heartbeat timeout');
    assert.notEqual(kate.state, 'open');
    // The TCP connect succeeds (the kernel accepts), but nothing answers.
    await until(() => kate.log.errors.some((e) => e.code === 'connect_timeout'), 4000, 'connect timeout');
  } finally {
    srv.proc.kill('SIGCONT');
  }
  await kate.waitFor('open', 8000);
  const ack = await kate.send('kate', { text: 'alive' });
  assert.ok(ack.seq > 0);
});

test('a database restored from an older copy (same epoch, lower seq): the client starts over from there', { timeout: 30000 }, async () => {
  const lena = mk('lena', { minDelay: 100, maxDelay: 200 });
  await lena.waitFor('open', 5000);
  await api(srv, 'POST', '/api/publish', { to: 'lena', data: { text: 'kept' } });
  await until(() => lena.log.messages.length === 1, 5000, 'kept');
  // Back up the database while the broker is stopped (consistent files).
  const files = ['', '-wal', '-shm'];
  await stopBroker(srv);
  for (const ext of files) if (existsSync(srv.db + ext)) copyFileSync(srv.db + ext, srv.db + '.bak' + ext);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort });
  await until(() => lena.state === 'open', 5000, 'lena back');
  for (const t of ['lost 1', 'lost 2', 'lost 3']) await api(srv, 'POST', '/api/publish', { to: 'lena', data: { text: t } });
  await until(() => lena.log.messages.length === 4, 5000, 'the three that will be lost');
  const high = lena.lastSeq;
  // Restore the backup: the same epoch, a history that ends three seqs earlier.
  await stopBroker(srv);
  for (const ext of files) {
    rmSync(srv.db + ext, { force: true });
    if (existsSync(srv.db + '.bak' + ext)) copyFileSync(srv.db + '.bak' + ext, srv.db + ext);
  }
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort });
  await until(() => lena.log.errors.some((e) => e.code === 'history_rewound'), 5000, 'rewind noticed');
  await until(() => lena.state === 'open' && lena.lastSeq < high, 5000, 'reconnected from the older seq');
  // New messages reuse the seqs of the lost ones: delivered, not taken for duplicates.
  const r = await api(srv, 'POST', '/api/publish', { to: 'lena', data: { text: 'after the restore' } });
  assert.ok(r.json.seq <= high, `seq ${r.json.seq} reused (<= ${high})`);
  await until(() => texts(lena).includes('after the restore'), 5000, 'the new message');
  assert.equal(lena.duplicates, 0);
});
