// Rooms: stored membership, publish to every member connection but the
// publishing one, presence, members-only publishing.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('publish reaches every member connection except the publisher', async () => {
  const a1 = await connect(srv, 'alice');
  const a2 = await connect(srv, 'alice');
  const b = await connect(srv, 'bob');
  const out = await connect(srv, 'outsider');
  for (const [c, ref] of [[a1, 'j1'], [b, 'j2']]) {
    c.send({ type: 'join', room: 'lobby', ref });
    assert.deepEqual(await c.next('joined'), { type: 'joined', room: 'lobby', ref });
  }
  a1.send({ type: 'publish', room: 'lobby', data: { text: 'hello' }, ref: 'p1' });
  const ack = await a1.next('ack');
  assert.equal(ack.ref, 'p1');
  for (const c of [a2, b]) {
    const m = await c.next('message');
    assert.equal(m.seq, ack.seq);
    assert.equal(m.room, 'lobby');
    assert.equal(m.from, 'alice');
    assert.deepEqual(m.data, { text: 'hello' });
  }
  assert.ok(await a1.none('message', 200), 'the publishing connection got its own message');
  assert.ok(await out.none('message', 100), 'a non-member got a room message');
  await Promise.all([a1, a2, b, out].map((c) => c.close()));
});

test('only members may publish', async () => {
  const c = await connect(srv, 'mallory');
  c.send({ type: 'publish', room: 'lobby', data: 1, ref: 'x' });
  const e = await c.next('error');
  assert.equal(e.code, 'forbidden');
  assert.equal(e.ref, 'x');
  await c.close();
});

test('presence lists online members; leave stops delivery', async () => {
  const a = await connect(srv, 'p-alice');
  const b = await connect(srv, 'p-bob');
  a.send({ type: 'join', room: 'pres' }); await a.next('joined');
  b.send({ type: 'join', room: 'pres' }); await b.next('joined');
  a.send({ type: 'presence', room: 'pres', ref: 1 });
  const p = await a.next('presence');
  assert.equal(p.room, 'pres'); assert.equal(p.ref, 1);
  assert.deepEqual(p.online.sort(), ['p-alice', 'p-bob']);
  await b.close();
  await new Promise((r) => setTimeout(r, 100));
  a.send({ type: 'presence', room: 'pres' });
  assert.deepEqual((await a.next('presence')).online, ['p-alice']);
  const b2 = await connect(srv, 'p-bob');
  b2.send({ type: 'leave', room: 'pres', ref: 'l' });
  assert.deepEqual(await b2.next('left'), { type: 'left', room: 'pres', ref: 'l' });
  a.send({ type: 'publish', room: 'pres', data: 'after-leave' }); await a.next('ack');
  assert.ok(await b2.none('message', 300));
  await a.close(); await b2.close();
});

test('bad room names are refused', async () => {
  const a = await connect(srv, 'q');
  for (const room of ['', 'x'.repeat(129), 5, null, 'a\u0001b']) {
    a.send({ type: 'join', room });
    assert.equal((await a.next('error')).code, 'bad_request');
  }
  await a.close();
});
