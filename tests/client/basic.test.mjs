// The client against the real broker: connecting, send/ack, rooms, tasks,
// refusals, subprotocol auth, dedupe by seq.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, makeClient, until, texts, recordingWs, api, token,
  BasestationClient, WebSocket, memoryStorage,
} from './lib.mjs';

let srv;
const clients = [];
const mk = (...a) => { const c = makeClient(srv, ...a); clients.push(c); return c; };
before(async () => { srv = await startServer(); });
after(async () => {
  for (const c of clients) c.close();
  await srv.cleanup();
});

test('connects: connecting then open, the connect frame and the epoch', { timeout: 15000 }, async () => {
  const c = mk('alice');
  assert.equal(c.state, 'connecting');
  const hello = await c.waitFor('open', 5000);
  assert.equal(hello.uid, 'alice');
  assert.match(c.epoch, /^[0-9a-f]{32}$/);
  assert.deepEqual(c.log.states, ['open']); // 'connecting' was set in the constructor, before the listener
  assert.equal(c.log.connects.length, 1);
  const pong = await c.ping();
  assert.equal(pong.type, 'pong');
  c.close();
  assert.equal(c.state, 'closed');
});

test('send resolves with the ack; the other side gets the message once', { timeout: 15000 }, async () => {
  const a = mk('alice2'), b = mk('bob2');
  await Promise.all([a.waitFor('open', 5000), b.waitFor('open', 5000)]);
  const ack = await a.send('bob2', { text: 'hello bob' });
  assert.equal(ack.type, 'ack');
  assert.ok(Number.isInteger(ack.seq) && ack.seq > 0);
  assert.match(ack.ref, /^c-[a-z0-9]{8}-\d+$/);
  await until(() => b.log.messages.length === 1, 5000, 'bob2 gets the message');
  const m = b.log.messages[0];
  assert.equal(m.from, 'alice2');
  assert.equal(m.to, 'bob2');
  assert.equal(m.seq, ack.seq);
  assert.deepEqual(m.data, { text: 'hello bob' });
  assert.equal(b.lastSeq, ack.seq);
  assert.equal(a.queued, 0);
});

test('join, publish, presence; publishing without joining is refused', { timeout: 15000 }, async () => {
  const a = mk('carol'), b = mk('dave');
  await Promise.all([a.waitFor('open', 5000), b.waitFor('open', 5000)]);
  await assert.rejects(a.publish('nowhere', { text: 'x' }), (e) => e.code === 'forbidden');
  const joined = await a.join('room1');
  assert.equal(joined.type, 'joined');
  assert.equal(joined.room, 'room1');
  assert.ok(a.rooms.has('room1'));
  await b.join('room1');
  const p = await a.presence('room1');
  assert.deepEqual(p.online.sort(), ['carol', 'dave']);
  const ack = await a.publish('room1', { text: 'to the room' });
  await until(() => b.log.messages.length === 1, 5000, 'dave gets the room message');
  assert.equal(b.log.messages[0].room, 'room1');
  assert.equal(b.log.messages[0].seq, ack.seq);
  // The publishing connection does not get its own message.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(a.log.messages.length, 0);
  const left = await b.leave('room1');
  assert.equal(left.type, 'left');
  assert.ok(!b.rooms.has('room1'));
});

test('join with presence: presence events, kept across a reconnect', { timeout: 20000 }, async () => {
  const rec = recordingWs();
  const a = mk('pe-ann', { WebSocket: rec.WebSocket }), b = mk('pe-ben');
  const events = [];
  a.on('presence', (e) => events.push(`${e.type} ${e.room} ${e.uid}`));
  await Promise.all([a.waitFor('open', 5000), b.waitFor('open', 5000)]);
  await a.join('proom', { presence: true });
  await b.join('proom');
  await until(() => events.length === 1, 5000, 'presence.join of pe-ben');
  assert.deepEqual(events, ['presence.join proom pe-ben']);
  // The re-join after a reconnect asks for presence again.
  rec.last().terminate();
  await until(() => a.log.connects.length === 2 && a.state === 'open', 5000, 'reconnected');
  await until(() => rec.sent.filter((f) => f.type === 'join' && f.room === 'proom' && f.presence === true).length === 2,
    5000, 'the re-join with presence');
  await b.leave('proom');
  await until(() => events.length === 2, 5000, 'presence.leave of pe-ben');
  assert.equal(events[1], 'presence.leave proom pe-ben');
});

test('subscribe resolves with the snapshot; changes come as task events', { timeout: 15000 }, async () => {
  const r = await api(srv, 'POST', '/api/tasks', { id: 'job-basic', title: 'Job', steps: ['a', 'b'], owner: 'erin' });
  assert.equal(r.status, 201);
  const c = mk('erin');
  await c.waitFor('open', 5000);
  const snap = await c.subscribe('job-basic');
  assert.equal(snap.id, 'job-basic');
  assert.equal(snap.steps.length, 2);
  assert.equal(c.task('job-basic').version, snap.version);
  await api(srv, 'POST', '/api/tasks/job-basic/progress', { step: 0, status: 'running' });
  await until(() => c.log.tasks.some((t) => t.version > snap.version), 5000, 'a task push');
  assert.equal(c.task('job-basic').steps[0].status, 'running');
  await assert.rejects(c.subscribe('no-such-task'), (e) => e.code === 'not_found');
  assert.ok(!c.tasks.has('no-such-task'));
  const other = await api(srv, 'POST', '/api/tasks', { id: 'job-private', title: 'P', steps: ['a'], owner: 'frank' });
  assert.equal(other.status, 201);
  await assert.rejects(c.subscribe('job-private'), (e) => e.code === 'forbidden');
  const u = await c.unsubscribe('job-basic');
  assert.equal(u.type, 'unsubscribed');
});

