// Cluster-wide presence and GET /admin/nodes (src/engine/nats_live.c,
// protocol §7 and §10): basestation nodes (the real binary, --cluster) on a
// real three-server JetStream cluster on loopback (tests/cluster/nats.mjs).
//   - two tabs of one user on two nodes: one presence.join and, after both
//     closed, one presence.leave, seen by room members on both nodes; the
//     `presence` query on each node lists a user online on the other;
//   - the offline inbox only for a user's first connection on any node;
//   - a tab moving from node A to node B within the grace: no event;
//   - GET /admin/nodes lists both nodes with their figures;
//   - kill -9 of a node: its user's presence.leave on the other node once
//     its heartbeats stop (4 s, then the 1.5 s grace), and the node drops
//     out of /admin/nodes (10 s).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startCluster, natsServerMissing } from './nats.mjs';
import { BIN, startServer, connect, jwt, api, sleep, ADMIN_KEY } from '../blackbox/lib.mjs';

const SECRET = 'cluster-nodes-secret';
const skip = natsServerMissing(); // throws under CI=true
const ROOM = 'crew';

let dir, cluster;
const nodes = [];
const open = [];
before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bs-nodes-'));
  cluster = await startCluster({ n: 3, dir });
});
after(async () => {
  // every node exits 0 (under ASan: no leak, no error report)
  const errors = [];
  for (const c of open) await c.close().catch(() => {});
  for (const n of nodes) await n.cleanup().catch((e) => errors.push(e));
  if (cluster) await cluster.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  if (errors.length) throw errors[0];
});

