// Bounded turns: a publish burst to a 5,000-member room is fanned out a
// budget at a time, so the loop keeps answering other clients meanwhile.
// Without the budget the whole burst (200 x 5,000 deliveries and their
// writes) is one loop turn and a ping sent once it has begun waits for all
// of it. No timed assertion: what the room's last member had been sent
// when the pong came says which; the rest checks that chunking loses and
// reorders nothing.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, Client, upgradeRequest, frame, jwt, sleep, metricValue } from './lib.mjs';

const SECRET = 'bounded-turns-secret';
const MEMBERS = 5000;
const POSTS = 200;
let srv, first;
const sockets = [], clients = [];

before(async () => {
  srv = await startServer({ args: ['--jwt-secret', SECRET, '--rate', '0', '--max-connections', '20000'] });
  // The room's first session (its fan-out order is join order), then
  // 4,998 members that only read.
  first = await client('first');
  first.send({ type: 'join', room: 'big' });
  await first.next('joined', 10000);
  for (let i = 0; i < MEMBERS - 2; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(i + 250, MEMBERS - 2); j++) batch.push(rawMember('m' + j, 'big'));
    await Promise.all(batch);
  }
});
after(async () => {
  for (const c of clients) c.terminate();
  for (const s of sockets) s.destroy();
  // Let the server see the 5,000 hang-ups before it is stopped: its stop
  // is bounded (5 s) without counting them (slow under a sanitizer).
  for (let i = 0; i < 300 && await metricValue(srv, 'basestation_connections') > 0; i++) await sleep(100);
  await srv.cleanup();
});

const url = (uid) => srv.url('?' + new URLSearchParams({ token: jwt(SECRET, { sub: uid }) }));

// A burst of POSTS publishes in one write: the server reads and commits it
// in one turn.
function burst(pub, room) {
  const sock = pub.ws._socket;
  sock.cork();
  for (let i = 0; i < POSTS; i++) pub.send({ type: 'publish', room, data: { i } });
  sock.uncork();
}

async function acks(pub) {
  const seqs = [];
  for (let i = 0; i < POSTS; i++) {
    const a = await pub.next('ack', 120000);
    assert.ok(!seqs.length || a.seq > seqs[seqs.length - 1], 'acks in order');
    seqs.push(a.seq);
  }
  return seqs;
}

// A member that joins the room and then stops reading.
function rawMember(uid, room) {
  return new Promise((resolve, reject) => {
    const s = net.connect(srv.wsPort, '127.0.0.1');
    sockets.push(s);
    let seen = '', joined = false;
    const timer = setTimeout(() => reject(new Error(uid + ' did not join')), 30000);
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
    s.on('connect', () => {
      s.write(Buffer.concat([
        Buffer.from(upgradeRequest(srv.wsPort, { query: '?token=' + jwt(SECRET, { sub: uid }) })),
        frame(1, JSON.stringify({ type: 'join', room })),
      ]));
    });
    s.on('data', (d) => {
      if (joined) return;
      seen = (seen + d.toString('latin1')).slice(-4096);
      // Then it reads no more: what the server sends it waits in the
      // kernel, and the test's own process is not busy reading it.
      if (seen.includes('"type":"joined"')) { joined = true; clearTimeout(timer); s.pause(); resolve(s); }
    });
  });
}

async function client(uid) {
  const c = new Client(url(uid), { wsOptions: { perMessageDeflate: false, maxPayload: 1 << 24 } });
  clients.push(c);
  await c.opened;
  await c.next('connect', 10000);
  return c;
}

test('a ping is answered while a 5,000-member room is flooded; every member gets every post in order', async (t) => {
  {
    const last = await client('last');
    last.send({ type: 'join', room: 'big' });
    await last.next('joined', 10000);
    const pub = await client('pub');
    const pinger = await client('pinger');
    pub.send({ type: 'join', room: 'big' });
    await pub.next('joined', 10000);
    // Warm up: the ping path works when idle.
    pinger.send({ type: 'ping' });
    await pinger.next('pong', 10000);

    const tb = Date.now();
    burst(pub, 'big');
    // The fan-out has begun (the room's first session has a message):
    // with bounded turns it has many turns to go, and the ping is read
    // and answered between two of them, while the room's last member has
    // only the first posts. Without them the whole burst went out in the
    // turn before the ping was read: the last member had it all first.
    await first.next('message', 60000);
    const t0 = Date.now();
    pinger.send({ type: 'ping' });
    await pinger.next('pong', 60000);
    const took = Date.now() - t0;
    const lastHad = last.all.filter((m) => m.type === 'message').length;
    t.diagnostic(`pong ${took} ms after the ping, ${Date.now() - tb} ms after the burst; the last member had ${lastHad} of ${POSTS} posts then`);
    assert.ok(lastHad < POSTS, `the pong waited for the whole ${POSTS} x ${MEMBERS} fan-out (${took} ms)`);

    const prev = (await acks(pub)).at(-1);
    for (const m of [first, last]) {
      for (let i = 0; i < 600 && m.all.filter((x) => x.type === 'message').length < POSTS; i++) await sleep(100);
      const got = m.all.filter((x) => x.type === 'message');
      assert.equal(got.length, POSTS);
      got.forEach((msg, i) => {
        assert.equal(msg.data.i, i);
        assert.ok(i === 0 || msg.seq > got[i - 1].seq);
      });
      assert.equal(got.at(-1).seq, prev, 'the last post acked is the last one delivered');
    }
    assert.equal(pub.all.filter((x) => x.type === 'message').length, 0, 'not sent to its publisher');
    pub.terminate();
  }
});

// The inbox cursor of a user whose last session goes while a fan-out is
// under way stops before the messages that had not reached it yet (still
// in the fan queue): they come from the inbox on the next connection (a
// repeat is allowed, a gap is not). The client closes with a close frame
// and reads until the server's: everything the server wrote reaches it
// (a reset would lose what the kernel held, which the inbox does not
// redeliver by contract).
test('a member that leaves in the middle of a fan-out gets the rest from its inbox', async () => {
  const late = await client('late'); // joins last: delivered to last
  late.send({ type: 'join', room: 'big' });
  await late.next('joined', 10000);
  const pub = await client('pub2');
  pub.send({ type: 'join', room: 'big' });
  await pub.next('joined', 10000);
  first.queue.length = 0;
  burst(pub, 'big');
  // The fan-out has begun (the room's first session has a message) and
  // has thousands of sessions to go before it reaches `late`.
  await first.next('message', 60000);
  await late.close();
  const seqs = await acks(pub);
  const before = late.all.filter((m) => m.type === 'message').map((m) => m.seq);
  assert.ok(before.length < POSTS, 'late left before it had everything');
  const again = await client('late');
  const got = new Set(before);
  while (!seqs.every((q) => got.has(q))) got.add((await again.next('message', 20000)).seq);
  pub.terminate();
  again.terminate();
});
