// The JetStream link (src/cluster/jetstream.c) against a real three-server
// JetStream cluster on loopback (tests/cluster/nats.mjs), one scenario of
// tests/cluster/jetstream_test.c per test, each on a stream of its own:
//   order      20 000 async publishes acked; the ordered consumer gets all of
//              them in order, no gap, each at the seq its PubAck named; a
//              second link finds the stream and its epoch; consume from a
//              seq; stop; core NATS publish/subscribe/unsubscribe; stats;
//   dedupe     a second publish with the same Nats-Msg-Id is a duplicate
//              with the first one's seq and is not stored;
//   expect     Nats-Expected-Last-Subject-Sequence: 0 on a new subject, a
//              stale expectation refused (10071) and not retried;
//   retention  max_msgs: stream info's first_seq, a consumer from seq 1
//              starts at the first kept seq;
//   epoch      one epoch per stream; deleted and made again: a new one; a
//              stream not made by a link is refused; destroy completes
//              pending publishes;
//   outage     every server frozen (SIGSTOP, as behind a partition):
//              publishes answered not-ok within their deadline, the lost
//              connection reported, the loop never blocked while libnats
//              reconnects (it keeps publishing meanwhile); thawed: resends
//              with the same Msg-Id acked once at one seq, the consumer
//              resumes with no gap;
//   recreate   the link's JetStream consumer deleted behind its back: the
//              link's watchdog replaces it (before libnats's missed
//              heartbeats would), nothing missed;
//   reconnect  the loop stalled 12 s (as a loop descheduled under load)
//              while libnats reconnects after kill -9 of the server it was
//              connected to: no deadlock between the loop and libnats's
//              threads; the link reconnects and publishes are acked. The
//              server is restarted;
//   failover   kill -9 of the stream leader (which the link is connected
//              to) mid-burst: every publish acked after the election, every
//              acked message consumed at its seq, none twice, no gap.
// Every scenario also checks that each callback ran on the loop's thread.
// The failover scenario kills a server: it runs last.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startCluster, natsServerMissing } from './nats.mjs';

const BIN = process.env.JETSTREAM_TEST_BIN;
function missing() {
  const nats = natsServerMissing(); // throws under CI=true
  if (nats) return nats;
  if (!BIN || !fs.existsSync(BIN)) {
    const why = 'the link test program was not built (libnats-dev missing: scripts/setup --test installs it)';
    if (process.env.CI === 'true') throw new Error(why);
    return why;
  }
  return false;
}
const skip = missing();

let dir, cluster;
before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bs-jetstream-'));
  cluster = await startCluster({ n: 3, dir });
});
after(async () => {
  if (cluster) await cluster.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// Runs one scenario; resolves with its output, fails the test on a
// non-zero exit or a timeout (the program is killed then).
function scenario(name, timeoutMs) {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      JS_URLS: cluster.urls.join(','),
      JS_NAMES: cluster.servers.map((s) => s.name).join(','),
      JS_PIDS: cluster.servers.map((s) => (s.exited === null ? s.proc.pid : 0)).join(','),
      JS_STREAM: `bs_${name}_${process.pid}`,
    };
    const p = spawn(BIN, [name], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); }, timeoutMs);
    p.on('exit', (code, sig) => {
      clearTimeout(timer);
      // The outage scenario freezes the servers: never leave them so.
      for (const s of cluster.servers) if (s.exited === null) s.proc.kill('SIGCONT');
      if (process.env.JS_VERBOSE) process.stderr.write(out);
      if (code === 0) resolve(out);
      else reject(new Error(`jetstream-test ${name} exited ${code ?? sig}:\n${out}\n${cluster.logs().slice(-4000)}`));
    });
  });
}

for (const [name, ms] of [['order', 150000], ['dedupe', 60000], ['expect', 60000],
  ['retention', 60000], ['epoch', 90000], ['outage', 150000],
  ['recreate', 90000]]) {
  test(name, { skip, timeout: ms + 5000 }, async () => {
    const out = await scenario(name, ms);
    assert.match(out, /^ok - every callback ran on the loop's thread/m);
    assert.doesNotMatch(out, /^not ok/m);
  });
}

test('reconnect: the loop stalled while libnats reconnects', { skip, timeout: 155000 }, async () => {
  try {
    const out = await scenario('reconnect', 120000);
    assert.match(out, /^ok - the link reconnected to another server/m);
    assert.match(out, /^ok - 200 of 200 publishes acked after it/m);
    assert.doesNotMatch(out, /^not ok/m);
  } finally {
    // The scenario killed server 0: the failover test needs all three.
    for (const [i, s] of cluster.servers.entries()) {
      if (s.exited !== null) { s.killed = true; await cluster.restart(i); }
    }
  }
});

test('failover: kill -9 of the stream leader mid-burst loses nothing acked', { skip, timeout: 200000 }, async () => {
  const out = await scenario('failover', 190000);
  assert.match(out, /^# killed pid \d+/m);
  assert.match(out, /^ok - every acked message reached the consumer at its seq/m);
  // The test killed it: the harness must not report it as a crash.
  for (const s of cluster.servers) if (s.exited !== null) s.killed = true;
  process.stdout.write(out.split('\n').filter((l) => l.startsWith('# ')).join('\n') + '\n');
});
