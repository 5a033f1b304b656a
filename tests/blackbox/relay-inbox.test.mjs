// Offline inbox: what arrives while none of a user's connections is online
// is delivered, in seq order, on the next connection — direct and room.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, sleep } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('messages sent while away arrive on return, in order, once', async () => {
  const btok = token(srv.db, 'bob');
  let b = await connect(srv, 'bob', { token: btok });
  b.send({ type: 'join', room: 'team' }); await b.next('joined');
  await b.close();
  await sleep(100);
  const a = await connect(srv, 'alice');
  a.send({ type: 'join', room: 'team' }); await a.next('joined');
  const seqs = [];
  for (let i = 0; i < 5; i++) {
    a.send({ type: i % 2 ? 'publish' : 'send', to: 'bob', room: 'team', data: i });
    seqs.push((await a.next('ack')).seq);
  }
  b = await connect(srv, 'bob', { token: btok });
  const got = [];
  for (let i = 0; i < 5; i++) got.push(await b.next('message'));
  assert.deepEqual(got.map((m) => m.seq), seqs);
  assert.deepEqual(got.map((m) => m.data), [0, 1, 2, 3, 4]);
  assert.ok(await b.none('message', 300));
  // A second tab opened while the first is online gets no inbox.
  const b2 = await connect(srv, 'bob', { token: btok });
  assert.ok(await b2.none('message', 300));
  // Going offline and coming back: nothing old is repeated.
  await b.close(); await b2.close();
  await sleep(100);
  const b3 = await connect(srv, 'bob', { token: btok });
  assert.ok(await b3.none('message', 300));
  await b3.close(); await a.close();
});

test('a user who never connected gets direct messages sent to them', async () => {
  const a = await connect(srv, 'x-sender');
  a.send({ type: 'send', to: 'newcomer', data: 'welcome' });
  const { seq } = await a.next('ack');
  const n = await connect(srv, 'newcomer');
  const m = await n.next('message');
  assert.equal(m.seq, seq); assert.equal(m.data, 'welcome');
  await a.close(); await n.close();
});

test('room messages before joining are not in the inbox', async () => {
  const a = await connect(srv, 'early');
  a.send({ type: 'join', room: 'late-room' }); await a.next('joined');
  a.send({ type: 'publish', room: 'late-room', data: 'before' }); await a.next('ack');
  let l = await connect(srv, 'latecomer');
  l.send({ type: 'join', room: 'late-room' }); await l.next('joined');
  await l.close(); await sleep(100);
  a.send({ type: 'publish', room: 'late-room', data: 'after' }); await a.next('ack');
  l = await connect(srv, 'latecomer');
  const m = await l.next('message');
  assert.equal(m.data, 'after');
  assert.ok(await l.none('message', 300));
  await a.close(); await l.close();
});

// --max-replay bounds a resume, not the inbox: an inbox longer than it is
// delivered whole (before: cut at --max-replay with no sign, the cursor
// moved past the rest, which was never delivered).
test('an inbox longer than --max-replay arrives whole', async () => {
  const s = await startServer({ args: ['--max-replay', '10'] });
  try {
    const btok = token(s.db, 'far');
    let b = await connect(s, 'far', { token: btok });
    await b.close();
    await sleep(100);
    const a = await connect(s, 'near');
    const seqs = [];
    for (let i = 0; i < 30; i++) { a.send({ type: 'send', to: 'far', data: i, ref: i }); }
    for (let i = 0; i < 30; i++) seqs.push((await a.next('ack')).seq);
    b = await connect(s, 'far', { token: btok });
    const got = [];
    for (let i = 0; i < 30; i++) got.push((await b.next('message')).seq);
    assert.deepEqual(got, seqs);
    assert.ok(await b.none('message', 300));
    assert.ok(b.all.every((m) => m.type !== 'resumed'), 'no resumed frame for an inbox');
    await b.close();
    await sleep(100);
    // Nothing is repeated on the next connection.
    b = await connect(s, 'far', { token: btok });
    assert.ok(await b.none('message', 300));
    await b.close();
    // A resume is still bounded, and says so.
    b = await connect(s, 'far', { token: btok, query: { since: '0' } });
    const res = await b.next('resumed');
    assert.equal(res.complete, false);
    assert.equal(b.all.filter((m) => m.type === 'message').length, 10);
    await b.close(); await a.close();
  } finally { await s.cleanup(); }
});
