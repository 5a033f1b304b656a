// Tasks across cluster nodes (protocol §7, src/engine/nats.c): two
// basestation nodes (the real binary, --cluster) on one real three-server
// JetStream cluster on loopback (tests/cluster/nats.mjs).
//   - a task created through node A is read and subscribed on node B;
//   - two producers on two nodes (HTTP on A, WebSocket on B) update one
//     task at once: every update gets its own version, subscribers on both
//     nodes see the same linear history, every version once and in order;
//   - every process restarted (the JetStream servers too): both nodes still
//     have the task at its last version, and the next update follows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { useCluster } from './fixture.mjs';
import { connect, jwt, api, sleep } from '../blackbox/lib.mjs';

const SECRET = 'cluster-tasks-secret';
const K = 25; // updates per producer
const env = useCluster('bs-ctasks-');
const node = (name) => env.node(name, 'tasks', ['--jwt-secret', SECRET], { db: path.join(env.dir, name + '.db') });
const join = (srv, uid, role = 'user') =>
  connect(srv, uid, { token: jwt(SECRET, { sub: uid, role }) });

// Pushes of task id on c until version `last`: [{version, note}].
async function history(c, id, last) {
  const got = [];
  for (;;) {
    const m = await c.next((x) => x.type === 'task' && x.task.id === id, 20000);
    got.push({ version: m.task.version, note: m.task.note });
    if (m.task.version >= last) return got;
  }
}

