// What a cluster keeps under stress and across a full restart (protocol §5,
// §7; issue 13): two basestation nodes (the real binary, --cluster) on one
// real three-server JetStream cluster on loopback (tests/cluster/nats.mjs).
//   - resume on the other node while a publisher floods: a receiver on
//     node B drops its connection mid-flood and resumes on node A from the
//     last seq it saw while the publisher on A keeps sending; across the two
//     connections it gets every acked message exactly once, at its acked
//     seq, in seq order, the replay, `resumed`, then live ones; what was
//     acked before the resume is in the replay. Messages of ~1 KiB and node
//     A's --max-outbuf 256 KiB make the replay wait for the client to read
//     (src/broker/replay.c), so that live messages come while it replays and
//     are held: with the held ones dropped, this test fails (checked);
//   - every process restarted (the three nats-servers and both nodes): the
//     epoch is the same, a resume from 0 on either node (and on a third node
//     whose replica is rebuilt from the stream) returns exactly what was
//     acked before, in order; an offline member's inbox holds it; the rooms'
//     members, who join nothing again, may publish and get the room's next
//     message on any node; a non-member still may not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { useCluster } from './fixture.mjs';
import { connect, jwt, api, sleep, ADMIN_KEY } from '../blackbox/lib.mjs';

const SECRET = 'cluster-durability-secret';
const env = useCluster('bs-cdur-');
const node = (name, stream, db) => env.node(name, stream, ['--jwt-secret', SECRET], { db });
const join = (srv, uid, opts = {}) => connect(srv, uid, { token: jwt(SECRET, { sub: uid }), ...opts });

// Messages on c until `resumed` (returned with them), each within ms.
async function untilResumed(c, ms = 15000) {
  const msgs = [];
  for (let i = 0; i < 100000; i++) {
    const m = await c.next((x) => x.type === 'message' || x.type === 'resumed', ms);
    if (m.type === 'resumed') return { msgs, resumed: m };
    msgs.push(m);
  }
  throw new Error('no resumed frame');
}

const increasing = (seqs, what) => {
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `${what}: seq ${seqs[i]} after ${seqs[i - 1]}`);
};

