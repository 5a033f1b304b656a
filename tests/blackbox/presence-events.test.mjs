// Presence events (contract §10): a connection that joined a room with
// "presence":true gets presence.join when a member's first connection comes
// online or an online user joins, presence.leave when the last one goes
// (after a grace period: not before ~1 s, at most 3 s after the close) or
// the user leaves; a return within 1 s sends nothing.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, sleep, rssBytes, metricValue, MEMORY_ENV } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--rate', '0', '--max-rooms', '2'], env: MEMORY_ENV }); });
after(async () => { await srv.cleanup(); });

const isPresence = (m) => m.type === 'presence.join' || m.type === 'presence.leave';

async function watcher(uid, room, extra = { presence: true }) {
  const w = await connect(srv, uid);
  w.send({ type: 'join', room, ...extra, ref: 'w' });
  assert.equal((await w.next('joined')).room, room);
  return w;
}

// A presence.leave for uid, and how long after t0 it came.
async function leaveAfter(w, room, uid, t0) {
  const e = await w.next(isPresence, 4000);
  assert.deepEqual(e, { type: 'presence.leave', room, uid });
  return Date.now() - t0;
}

test('two tabs of one user: one join, one leave after the last closes, within the grace window', async () => {
  const open = [];
  try {
    const w = await watcher('pe-w1', 'tabs'); open.push(w);
    // An online user joining is announced.
    const a1 = await connect(srv, 'pe-alice'); open.push(a1);
    a1.send({ type: 'join', room: 'tabs' }); await a1.next('joined');
    assert.deepEqual(await w.next(isPresence), { type: 'presence.join', room: 'tabs', uid: 'pe-alice' });
    await a1.close();
    let dt = await leaveAfter(w, 'tabs', 'pe-alice', Date.now());
    assert.ok(dt >= 900 && dt <= 3000, `presence.leave ${dt} ms after the close`);

    // Now a member who is offline: her first tab is announced, the second not.
    const t1 = await connect(srv, 'pe-alice'); open.push(t1);
    assert.deepEqual(await w.next(isPresence), { type: 'presence.join', room: 'tabs', uid: 'pe-alice' });
    const t2 = await connect(srv, 'pe-alice'); open.push(t2);
    t2.send({ type: 'join', room: 'tabs', presence: true }); await t2.next('joined');
    assert.ok(await w.none(isPresence, 300), 'the second tab was announced');
    // One tab closing is not the user leaving.
    await t1.close();
    assert.ok(await w.none(isPresence, 2500), 'a presence event while a tab is still open');
    const t0 = Date.now();
    await t2.close();
    dt = await leaveAfter(w, 'tabs', 'pe-alice', t0);
    assert.ok(dt >= 900 && dt <= 3000, `presence.leave ${dt} ms after the last close`);
    assert.ok(await w.none(isPresence, 300));
    // Her own subscribed tab never heard about her.
    assert.equal(t2.all.filter(isPresence).length, 0);
  } finally { for (const c of open) await c.close(); }
});

test('a reconnect within 1 s sends nothing; the presence query still answers', async () => {
  const open = [];
  try {
    const w = await watcher('pe-w2', 'back'); open.push(w);
    const tok = token(srv.db, 'pe-bob');
    const b = await connect(srv, 'pe-bob', { token: tok }); open.push(b);
    b.send({ type: 'join', room: 'back' }); await b.next('joined');
    assert.equal((await w.next(isPresence)).type, 'presence.join');
    await b.close();
    await sleep(400);
    const b2 = await connect(srv, 'pe-bob', { token: tok }); open.push(b2);
    assert.ok(await w.none(isPresence, 2500), 'a reconnect within 1 s was announced');
    w.send({ type: 'presence', room: 'back' });
    assert.deepEqual((await w.next('presence')).online.sort(), ['pe-bob', 'pe-w2']);
    const t0 = Date.now();
    await b2.close();
    const dt = await leaveAfter(w, 'back', 'pe-bob', t0);
    assert.ok(dt >= 900 && dt <= 3000, `presence.leave ${dt} ms after the close`);
  } finally { for (const c of open) await c.close(); }
});

