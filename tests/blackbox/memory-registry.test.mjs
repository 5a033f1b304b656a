// Issue 11 item 2: what a client asks for and is refused, or asks for and
// gives back, must not stay in the broker's memory. Room records live while
// the room has a member, user records while the user is connected or a
// member. Checked two ways: the /metrics gauges basestation_rooms and
// basestation_users (exact), and the broker's VmRSS (on a sanitizer build
// with its quarantine off, see MEMORY_ENV).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, api, jwt, sleep, Client, rssBytes, metricValue, MEMORY_ENV, SANITIZED } from './lib.mjs';

const MiB = 1024 * 1024;
// The bound; a sanitizer build's own bookkeeping needs some more
// (measured: plain under 0.1 MiB, ASan under 0.6 MiB; before the fix 7 MiB).
const LIMIT = SANITIZED ? 2 * MiB : MiB;

// Send the frames, then wait until as many replies of the given types
// arrived (bounded in time). Returns those replies.
async function exchange(c, frames, types, ms = 20000) {
  const start = c.all.length;
  for (const f of frames) c.send(f);
  const deadline = Date.now() + ms;
  const want = start + frames.length;
  while (c.all.length < want && Date.now() < deadline) await sleep(5);
  const got = c.all.slice(start);
  c.all.length = 0;
  c.queue.length = 0;
  assert.equal(got.length, frames.length, 'replies');
  for (const m of got) assert.ok(types.includes(m.type), JSON.stringify(m));
  return got;
}

// n refused joins with names never seen, in batches.
async function refusedJoins(c, tag, n) {
  for (let i = 0; i < n; i += 1000) {
    const frames = [];
    for (let k = i; k < Math.min(n, i + 1000); k++) frames.push({ type: 'join', room: `${tag}-${k}` });
    const got = await exchange(c, frames, ['error']);
    assert.ok(got.every((m) => m.code === 'forbidden'));
  }
}

// n join + leave pairs on names never seen, in batches.
async function joinLeave(c, tag, n) {
  for (let i = 0; i < n; i += 500) {
    const frames = [];
    for (let k = i; k < Math.min(n, i + 500); k++) {
      frames.push({ type: 'join', room: `${tag}-${k}` }, { type: 'leave', room: `${tag}-${k}` });
    }
    await exchange(c, frames, ['joined', 'left']);
  }
}

test('refused joins and join/leave pairs leave no room behind', async () => {
  const srv = await startServer({ args: ['--rate', '0', '--max-rooms', '2', '--retention-count', '0'], env: MEMORY_ENV });
  let a;
  try {
    a = await connect(srv, 'alice');
    await exchange(a, [{ type: 'join', room: 'home' }], ['joined']);
    assert.equal(await metricValue(srv, 'basestation_rooms'), 1);

    // Over --max-rooms once alice is in 2 rooms: every join is refused.
    await exchange(a, [{ type: 'join', room: 'second' }], ['joined']);
    await refusedJoins(a, 'warm', 5000);
    const before = rssBytes(srv);
    await refusedJoins(a, 'refused', 50000);
    const grew = rssBytes(srv) - before;
    assert.equal(await metricValue(srv, 'basestation_rooms'), 2, 'refused joins made rooms');
    assert.ok(grew < LIMIT, `50k refused joins grew RSS by ${grew} bytes`);

    // Back to one room: join and leave 30,000 rooms never seen before.
    await exchange(a, [{ type: 'leave', room: 'second' }], ['left']);
    assert.equal(await metricValue(srv, 'basestation_rooms'), 1);
    await joinLeave(a, 'warm', 5000);
    const before2 = rssBytes(srv);
    await joinLeave(a, 'pair', 30000);
    const grew2 = rssBytes(srv) - before2;
    assert.equal(await metricValue(srv, 'basestation_rooms'), 1, 'rooms left behind by join/leave');
    assert.ok(grew2 < LIMIT, `30k join/leave pairs grew RSS by ${grew2} bytes`);

    // A room member still gets room messages after all that churn.
    const b = await connect(srv, 'bob');
    await exchange(b, [{ type: 'join', room: 'home' }], ['joined']);
    await exchange(b, [{ type: 'publish', room: 'home', data: 'hi', ref: 1 }], ['ack']);
    assert.equal((await a.next('message')).data, 'hi');
    await b.close();
  } finally {
    if (a) await a.close();
    await srv.cleanup();
  }
});

test('publishing to a room nobody is in makes no room record', async () => {
  const srv = await startServer();
  try {
    for (let i = 0; i < 200; i++) {
      const r = await api(srv, 'POST', '/api/publish', { room: `empty-${i}`, data: i });
      assert.equal(r.status, 200);
    }
    assert.equal(await metricValue(srv, 'basestation_rooms'), 0);
  } finally { await srv.cleanup(); }
});

test('a user record goes with its last connection and keeps its inbox cursor', async () => {
  const secret = 'registry-test-secret';
  const srv = await startServer({ args: ['--jwt-secret', secret, '--rate', '0'] });
  const open = async (uid) => {
    const c = new Client(srv.url('?token=' + jwt(secret, { sub: uid })));
    await c.opened;
    await c.next('connect');
    return c;
  };
  try {
    // Distinct uids (one JWT each), connected and gone: no record stays.
    for (let i = 0; i < 2000; i += 50) {
      const cs = await Promise.all(Array.from({ length: 50 }, (_, k) => open(`jwt-${i + k}`)));
      await Promise.all(cs.map((c) => c.close()));
    }
    const deadline = Date.now() + 5000;
    while (await metricValue(srv, 'basestation_connections') > 0 && Date.now() < deadline) await sleep(20);
    assert.equal(await metricValue(srv, 'basestation_users'), 0, 'user records of gone users');

    // A member's record stays while offline (the room needs it) ...
    const m = await open('member');
    await exchange(m, [{ type: 'join', room: 'club' }], ['joined']);
    await m.close();
    await sleep(100);
    assert.equal(await metricValue(srv, 'basestation_users'), 1);

    // ... and a freed one reads its cursor back: carol saw message 1 live,
    // message 2 came while she was away; her inbox is message 2 only.
    let carol = await open('carol');
    const s1 = (await api(srv, 'POST', '/api/publish', { to: 'carol', data: 'one' })).json.seq;
    assert.equal((await carol.next('message')).seq, s1);
    await carol.close();
    await sleep(100);
    assert.equal(await metricValue(srv, 'basestation_users'), 1, "carol's record went with her");
    const s2 = (await api(srv, 'POST', '/api/publish', { to: 'carol', data: 'two' })).json.seq;
    carol = await open('carol');
    const inbox = await carol.next('message');
    assert.equal(inbox.seq, s2);
    assert.ok(await carol.none((x) => x.type === 'message', 300), 'message 1 delivered twice');
    await carol.close();
  } finally { await srv.cleanup(); }
});