test('resume on the other node while a publisher floods: every acked message once, in order, no gap', { skip: env.skip, timeout: 120000 }, async () => {
  const A = await env.node('fa', 'flood', ['--jwt-secret', SECRET, '--max-outbuf', String(256 * 1024)]);
  const B = await node('fb', 'flood');
  const W = 128; // at most in flight
  const CUT = 300; // the receiver drops after this many
  const GAP = 1500; // ... and resumes once this many more were acked
  const AFTER = 500; // the publisher sends this many after the resume is done
  const CAP = 6000; // and never more in all
  // ~1 KiB each: a replay of GAP of them usually fills more than half of
  // A's output (--max-outbuf 256 KiB, above), so the replay waits for the
  // client to read, A's loop turns and applies, and live messages come
  // (and are held) while it replays. Held ones count against the limit:
  // a wait of one loop turn holds a few dozen, far below it.
  const PAD = 'p'.repeat(1000);
  const bob1 = await join(B, 'bob');
  const alice = await join(A, 'alice');
  const clients = [alice, bob1];
  try {
    const acked = new Map(); // ref -> seq
    const inflight = new Set(); // refs sent, not answered yet
    const resend = []; // refs answered `unavailable`: sent again, same ref
    // the publisher sends at full speed (W in flight) until AFTER were sent
    // after the receiver's `resumed` (those are certainly live), CAP at most
    let next = 0, unavailable = 0, resumedAt = -1, stopAt = CAP, failure = null;
    const pump = () => {
      while (inflight.size < W) {
        let ref;
        if (resend.length) ref = resend.shift();
        else if (next < stopAt) ref = 'f' + next++;
        else return;
        inflight.add(ref);
        alice.send({ type: 'send', to: 'bob', data: { i: Number(ref.slice(1)), pad: PAD }, ref });
      }
    };
    alice.ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (!m.ref || !inflight.has(m.ref)) return;
      inflight.delete(m.ref);
      if (m.type === 'ack') acked.set(m.ref, m.seq);
      else if (m.type === 'error' && m.code === 'unavailable') { unavailable++; resend.push(m.ref); }
      else failure = failure || new Error('publisher: ' + JSON.stringify(m));
      pump();
    });
    const t0 = Date.now();
    pump();

    // the receiver on B sees the first CUT, then its connection drops
    const first = [];
    while (first.length < CUT) first.push(await bob1.next('message', 15000));
    bob1.terminate();
    await bob1.closed;
    const cutAcked = acked.size;
    // everything it had received (a few more may have been parsed)
    const got1 = bob1.all.filter((m) => m.type === 'message');
    const lastSeq = got1[got1.length - 1].seq;
    increasing(got1.map((m) => m.seq), 'first connection');

    // while it is away the publisher goes on: at least GAP more acked
    const missed = () => [...acked.values()].filter((s) => s > lastSeq);
    for (let i = 0; i < 800 && missed().length < GAP && !failure; i++) await sleep(25);
    if (failure) throw failure;
    assert.ok(missed().length >= GAP, `${missed().length} acked after the cut`);
    // ... and it resumes on A from the last seq it saw, mid-flood
    assert.ok(inflight.size > 0, `flood still going (${next} sent, ${acked.size} acked)`);
    const ackedBefore = missed(); // acked before the resume: in the replay (protocol §7)
    const bob2 = await join(A, 'bob', { query: { since: String(lastSeq), epoch: bob1.hello.epoch } });
    clients.push(bob2);
    assert.equal(bob2.hello.epoch, bob1.hello.epoch);
    const { msgs: replay, resumed } = await untilResumed(bob2);
    resumedAt = acked.size;
    assert.ok(next < CAP, `the flood went on during the resume (${next} sent)`);
    stopAt = next + AFTER;
    assert.equal(resumed.complete, true);
    assert.equal(resumed.since, lastSeq);
    assert.ok(resumed.last >= Math.max(lastSeq, ...replay.map((m) => m.seq)), JSON.stringify(resumed));
    for (const m of replay) assert.ok(m.seq <= resumed.last, 'a replayed seq after resumed.last');
    const replayed = new Set(replay.map((m) => m.seq));
    for (const s of ackedBefore) assert.ok(replayed.has(s) && s <= resumed.last, `seq ${s}, acked before the resume, not replayed`);

    // the publisher finishes (bounded: 20 s)
    const done = () => next >= stopAt && inflight.size === 0 && resend.length === 0;
    for (let i = 0; i < 400 && !done() && !failure && Date.now() - t0 < 20000; i++) await sleep(50);
    if (failure) throw failure;
    assert.ok(done(), `${acked.size} of ${stopAt} acked in ${Date.now() - t0} ms`);
    const N = acked.size, ms = Date.now() - t0;
    assert.equal(N, stopAt);

    // the rest of the flood arrives live on bob2
    const live = [];
    const want2 = [...acked.values()].filter((s) => s > lastSeq).length;
    // (a gap shows below as the seqs that did not come)
    while (replay.length + live.length < want2) {
      const m = await bob2.next('message', 10000).catch(() => null);
      if (!m) break;
      live.push(m);
    }
    assert.ok(await bob2.none('message', 500), 'more messages than acked');
    assert.ok(live.length >= AFTER, `${live.length} live after resumed`);
    assert.ok(!bob2.all.some((m) => m.type === 'resumed' && m !== resumed), 'one resumed');

    // both connections together: exactly the acked seqs, in order, each once
    const second = [...replay, ...live];
    increasing(second.map((m) => m.seq), 'second connection');
    assert.ok(second[0].seq > lastSeq);
    const all = [...got1, ...second];
    const ackedSeqs = [...acked.values()].sort((x, y) => x - y);
    assert.deepEqual(all.map((m) => m.seq), ackedSeqs, 'every acked seq once, in order, no gap');
    for (const m of all) assert.equal(acked.get('f' + m.data.i), m.seq, `message ${m.data.i} at its acked seq`);
    for (const m of all) assert.equal(m.from, 'alice');
    console.log(`# ${N} acked in ${ms} ms (${unavailable} unavailable); cut after ${got1.length} ` +
      `(${cutAcked} acked), resumed on the other node after ${resumedAt} acked: ` +
      `${replay.length} replayed, ${live.length} live`);
  } finally {
    for (const c of clients) c.terminate();
    await Promise.all(clients.map((c) => c.closed));
    await A.cleanup(); await B.cleanup();
  }
});

