// Retention of a cluster node's replica (src/engine/nats.c): the stream is
// made with --retention-count as its max_msgs; the replica (--db) deletes
// the messages the stream no longer keeps, and a resume from before the
// first kept seq answers `resumed` with complete:false, as on one node.
// The real binary on a real three-server JetStream cluster on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useCluster } from './fixture.mjs';
import { connect, jwt, api, sleep, ADMIN_KEY } from '../blackbox/lib.mjs';

const SECRET = 'cluster-retention-secret';
const env = useCluster('bs-cret-');
const join = (srv, uid, opts = {}) => connect(srv, uid, { token: jwt(SECRET, { sub: uid }), ...opts });

async function messages(srv) {
  const q = await api(srv, 'POST', '/admin/sql',
    { sql: 'SELECT count(*) AS n, min(seq) AS lo FROM messages' }, ADMIN_KEY);
  assert.equal(q.status, 200, q.text);
  const [n, lo] = JSON.parse(q.text).rows[0];
  return { n, lo };
}

test('replica retention follows the stream; resume from before it is not complete', { skip: env.skip, timeout: 120000 }, async () => {
  const A = await env.node('a', 'ret', ['--jwt-secret', SECRET, '--retention-count', '10']);
  const alice = await join(A, 'alice');
  const seqs = [];
  for (let i = 0; i < 30; i++) {
    alice.send({ type: 'send', to: 'bob', data: { i }, ref: 'r' + i });
    seqs.push((await alice.next('ack')).seq);
  }
  // the stream keeps the last 10 events; within a few seconds the replica
  // holds no message the stream dropped
  let m;
  for (let t0 = Date.now(); Date.now() - t0 < 8000; await sleep(200)) {
    m = await messages(A);
    if (m.n <= 10) break;
  }
  assert.ok(m.n <= 10 && m.n > 0, `replica messages ${JSON.stringify(m)}`);
  assert.ok(m.lo > seqs[19] - 1, `first kept ${m.lo}`);
  assert.match(A.logs, /event=cluster\.prune deleted=\d+/);

  // from the start: what is kept, then resumed with complete:false
  const r = await join(A, 'bob', { query: { since: String(seqs[0]), epoch: alice.hello.epoch } });
  const got = [];
  for (;;) {
    const x = await r.next((y) => y.type === 'message' || y.type === 'resumed');
    if (x.type === 'resumed') { assert.equal(x.complete, false); break; }
    got.push(x.seq);
  }
  assert.deepEqual(got, seqs.filter((s) => s >= m.lo));
  r.close();
  // from a kept seq: whole
  const w = await join(A, 'bob', { query: { since: String(seqs[27]), epoch: alice.hello.epoch } });
  assert.equal((await w.next('message')).seq, seqs[28]);
  assert.equal((await w.next('message')).seq, seqs[29]);
  assert.equal((await w.next('resumed')).complete, true);
  w.close();
  alice.close();
});