async function node(name) {
  const srv = await startServer({
    args: ['--cluster', cluster.urls.join(','), '--node', name, '--stream', 'live',
      '--jwt-secret', SECRET, '--rate', '0'],
  });
  nodes.push(srv);
  return srv;
}
async function tab(srv, uid) {
  const c = await connect(srv, uid, { token: jwt(SECRET, { sub: uid }) });
  open.push(c);
  return c;
}
const isPresence = (uid) => (m) => (m.type === 'presence.join' || m.type === 'presence.leave') && m.uid === uid;
async function nodesOf(srv) {
  const r = await api(srv, 'GET', '/admin/nodes', undefined, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  return r.json.nodes;
}
// Polls until pred(list) or ms pass; the last list.
async function nodesUntil(srv, pred, ms) {
  const t0 = Date.now();
  let list;
  while (Date.now() - t0 < ms) {
    list = await nodesOf(srv);
    if (pred(list)) return list;
    await sleep(200);
  }
  return list;
}
// Asks the online members of ROOM through c.
async function online(c) {
  c.send({ type: 'presence', room: ROOM });
  return (await c.next('presence')).online.sort();
}
async function onlineUntil(c, want, ms = 3000) {
  const t0 = Date.now();
  let got;
  while (Date.now() - t0 < ms) {
    got = await online(c);
    if (JSON.stringify(got) === JSON.stringify(want)) return got;
    await sleep(100);
  }
  return got;
}

let A, B, wa, wb;

test('two nodes see each other; watchers on both', { skip }, async () => {
  A = await node('na');
  B = await node('nb');
  // members of the room: the watchers (one per node) and alice, carol
  for (const uid of ['alice', 'carol']) {
    const c = await tab(A, uid);
    c.send({ type: 'join', room: ROOM }); await c.next('joined');
    await c.close();
  }
  await sleep(2200); // their grace is over: they are offline everywhere
  wa = await tab(A, 'wa');
  wa.send({ type: 'join', room: ROOM, presence: true }); await wa.next('joined');
  wb = await tab(B, 'wb');
  wb.send({ type: 'join', room: ROOM, presence: true }); await wb.next('joined');
  // each node lists both (heartbeats every second)
  for (const [srv, other] of [[A, 'nb'], [B, 'na']]) {
    const list = await nodesUntil(srv, (l) => l.some((n) => n.node === other), 5000);
    assert.deepEqual(list.map((n) => n.node).sort(), ['na', 'nb'], JSON.stringify(list));
  }
  assert.deepEqual(await onlineUntil(wa, ['wa', 'wb']), ['wa', 'wb']);
  assert.deepEqual(await onlineUntil(wb, ['wa', 'wb']), ['wa', 'wb']);
});

test('two tabs of one user on two nodes: one join, one leave, on both nodes', { skip }, async () => {
  const t1 = await tab(A, 'alice');
  for (const w of [wa, wb]) assert.deepEqual(await w.next(isPresence('alice')), { type: 'presence.join', room: ROOM, uid: 'alice' });
  // B lists her while her only connection is on A
  assert.deepEqual(await online(wb), ['alice', 'wa', 'wb']);
  const t2 = await tab(B, 'alice');
  assert.deepEqual(await online(wa), ['alice', 'wa', 'wb']);
  assert.deepEqual(await online(wb), ['alice', 'wa', 'wb']);
  await t1.close();
  // alice is still online on B: nothing on either node
  assert.ok(await wa.none(isPresence('alice'), 2500), 'an event while a tab is open on B');
  assert.ok(await wb.none(isPresence('alice'), 100));
  assert.deepEqual(await online(wa), ['alice', 'wa', 'wb']);
  const t0 = Date.now();
  await t2.close();
  for (const w of [wa, wb]) assert.deepEqual(await w.next(isPresence('alice'), 5000), { type: 'presence.leave', room: ROOM, uid: 'alice' });
  const dt = Date.now() - t0;
  assert.ok(dt >= 900 && dt <= 4000, `presence.leave ${dt} ms after the last close`);
  assert.ok(await wa.none(isPresence('alice'), 1000));
  assert.ok(await wb.none(isPresence('alice'), 100));
  assert.deepEqual(await online(wa), ['wa', 'wb']);
});

test('the offline inbox is judged cluster-wide: none for a second tab on another node', { skip }, async () => {
  const s = await tab(B, 'dsender');
  const send = async (data) => { s.send({ type: 'send', to: 'dora', data }); return (await s.next('ack')).seq; };
  const d1 = await tab(A, 'dora');
  await sleep(300); // nodes learn of each other's connections within 200 ms
  await send('m1');
  assert.equal((await d1.next('message')).data, 'm1');
  // a second tab on B: dora is online on A, so no inbox (m1 again) there
  const d2 = await tab(B, 'dora');
  assert.ok(await d2.none((m) => m.type === 'message', 1000), 'the second tab got an inbox');
  await send('m2');
  assert.equal((await d2.next('message')).data, 'm2');
  assert.equal((await d1.next('message')).data, 'm2');
  // both gone: what comes meanwhile is her inbox on either node, once
  await d1.close();
  await d2.close();
  await sleep(500);
  const s3 = await send('m3');
  const d3 = await tab(A, 'dora');
  const m = await d3.next('message');
  assert.deepEqual([m.data, m.seq], ['m3', s3]);
  assert.ok(await d3.none((x) => x.type === 'message', 500), 'more than m3 in the inbox');
  await d3.close();
  await s.close();
});

test('a tab moving from node A to node B within the grace: no event', { skip }, async () => {
  const t1 = await tab(A, 'carol');
  for (const w of [wa, wb]) assert.deepEqual(await w.next(isPresence('carol')), { type: 'presence.join', room: ROOM, uid: 'carol' });
  await t1.close();
  await sleep(300);
  const t2 = await tab(B, 'carol');
  assert.ok(await wa.none(isPresence('carol'), 3000), 'the move was announced on A');
  assert.ok(await wb.none(isPresence('carol'), 100), 'the move was announced on B');
  assert.deepEqual(await online(wa), ['carol', 'wa', 'wb']);
  // and back to A
  await t2.close();
  await sleep(300);
  await tab(A, 'carol');
  assert.ok(await wb.none(isPresence('carol'), 3000), 'the move back was announced on B');
  assert.ok(await wa.none(isPresence('carol'), 100), 'the move back was announced on A');
});

test('GET /admin/nodes on each node: both, with sane figures', { skip }, async () => {
  const version = execFileSync(BIN, ['version'], { encoding: 'utf8' }).trim().replace(/^basestation /, '');
  const s = await tab(A, 'sender');
  s.send({ type: 'send', to: 'wb', data: 'x' });
  const seq = (await s.next('ack')).seq;
  await wb.next('message');
  // A has wa, carol, sender; B has wb
  const want = { na: 3, nb: 1 };
  for (const srv of [A, B]) {
    const list = await nodesUntil(srv, (l) => l.length === 2 && l.every((n) => n.connections === want[n.node] && n.applied_seq >= seq), 4000);
    assert.equal(list.length, 2, JSON.stringify(list));
    for (const n of list) {
      assert.equal(n.connections, want[n.node], JSON.stringify(list));
      assert.ok(n.applied_seq >= seq, JSON.stringify(n));
      assert.ok(Number.isInteger(n.lag) && n.lag >= 0, JSON.stringify(n));
      assert.equal(n.version, version);
      assert.ok(n.since > Date.now() - 600000 && n.since <= Date.now(), JSON.stringify(n));
      assert.ok(n.age_ms >= 0 && n.age_ms <= 2500, JSON.stringify(n));
    }
  }
  const m = await fetch(A.http + '/metrics').then((r) => r.text());
  assert.match(m, /^basestation_cluster_nodes 1$/m);
  assert.match(m, /^basestation_cluster_consumer_redelivered_total \d+$/m);
});

test('a node started later learns who is online elsewhere; one stopped normally says goodbye', { skip }, async () => {
  const C = await node('nc');
  const wc = await tab(C, 'wc');
  wc.send({ type: 'join', room: ROOM, presence: true }); await wc.next('joined');
  // carol (on A) and the watchers, from the snapshots C asked A and B for
  assert.deepEqual(await onlineUntil(wc, ['carol', 'wa', 'wb', 'wc']), ['carol', 'wa', 'wb', 'wc']);
  for (const w of [wa, wb]) assert.deepEqual(await w.next(isPresence('wc')), { type: 'presence.join', room: ROOM, uid: 'wc' });
  assert.equal((await C.stop()).code, 0);
  // gone on its goodbye, not after 4 s of silence (the reason, not the
  // time: under ASan the stop itself can take longer than 4 s)
  for (const w of [wa, wb]) assert.deepEqual(await w.next(isPresence('wc'), 9000), { type: 'presence.leave', room: ROOM, uid: 'wc' });
  for (const n of [A, B]) assert.match(n.logs, /event=cluster\.node_gone node=nc instance=\S+ why=bye/);
  assert.deepEqual((await nodesUntil(A, (l) => l.length === 2, 2000)).map((n) => n.node).sort(), ['na', 'nb']);
});

test('a node frozen for 6 s: its users leave elsewhere, and are back once it thaws', { skip }, async () => {
  const e = await tab(B, 'erin');
  e.send({ type: 'join', room: ROOM }); await e.next('joined');
  assert.deepEqual(await wa.next(isPresence('erin')), { type: 'presence.join', room: ROOM, uid: 'erin' });
  B.proc.kill('SIGSTOP');
  try {
    assert.deepEqual(await wa.next(isPresence('erin'), 9000), { type: 'presence.leave', room: ROOM, uid: 'erin' });
  } finally { B.proc.kill('SIGCONT'); }
  // B heartbeats again: A asks it for its set (a resync) and erin is back
  assert.deepEqual(await wa.next(isPresence('erin'), 5000), { type: 'presence.join', room: ROOM, uid: 'erin' });
  assert.deepEqual(await onlineUntil(wa, ['carol', 'erin', 'wa', 'wb']), ['carol', 'erin', 'wa', 'wb']);
  const m = await fetch(A.http + '/metrics').then((r) => r.text());
  assert.ok(Number(/^basestation_cluster_presence_resyncs_total (\d+)$/m.exec(m)[1]) >= 1, m);
  await e.close();
  assert.deepEqual(await wa.next(isPresence('erin'), 5000), { type: 'presence.leave', room: ROOM, uid: 'erin' });
});

test('kill -9 of a node: its user leaves on the other node; the node drops out', { skip }, async () => {
  await tab(B, 'dave');
  // dave is no member yet: join, then he is announced on both
  const d = open[open.length - 1];
  d.send({ type: 'join', room: ROOM }); await d.next('joined');
  assert.deepEqual(await wa.next(isPresence('dave')), { type: 'presence.join', room: ROOM, uid: 'dave' });
  assert.deepEqual(await onlineUntil(wa, ['carol', 'dave', 'wa', 'wb']), ['carol', 'dave', 'wa', 'wb']);
  const t0 = Date.now();
  await B.kill9();
  // heartbeats expire after 4 s, checked every second, then the grace
  wa.queue = wa.queue.filter((m) => !isPresence('wb')(m)); // wb's join, long ago
  for (const uid of ['dave', 'wb']) assert.equal((await wa.next(isPresence(uid), 12000)).type, 'presence.leave');
  const dt = Date.now() - t0;
  assert.ok(dt >= 3000 && dt <= 9000, `presence.leave ${dt} ms after the kill`);
  assert.deepEqual(await online(wa), ['carol', 'wa']);
  const list = await nodesUntil(A, (l) => l.length === 1, 14000);
  assert.deepEqual(list.map((n) => n.node), ['na'], JSON.stringify(list));
  assert.ok(Date.now() - t0 >= 9000, 'the node dropped out before 10 s of silence');
});

// A raw NATS client (the text protocol) publishing on the live subject.
async function natsClient(url) {
  const sock = net.connect(Number(new URL(url).port), '127.0.0.1');
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  sock.on('data', (d) => { if (d.toString().includes('PING')) sock.write('PONG\r\n'); });
  sock.write('CONNECT {"verbose":false,"pedantic":false}\r\n');
  const subject = '_basestation.live.live';
  return {
    pub(obj) {
      const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
      sock.write(`PUB ${subject} ${Buffer.byteLength(body)}\r\n${body}\r\n`);
    },
    async flush() { sock.write('PING\r\n'); await sleep(300); },
    close() { sock.destroy(); },
  };
}
async function metric(srv, name) {
  const m = await fetch(srv.http + '/metrics').then((r) => r.text());
  const x = new RegExp(`^${name} (\\d+)$`, 'm').exec(m);
  assert.ok(x, `${name} in ${m.slice(0, 200)}`);
  return Number(x[1]);
}

test('a hostile node cannot grow a node without bound: 64 nodes, 100000 uids each, ids checked', { skip }, async () => {
  const fake = await natsClient(cluster.urls[0]);
  const hb = (n, q = 0) => ({ v: 1, t: 'hb', n, i: 'f' + n, q, c: 0, a: 0, l: 0, ver: 'x', since: 0 });
  let q = 0;
  // fake0 heartbeats like a live node while the test runs
  const beat = setInterval(() => fake.pub(hb('fake0', q)), 500);
  try {
    const d0 = await metric(A, 'basestation_cluster_live_dropped_total');
    for (let k = 0; k < 70; k++) fake.pub(hb('fake' + k));
    await fake.flush();
    const list = await nodesUntil(A, (l) => l.length === 65, 3000);
    assert.equal(list.length, 65, 'this node and 64 others');
    assert.ok(await metric(A, 'basestation_cluster_live_dropped_total') >= d0 + 6);
    // fake0 is known with an empty set (q 0): its changes apply, in order
    const uids = Array.from({ length: 100005 }, (_, i) => 'h' + i);
    for (let i = 0; i < uids.length; i += 5000) {
      fake.pub({ v: 1, t: 'd', n: 'fake0', i: 'ffake0', q: q + 1, on: uids.slice(i, i + 5000), off: [] });
      q++;
    }
    fake.pub({ v: 1, t: 'd', n: 'fake0', i: 'ffake0', q: ++q, on: ['bad\u0001id', 'x'.repeat(200)], off: [] });
    fake.pub('x'.repeat(100 * 1024)); // larger than a live message may be
    await fake.flush();
    let remote;
    for (let i = 0; i < 100; i++) {
      remote = await metric(A, 'basestation_cluster_remote_online');
      if (remote >= 100000) break;
      await sleep(200);
    }
    // A alone is left of the real nodes (the others were killed), so these
    // are fake0's: capped
    assert.equal(remote, 100000);
    assert.ok(await metric(A, 'basestation_cluster_live_dropped_total') >= d0 + 6 + 5 + 2 + 1);
  } finally { clearInterval(beat); fake.close(); }
  // silent: forgotten (their uids after 4 s, the nodes after 10 s)
  let remote;
  for (let i = 0; i < 60; i++) {
    remote = await metric(A, 'basestation_cluster_remote_online');
    if (remote === 0) break;
    await sleep(250);
  }
  assert.equal(remote, 0);
  const list = await nodesUntil(A, (l) => l.length === 1, 12000);
  assert.deepEqual(list.map((n) => n.node), ['na']);
});

test('two nodes under one --node name: both say so, neither lists the other', { skip }, async () => {
  const D = await node('na');
  for (let i = 0; i < 50 && !(/event=cluster\.node_name /.test(A.logs) && /event=cluster\.node_name /.test(D.logs)); i++) await sleep(100);
  assert.match(A.logs, /level=error event=cluster\.node_name node=na .*another node has this --node name/);
  assert.match(D.logs, /level=error event=cluster\.node_name node=na /);
  assert.deepEqual((await nodesOf(A)).map((n) => n.node), ['na']);
  assert.deepEqual((await nodesOf(D)).map((n) => n.node), ['na']);
  assert.equal((await D.stop()).code, 0);
});

test('a node with 600 users online: a node started later gets them all (a snapshot in several parts)', { skip }, async () => {
  const many = [];
  for (let i = 0; i < 600; i++) many.push(tab(A, 'bulk-' + i));
  await Promise.all(many);
  const local = await metric(A, 'basestation_users_online');
  assert.ok(local >= 600, `users online on A: ${local}`);
  const E = await node('ne');
  let remote;
  for (let i = 0; i < 50; i++) {
    remote = await metric(E, 'basestation_cluster_remote_online');
    if (remote === local) break;
    await sleep(200);
  }
  assert.equal(remote, local);
});