test('every process restarted: the history, the rooms\' members and the inbox are intact', { skip: env.skip, timeout: 180000 }, async () => {
  const db = (n) => path.join(env.dir, n + '.db');
  let A = await node('ra', 'restart', db('ra'));
  let B = await node('rb', 'restart', db('rb'));
  const open = [];
  const nodesHere = [A, B];
  try {
    const carol = await join(A, 'carol'); // member of crew, online on A
    const pub = await join(B, 'pub'); // member of crew, on B
    const erin = await join(B, 'erin'); // member of crew, offline from now on
    const alice = await join(A, 'alice'); // no member: sends direct messages
    open.push(carol, pub, erin, alice);
    const epoch = carol.hello.epoch;
    for (const c of [carol, pub, erin]) {
      c.send({ type: 'join', room: 'crew' });
      assert.equal((await c.next('joined')).room, 'crew');
    }
    // erin goes offline: B records her inbox cursor (a stream event); what
    // follows is her inbox
    await erin.close();
    let listed = true;
    for (let i = 0; i < 50 && listed; i++) {
      const r = await api(B, 'GET', '/admin/connections', undefined, ADMIN_KEY);
      listed = r.json.connections.some((c) => c.uid === 'erin');
      if (listed) await sleep(50);
    }
    assert.ok(!listed, 'erin gone from B');

    // room messages from B, direct messages from A, interleaved
    const K = 15;
    const forCarol = [], forErin = [];
    for (let i = 0; i < K; i++) {
      pub.send({ type: 'publish', room: 'crew', data: { r: i }, ref: 'r' + i });
      const rs = (await pub.next('ack')).seq;
      forCarol.push({ seq: rs, data: { r: i } });
      forErin.push({ seq: rs, data: { r: i } });
      alice.send({ type: 'send', to: i % 2 ? 'carol' : 'erin', data: { d: i }, ref: 'd' + i });
      const ds = (await alice.next('ack')).seq;
      (i % 2 ? forCarol : forErin).push({ seq: ds, data: { d: i } });
    }
    for (const l of [forCarol, forErin]) l.sort((x, y) => x.seq - y.seq);
    // carol got hers live, in order
    const liveCarol = [];
    while (liveCarol.length < forCarol.length) liveCarol.push(await carol.next('message', 10000));
    assert.deepEqual(liveCarol.map((m) => ({ seq: m.seq, data: m.data })), forCarol);
    const lastBefore = Math.max(...forCarol.map((m) => m.seq), ...forErin.map((m) => m.seq));
    for (const c of [carol, pub, alice]) await c.close();
    open.length = 0;

    // every process stops: both nodes, then the three JetStream servers
    assert.equal((await A.stop()).code, 0, A.logs.slice(-3000));
    assert.equal((await B.stop()).code, 0, B.logs.slice(-3000));
    env.nodes.length = 0;
    await env.cluster.stop();
    await Promise.all([0, 1, 2].map((i) => env.cluster.restart(i)));
    A = await node('ra', 'restart', db('ra'));
    B = await node('rb', 'restart', db('rb'));
    const C = await node('rc', 'restart', db('rc')); // a fresh replica: from the stream alone
    nodesHere.length = 0;
    nodesHere.push(A, B, C);
    // a restarted JetStream cluster may take a few seconds to elect the
    // stream's leader: until /healthz says so, a publish could be refused
    for (const n of nodesHere) {
      let st = 0;
      for (let i = 0; i < 60 && st !== 200; i++) {
        st = (await fetch(n.http + '/healthz')).status;
        if (st !== 200) await sleep(250);
      }
      assert.equal(st, 200, 'healthy after the restart');
    }

    // the history: a resume from 0 on each node is exactly what was acked
    for (const n of nodesHere) {
      const c = await join(n, 'carol', { query: { since: '0', epoch } });
      assert.equal(c.hello.epoch, epoch, 'the same epoch after the restart');
      const { msgs, resumed } = await untilResumed(c);
      assert.deepEqual(msgs.map((m) => ({ seq: m.seq, data: m.data })), forCarol, 'carol\'s history');
      assert.equal(resumed.complete, true);
      assert.ok(resumed.last >= lastBefore);
      await c.close();
    }

    // membership: carol (on B) and erin (on C) join nothing again; pub,
    // on A, may still publish, and both get it live
    const carolB = await join(B, 'carol');
    open.push(carolB);
    // erin's inbox (no `since`): what came while she was away, in order
    const erinC = await join(C, 'erin');
    open.push(erinC);
    const inbox = [];
    while (inbox.length < forErin.length) inbox.push(await erinC.next('message', 10000));
    assert.deepEqual(inbox.map((m) => ({ seq: m.seq, data: m.data })), forErin, 'erin\'s inbox');
    assert.ok(await carolB.none('message', 300), 'carol has no inbox: she was online');
    const pubA = await join(A, 'pub');
    open.push(pubA);
    pubA.send({ type: 'publish', room: 'crew', data: 'after the restart', ref: 'after' });
    const after = await pubA.next((m) => m.type === 'ack' || m.type === 'error', 10000);
    assert.equal(after.type, 'ack', JSON.stringify(after));
    assert.ok(after.seq > lastBefore);
    for (const c of [carolB, erinC]) {
      const m = await c.next('message', 10000);
      assert.equal(m.room, 'crew');
      assert.equal(m.seq, after.seq);
      assert.equal(m.data, 'after the restart');
    }
    assert.ok(await erinC.none('message', 300), 'erin\'s inbox once');
    // not everyone is a member: a user who never joined may not publish
    const zed = await join(B, 'zed');
    open.push(zed);
    zed.send({ type: 'publish', room: 'crew', data: 'x', ref: 'z' });
    assert.equal((await zed.next('error', 10000)).code, 'forbidden');
    // the replicas agree on what was stored
    const counts = [];
    for (const n of nodesHere) {
      const q = await api(n, 'POST', '/admin/sql', {
        sql: "SELECT count(*) FROM messages WHERE to_uid IN ('carol','erin') OR room = 'crew'" }, ADMIN_KEY);
      assert.equal(q.status, 200, q.text);
      counts.push(q.json.rows[0][0]);
    }
    assert.deepEqual(counts, [1, 1, 1].map(() => 2 * K + 1));
  } finally {
    for (const c of open) c.terminate();
    await Promise.all(open.map((c) => c.closed));
    for (const n of nodesHere) await n.cleanup();
  }
});
