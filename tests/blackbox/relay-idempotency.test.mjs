// ref is an idempotency key per sender: a resend is acked with the original
// seq and never delivered twice, also across a reconnect.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('same ref from the same sender: same seq, one delivery', async () => {
  const tok = token(srv.db, 'alice');
  let a = await connect(srv, 'alice', { token: tok });
  const b = await connect(srv, 'bob');
  a.send({ type: 'send', to: 'bob', data: 'once', ref: 'k1' });
  const first = await a.next('ack');
  await b.next('message');
  a.send({ type: 'send', to: 'bob', data: 'once', ref: 'k1' });
  const again = await a.next('ack');
  assert.equal(again.seq, first.seq);
  // after a reconnect too
  await a.close();
  a = await connect(srv, 'alice', { token: tok });
  a.send({ type: 'send', to: 'bob', data: 'once', ref: 'k1' });
  assert.equal((await a.next('ack')).seq, first.seq);
  assert.ok(await b.none('message', 300), 'a resend was delivered');
  // Integer and string refs are different keys; another sender's ref too.
  a.send({ type: 'send', to: 'bob', data: 'int', ref: 1 });
  a.send({ type: 'send', to: 'bob', data: 'str', ref: '1' });
  const s1 = (await a.next('ack')).seq, s2 = (await a.next('ack')).seq;
  assert.notEqual(s1, s2);
  const c = await connect(srv, 'carol');
  c.send({ type: 'send', to: 'bob', data: 'carol', ref: 'k1' });
  assert.ok((await c.next('ack')).seq > s2);
  await a.close(); await b.close(); await c.close();
});

test('two resends in one burst are deduplicated too', async () => {
  const a = await connect(srv, 'dora');
  const b = await connect(srv, 'ed');
  for (let i = 0; i < 3; i++) a.send({ type: 'publish', room: 'x', data: 1, ref: 'burst' });
  // not a member: forbidden; join and try again
  for (let i = 0; i < 3; i++) assert.equal((await a.next('error')).code, 'forbidden');
  a.send({ type: 'join', room: 'x' }); await a.next('joined');
  b.send({ type: 'join', room: 'x' }); await b.next('joined');
  for (let i = 0; i < 3; i++) a.send({ type: 'publish', room: 'x', data: 1, ref: 'burst' });
  const seqs = [];
  for (let i = 0; i < 3; i++) seqs.push((await a.next('ack')).seq);
  assert.equal(new Set(seqs).size, 1);
  await b.next('message');
  assert.ok(await b.none('message', 300));
  await a.close(); await b.close();
});
