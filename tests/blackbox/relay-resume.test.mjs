// Resume by seq: replay in order, then `resumed`; live traffic during a
// replay is held and sent after it — no gap, no duplicate, no reordering.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, Client } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--rate', '0'] }); });
after(async () => { await srv.cleanup(); });

test('since on the URL replays everything after it, then resumed', async () => {
  const a = await connect(srv, 'alice');
  const b = await connect(srv, 'bob');
  const seqs = [];
  for (let i = 0; i < 10; i++) { a.send({ type: 'send', to: 'bob', data: i }); seqs.push((await a.next('ack')).seq); }
  for (let i = 0; i < 10; i++) await b.next('message');
  const epoch = b.hello.epoch;
  const r = await connect(srv, 'bob', { query: { since: String(seqs[3]), epoch } });
  const got = [];
  for (let i = 0; i < 6; i++) got.push(await r.next('message'));
  assert.deepEqual(got.map((m) => m.seq), seqs.slice(4));
  const res = await r.next('resumed');
  assert.equal(res.since, seqs[3]);
  assert.equal(res.complete, true);
  assert.ok(res.last >= seqs[9]);
  // resumed comes after the replayed messages
  assert.ok(r.all.indexOf(res) > r.all.indexOf(got[5]));
  await Promise.all([a.close(), b.close(), r.close()]);
});

test('resume frame, and a foreign epoch gives complete:false', async () => {
  const a = await connect(srv, 'carol');
  a.send({ type: 'send', to: 'dave', data: 'x' });
  const { seq } = await a.next('ack');
  const d = await connect(srv, 'dave');
  await d.next('message');
  d.send({ type: 'resume', since: seq - 1, ref: 'rs' });
  // Already seen on this connection: nothing is sent twice.
  const res = await d.next('resumed');
  assert.equal(res.ref, 'rs');
  assert.equal(res.complete, true);
  assert.ok(await d.none('message', 200));
  const d2 = await connect(srv, 'dave', { query: { since: '0', epoch: 'not-our-epoch' } });
  const m = await d2.next('message');
  assert.equal(m.seq, seq);
  assert.equal((await d2.next('resumed')).complete, false);
  d2.send({ type: 'resume', since: -1 });
  assert.equal((await d2.next('error')).code, 'bad_request');
  d2.send({ type: 'resume', since: 'x' });
  assert.equal((await d2.next('error')).code, 'bad_request');
  await Promise.all([a.close(), d.close(), d2.close()]);
});

test('resume racing live traffic: no gap, no duplicate, in order', async () => {
  const pub = await connect(srv, 'pub');
  const sub = await connect(srv, 'sub');
  for (const c of [pub, sub]) { c.send({ type: 'join', room: 'race' }); await c.next('joined'); }
  // History to replay.
  const N = 2000;
  for (let i = 0; i < N; i++) pub.send({ type: 'publish', room: 'race', data: i });
  let last = 0;
  for (let i = 0; i < N; i++) last = (await pub.next('ack', 10000)).seq;
  await sub.close();
  const first = last - N + 1;
  // Reconnect with since=first-1 while the publisher keeps going.
  const tok = token(srv.db, 'sub');
  const q = new URLSearchParams({ token: tok, since: String(first - 1) });
  const r = new Client(srv.url('?' + q));
  let live = 0;
  const more = 500;
  const pumping = (async () => {
    for (let i = 0; i < more; i++) {
      pub.send({ type: 'publish', room: 'race', data: N + i });
      if (i % 50 === 0) await new Promise((res) => setTimeout(res, 1));
    }
    for (let i = 0; i < more; i++) { await pub.next('ack', 10000); live++; }
  })();
  await r.opened;
  await pumping;
  const deadline = Date.now() + 15000;
  let seen = () => r.all.filter((m) => m.type === 'message');
  while (seen().length < N + more && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  const msgs = seen();
  assert.equal(live, more);
  assert.equal(msgs.length, N + more, 'gap or duplicate');
  for (let i = 1; i < msgs.length; i++) assert.ok(msgs[i].seq > msgs[i - 1].seq, 'out of order at ' + i);
  assert.deepEqual(msgs.map((m) => m.data), [...Array(N + more).keys()]);
  const res = r.all.find((m) => m.type === 'resumed');
  assert.ok(res && res.complete === true);
  await Promise.all([pub.close(), r.close()]);
});

test('a since beyond our newest seq (restored backup) is not complete', async () => {
  const a = await connect(srv, 'future');
  const r = await connect(srv, 'future', { query: { since: String(a.hello.seq + 1000) } });
  const res = await r.next('resumed');
  assert.equal(res.complete, false);
  assert.equal(res.since, a.hello.seq + 1000);
  await a.close(); await r.close();
});