test('token as a subprotocol (auth: protocol)', { timeout: 15000 }, async () => {
  const rec = recordingWs();
  const c = mk('gina', { auth: 'protocol', WebSocket: rec.WebSocket });
  const hello = await c.waitFor('open', 5000);
  assert.equal(hello.uid, 'gina');
  assert.ok(!rec.urls[0].includes('token='), rec.urls[0]);
  assert.equal(rec.last().protocol, 'basestation.v1');
});

test('a URL without /ws gets it; a bad token keeps failing until the retry limit', { timeout: 15000 }, async () => {
  const c = mk('hank', { url: `ws://127.0.0.1:${srv.wsPort}`, });
  await c.waitFor('open', 5000);
  const bad = mk('ivan', { token: 'bs_not_a_token', maxRetries: 2, minDelay: 20, maxDelay: 50 });
  await bad.waitFor('failed', 5000);
  assert.equal(bad.log.closes.length, 3); // the first attempt and two retries
  assert.equal(bad.log.connects.length, 0);
});

test('dedupe: a transport that repeats frames, and a replay from seq 0, deliver each seq once', { timeout: 20000 }, async () => {
  const rec = recordingWs();
  const a = mk('judy');
  const b = mk('ken', { WebSocket: rec.WebSocket, minDelay: 50, maxDelay: 100 });
  await Promise.all([a.waitFor('open', 5000), b.waitFor('open', 5000)]);
  // Every message frame arrives twice.
  rec.filter = (f) => (f.type === 'message' ? [f, f] : [f]);
  for (let i = 1; i <= 3; i++) await a.send('ken', { text: 'm' + i });
  await until(() => b.lastSeq !== null && b.log.messages.length >= 3, 5000, 'three messages');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(texts(b), ['m1', 'm2', 'm3']);
  assert.equal(b.duplicates, 3);
  rec.filter = null;
  // At-least-once replay: the next connection asks the broker for everything
  // since 0 (as a server restored from an older backup would replay). The
  // broker really sends m1..m3 again; the client drops them.
  const RecWs = rec.WebSocket;
  class Since0 extends RecWs {
    constructor(url, ...rest) { super(String(url).replace(/since=\d+/, 'since=0'), ...rest); }
  }
  b._WS = Since0;
  const before = b.duplicates;
  await a.send('ken', { text: 'm4' }); // while b is still connected
  await until(() => b.log.messages.length === 4, 5000, 'm4');
  rec.last().terminate();
  await until(() => b.log.resumed.length === 1, 5000, 'a resume');
  assert.match(rec.urls.at(-1), /since=0/);
  assert.equal(b.log.resumed[0].since, 0);
  assert.equal(b.duplicates - before, 4);
  await a.send('ken', { text: 'm5' });
  await until(() => b.log.messages.length === 5, 5000, 'm5');
  assert.deepEqual(texts(b), ['m1', 'm2', 'm3', 'm4', 'm5']);
});

test('requests made before the first connection are sent once it is open', { timeout: 15000 }, async () => {
  const a = mk('leo');
  const b = new BasestationClient({ url: srv.url(), uid: 'mia', token: token(srv.db, 'mia'), WebSocket, storage: memoryStorage(), autoConnect: false });
  clients.push(b);
  const p = b.send('leo', { text: 'early' });
  assert.equal(b.state, 'closed');
  assert.equal(b.queued, 1);
  await a.waitFor('open', 5000);
  b.connect();
  const ack = await p;
  assert.ok(ack.seq > 0);
  await until(() => a.log.messages.length === 1, 5000, 'leo gets it');
  assert.equal(texts(a)[0], 'early');
});

test('a remembered position from another history (epoch): everything is replayed, complete:false', { timeout: 15000 }, async () => {
  const s1 = (await api(srv, 'POST', '/api/publish', { to: 'nora', data: { text: 'n1' } })).json.seq;
  const s2 = (await api(srv, 'POST', '/api/publish', { to: 'nora', data: { text: 'n2' } })).json.seq;
  const storage = memoryStorage();
  storage.set('basestation:nora', JSON.stringify({ seq: s2 + 1000, epoch: 'f'.repeat(32) }));
  const rec = recordingWs();
  const c = mk('nora', { storage, WebSocket: rec.WebSocket });
  assert.equal(c.lastSeq, s2 + 1000);
  await until(() => c.log.resumed.length === 1, 5000, 'resumed');
  assert.match(rec.urls[0], new RegExp(`since=${s2 + 1000}&epoch=f{32}`));
  assert.equal(c.log.resumed[0].complete, false);
  assert.deepEqual(c.log.messages.map((m) => m.seq), [s1, s2]);
  assert.equal(c.lastSeq, s2);
  assert.notEqual(c.epoch, 'f'.repeat(32));
  // The position is stored with the server's epoch.
  assert.deepEqual(JSON.parse(storage.get('basestation:nora')), { seq: s2, epoch: c.epoch });
});
