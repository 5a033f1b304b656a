// Offline inbox: what arrives while none of a user's connections is online
// is delivered, in seq order, on the next connection — direct and room.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, sleep, openRawWs } from './lib.mjs';

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
async function sendAll(a, to, n, data) {
  for (let i = 0; i < n; i++) a.send({ type: 'send', to, data: data(i) });
  const seqs = [];
  for (let i = 0; i < n; i++) seqs.push((await a.next('ack', 20000)).seq);
  return seqs;
}

test('an inbox longer than --max-replay arrives whole', async () => {
  const s = await startServer({ args: ['--max-replay', '10'] });
  try {
    // Never connected: the inbox holds everything sent to the uid.
    const btok = token(s.db, 'far');
    const a = await connect(s, 'near');
    const seqs = await sendAll(a, 'far', 30, (i) => i);
    let b = await connect(s, 'far', { token: btok });
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

// The inbox cursor moves only past what went whole to the socket: messages
// still in the broker's output buffer when a connection dies are in the
// next inbox (at-least-once: dedupe by seq). Before, the cursor took the
// last seq queued, and what the buffer held was lost. The client below
// stops reading, so the broker's buffer holds messages when it gives up on
// the connection; afterwards the client reads what the kernel still had.
const BIG = 'x'.repeat(60000);

async function drainRaw(raw) {
  raw.socket.resume();
  await raw.waitEnd(10000);
  return raw.frames.filter((f) => f.json && f.json.type === 'message').map((f) => f.json.seq);
}

async function inboxSeqs(s, uid, tok, want) {
  const c = await connect(s, uid, { token: tok });
  const got = [];
  try {
    while (got.length < want) {
      const m = await c.next('message', 2000).catch(() => null);
      if (!m) break;
      got.push(m.seq);
    }
  } finally { await c.close(); }
  return got;
}

function missing(all, ...seen) {
  const have = new Set(seen.flat());
  return all.filter((q) => !have.has(q));
}

test('a slow consumer cut with messages in its buffer finds them in its inbox', async () => {
  const s = await startServer({ args: ['--max-outbuf', '65536'] });
  try {
    const btok = token(s.db, 'slowpoke');
    const raw = await openRawWs(s.wsPort, btok);
    raw.socket.pause();
    const a = await connect(s, 'busy');
    const seqs = await sendAll(a, 'slowpoke', 200, () => BIG);
    const deadline = Date.now() + 10000;
    while (!/event=conn\.slow/.test(s.logs) && Date.now() < deadline) await sleep(50);
    assert.match(s.logs, /event=conn\.slow/);
    // The broker gives a cut connection 5 s to take its close frame, then
    // drops it with what it still buffers.
    await sleep(6000);
    const live = await drainRaw(raw);
    const inbox = await inboxSeqs(s, 'slowpoke', btok, 200);
    assert.deepEqual(missing(seqs, live, inbox), [], `live ${live.length}, inbox from ${inbox[0]}`);
    assert.ok(live.length < 200, 'the test needs messages the client never read');
    await a.close();
  } finally { await s.cleanup(); }
});

// Timed to --idle-timeout: under valgrind (BASESTATION_WRAPPER) the server
// stores the 200 messages more slowly than the 5.5 s the scenario allows,
// so there it is left to the plain and sanitizer runs.
test('an inbox connection that dies mid-replay gets the unsent rest next time', {
  skip: process.env.BASESTATION_WRAPPER ? 'timed scenario: not under a wrapper like valgrind' : false,
}, async () => {
  const s = await startServer({ args: ['--max-outbuf', '65536', '--heartbeat', '0', '--idle-timeout', '2'] });
  try {
    const btok = token(s.db, 'dozer');
    const a = await connect(s, 'writer');
    const seqs = await sendAll(a, 'dozer', 200, () => BIG);
    await a.close();
    const raw = await openRawWs(s.wsPort, btok);
    raw.socket.pause();
    // Silent for --idle-timeout: closed 1001, and dropped 2 s later with
    // its close frame still behind the buffered messages.
    await sleep(5500);
    const live = await drainRaw(raw);
    const inbox = await inboxSeqs(s, 'dozer', btok, 200);
    assert.deepEqual(missing(seqs, live, inbox), [], `live ${live.length}, inbox from ${inbox[0]}`);
    assert.ok(live.length < 200, 'the test needs messages the client never read');
  } finally { await s.cleanup(); }
});