test('leave sends presence.leave at once; joining again sends presence.join', async () => {
  const open = [];
  try {
    const w = await watcher('pe-w3', 'lv'); open.push(w);
    const c = await connect(srv, 'pe-carol'); open.push(c);
    c.send({ type: 'join', room: 'lv', presence: true }); await c.next('joined');
    assert.equal((await w.next(isPresence)).type, 'presence.join');
    const t0 = Date.now();
    c.send({ type: 'leave', room: 'lv' }); await c.next('left');
    assert.deepEqual(await w.next(isPresence, 1000), { type: 'presence.leave', room: 'lv', uid: 'pe-carol' });
    assert.ok(Date.now() - t0 < 900, 'presence.leave of a leave waited for the grace period');
    c.send({ type: 'join', room: 'lv' }); await c.next('joined');
    assert.deepEqual(await w.next(isPresence), { type: 'presence.join', room: 'lv', uid: 'pe-carol' });
    // The watcher leaving ends its subscription.
    w.send({ type: 'leave', room: 'lv' }); await w.next('left');
    c.send({ type: 'leave', room: 'lv' }); await c.next('left');
    assert.ok(await w.none(isPresence, 300), 'an event after the watcher left the room');
    // The leaving user's own subscription ended with its leave: no event
    // about itself.
    assert.equal(c.all.filter(isPresence).length, 0);
  } finally { for (const c of open) await c.close(); }
});

test('presence false or absent: no events; a refused join subscribes nothing', async () => {
  const open = [];
  try {
    const plain = await watcher('pe-w4', 'quiet', {}); open.push(plain);
    const off = await watcher('pe-w5', 'quiet', { presence: false }); open.push(off);
    // Subscribed, then turned off by a join with presence:false.
    const undo = await watcher('pe-w6', 'quiet'); open.push(undo);
    undo.send({ type: 'join', room: 'quiet', presence: false }); await undo.next('joined');
    // At --max-rooms: the join is refused, and with it the subscription.
    const full = await connect(srv, 'pe-w7'); open.push(full);
    for (const room of ['f1', 'f2']) { full.send({ type: 'join', room }); await full.next('joined'); }
    full.send({ type: 'join', room: 'quiet', presence: true });
    assert.equal((await full.next('error')).code, 'forbidden');
    // Not a boolean: the join's bad_request.
    full.send({ type: 'join', room: 'f1', presence: 'yes' });
    assert.equal((await full.next('error')).code, 'bad_request');

    const d = await connect(srv, 'pe-dave'); open.push(d);
    d.send({ type: 'join', room: 'quiet' }); await d.next('joined');
    d.send({ type: 'leave', room: 'quiet' }); await d.next('left');
    d.send({ type: 'join', room: 'quiet' }); await d.next('joined');
    await d.close();
    await sleep(2000);
    for (const c of [plain, off, undo, full]) assert.equal(c.all.filter(isPresence).length, 0, c.hello.uid);
  } finally { for (const c of open) await c.close(); }
});

test('a flapping user: one join, one leave, and bounded memory', async () => {
  const open = [];
  try {
    const w = await watcher('pe-w8', 'flap'); open.push(w);
    const tok = token(srv.db, 'pe-flap');
    const f = await connect(srv, 'pe-flap', { token: tok });
    f.send({ type: 'join', room: 'flap' }); await f.next('joined');
    await f.close();
    const flap = async (n) => {
      for (let i = 0; i < n; i++) await (await connect(srv, 'pe-flap', { token: tok })).close();
    };
    await flap(100);
    const users = await metricValue(srv, 'basestation_users');
    const rss0 = rssBytes(srv);
    await flap(400);
    const grew = rssBytes(srv) - rss0;
    assert.equal(await metricValue(srv, 'basestation_users'), users, 'user records grew while flapping');
    assert.ok(grew < 1024 * 1024, `RSS grew ${grew} bytes over 400 flaps`);
    // Coalesced: the join, then one leave after the last close.
    assert.deepEqual(await w.next(isPresence), { type: 'presence.join', room: 'flap', uid: 'pe-flap' });
    assert.deepEqual(await w.next(isPresence, 4000), { type: 'presence.leave', room: 'flap', uid: 'pe-flap' });
    assert.ok(await w.none(isPresence, 300));
  } finally { for (const c of open) await c.close(); }
});