test('tasks: created on A, seen on B; two producers on two nodes make one linear history; restart keeps it', { skip: env.skip, timeout: 240000 }, async () => {
  let A = await node('a');
  let B = await node('b');

  // created through A's HTTP API; B answers it at once (waiting for its
  // replica if need be), over HTTP and WebSocket
  const c = await api(A, 'POST', '/api/tasks', { id: 'race', title: 'Race', owner: 'wanda' });
  assert.equal(c.status, 201, c.text);
  assert.equal(JSON.parse(c.text).version, 1);
  const g = await api(B, 'GET', '/api/tasks/race');
  assert.equal(g.status, 200, g.text);
  assert.equal(JSON.parse(g.text).title, 'Race');

  const subs = [await join(A, 'wanda'), await join(B, 'wanda')];
  for (const s of subs) {
    s.send({ type: 'subscribe', task: 'race' });
    const first = await s.next((m) => m.type === 'task');
    assert.equal(first.task.version, 1);
  }

  // two producers at once: HTTP on A, WebSocket on B; each update changes
  // the note, so each must be one new version
  const prodB = await join(B, 'pb', 'producer');
  const acked = [];
  const t0 = Date.now();
  const viaHttp = (async () => {
    for (let i = 0; i < K; i++) {
      const r = await api(A, 'POST', '/api/tasks/race/progress', { note: `h${i}` });
      assert.equal(r.status, 200, r.text);
      acked.push({ version: JSON.parse(r.text).version, note: `h${i}` });
    }
  })();
  const viaWs = (async () => {
    for (let i = 0; i < K; i++) {
      prodB.send({ type: 'task.update', task: 'race', note: `w${i}` });
      const m = await prodB.next((x) => x.type === 'ack' || x.type === 'error', 20000);
      assert.equal(m.type, 'ack', JSON.stringify(m));
      acked.push({ version: m.version, note: `w${i}` });
    }
  })();
  await Promise.all([viaHttp, viaWs]);
  const ms = Date.now() - t0;

  const last = 1 + 2 * K;
  const want = [...Array(2 * K).keys()].map((i) => i + 2);
  // every acked version is distinct, and they are exactly 2..last
  assert.deepEqual(acked.map((a) => a.version).sort((x, y) => x - y), want);
  const [ha, hb] = [await history(subs[0], 'race', last), await history(subs[1], 'race', last)];
  assert.deepEqual(ha.map((h) => h.version), want, 'node A: every version once, in order');
  assert.deepEqual(hb, ha, 'both nodes saw the same history');
  // each pushed version carries the note of the update acked with it
  const byVersion = new Map(acked.map((a) => [a.version, a.note]));
  for (const h of ha) assert.equal(h.note, byVersion.get(h.version), `version ${h.version}`);
  // each producer's own updates went in its order
  for (const p of ['h', 'w']) {
    const mine = ha.filter((h) => h.note.startsWith(p)).map((h) => Number(h.note.slice(1)));
    assert.deepEqual(mine, [...Array(K).keys()]);
  }
  const retries = (A.logs + B.logs).match(/event=task\.retry/g)?.length || 0;
  console.log(`# ${2 * K} updates of one task from two nodes in ${ms} ms; ` +
    `validated again after losing to the other node: ${retries}`);

  // the same id created on both nodes at once: one 201, one 409, and both
  // nodes hold the winner
  for (let i = 0; i < 5; i++) {
    const id = `dup${i}`;
    const [ra, rb] = await Promise.all([
      api(A, 'POST', '/api/tasks', { id, title: 'from A', owner: 'wanda' }),
      api(B, 'POST', '/api/tasks', { id, title: 'from B', owner: 'wanda' })]);
    assert.deepEqual([ra.status, rb.status].sort(), [201, 409], ra.text + rb.text);
    const winner = ra.status === 201 ? 'from A' : 'from B';
    for (const n of [A, B]) {
      const g2 = await api(n, 'GET', `/api/tasks/${id}`);
      assert.equal(g2.status, 200, g2.text);
      assert.equal(JSON.parse(g2.text).title, winner);
      assert.equal(JSON.parse(g2.text).version, 1);
    }
  }

  for (const s of [...subs, prodB]) s.close();
  // every process stops; the JetStream servers too
  assert.equal((await A.stop()).code, 0, A.logs.slice(-3000));
  assert.equal((await B.stop()).code, 0, B.logs.slice(-3000));
  env.nodes.length = 0;
  await env.cluster.stop();
  await Promise.all([0, 1, 2].map((i) => env.cluster.restart(i)));
  A = await node('a');
  B = await node('b');
  // a restarted JetStream cluster may take a few seconds to elect the
  // stream's leader: until /healthz says so, an update could answer 503
  for (const n of [A, B]) {
    let st = 0;
    for (let i = 0; i < 60 && st !== 200; i++) {
      st = (await fetch(n.http + '/healthz')).status;
      if (st !== 200) await sleep(250);
    }
    assert.equal(st, 200, 'healthy after the restart');
  }
  for (const n of [A, B]) {
    const r = await api(n, 'GET', '/api/tasks/race');
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(r.text).version, last);
  }
  const w = await join(A, 'wanda');
  w.send({ type: 'subscribe', task: 'race' });
  assert.equal((await w.next('task')).task.version, last);
  const u = await api(B, 'POST', '/api/tasks/race/progress', { note: 'after' });
  assert.equal(u.status, 200, u.text);
  assert.equal(JSON.parse(u.text).version, last + 1);
  const pushed = await w.next('task', 10000);
  assert.equal(pushed.task.version, last + 1);
  assert.equal(pushed.task.note, 'after');
  // a second create of the same id on the other node is refused
  const dup = await api(B, 'POST', '/api/tasks', { id: 'race', title: 'Again', owner: 'x' });
  assert.equal(dup.status, 409, dup.text);

  // JetStream frozen: an update answers 503 and its version is not kept
  // here (set back to the replica's); after the thaw the next versions
  // follow on with no gap (a publish that was stored after all counts once)
  for (const s of env.cluster.servers) s.proc.kill('SIGSTOP');
  try {
    const lost = await api(A, 'POST', '/api/tasks/race/progress', { note: 'lost?' });
    assert.equal(lost.status, 503, lost.text);
  } finally {
    for (const s of env.cluster.servers) s.proc.kill('SIGCONT');
  }
  let again;
  for (let i = 0; i < 30 && !again; i++) {
    const r = await api(A, 'POST', '/api/tasks/race/progress', { note: 'again' });
    if (r.status === 200) again = JSON.parse(r.text); else await sleep(500);
  }
  assert.ok(again, 'updated after the thaw');
  const tail = [];
  while (!tail.length || tail[tail.length - 1].version < again.version) {
    tail.push((await w.next('task', 10000)).task);
  }
  assert.deepEqual(tail.map((x) => x.version),
    [...Array(again.version - last - 1).keys()].map((i) => last + 2 + i), 'no gap, no repeat');
  assert.equal(tail[tail.length - 1].note, 'again');
  assert.ok(again.version <= last + 3);
  w.close();
});
