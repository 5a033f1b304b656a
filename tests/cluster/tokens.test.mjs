// Opaque tokens across cluster nodes (protocol §7): `basestation token
// issue|revoke --cluster URLS --stream NAME` publishes to the stream; every
// node applies it. Two basestation nodes (the real binary) on a real
// three-server JetStream cluster on loopback (tests/cluster/nats.mjs).
//   - a token issued by the CLI admits a connection on node B (and A);
//   - revoked by the CLI: the open sessions on both nodes are closed with
//     4001 "token revoked", and a new connection is refused on both;
//   - JetStream unreachable: the CLI exits 1 with a clear message within
//     about 5 s; a stream that does not exist is not made by the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { freePorts } from './nats.mjs';
import { useCluster } from './fixture.mjs';
import { BIN, connect, sleep } from '../blackbox/lib.mjs';

const env = useCluster('bs-ctokens-');
const node = (name) => env.node(name, 'toks');

// Runs the CLI: {code, stdout, stderr, ms}; killed after 20 s.
function cli(args) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 20000);
    p.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, ms: Date.now() - t0 }); });
  });
}

// Connects with tok, retrying a refusal for up to 2 s (a node applies the
// stream within 1 s of the CLI's return).
async function connectSoon(srv, uid, tok) {
  const t0 = Date.now();
  for (;;) {
    try {
      return await connect(srv, uid, { token: tok });
    } catch (e) {
      if (Date.now() - t0 > 2000) throw e;
      await sleep(100);
    }
  }
}

test('token issue/revoke --cluster: honoured on every node; revocation closes open sessions', { skip: env.skip, timeout: 120000 }, async () => {
  const A = await node('a');
  const B = await node('b');
  const urls = env.cluster.urls.join(',');

  const issued = await cli(['token', 'issue', '--uid', 'tina', '--cluster', urls, '--stream', 'toks']);
  assert.equal(issued.code, 0, issued.stderr);
  const tok = issued.stdout.trim();
  assert.match(tok, /^bs_/);

  const onB = await connectSoon(B, 'tina', tok);
  assert.equal(onB.hello.uid, 'tina');
  const onA = await connectSoon(A, 'tina', tok);

  const revoked = await cli(['token', 'revoke', tok, '--cluster', urls, '--stream', 'toks']);
  assert.equal(revoked.code, 0, revoked.stderr);
  for (const c of [onB, onA]) {
    const closed = await Promise.race([c.closed, sleep(3000).then(() => null)]);
    assert.ok(closed, 'the session was closed');
    assert.equal(closed.code, 4001);
    assert.equal(closed.reason, 'token revoked');
  }
  for (const n of [A, B]) {
    await assert.rejects(connect(n, 'tina', { token: tok }), (e) => e.status === 401);
  }
});

test('token --cluster: JetStream unreachable or no such stream: exit 1 with a reason', { skip: env.skip, timeout: 60000 }, async () => {
  const [dead] = await freePorts(1);
  const r = await cli(['token', 'issue', '--uid', 'u', '--cluster', `nats://127.0.0.1:${dead}`, '--stream', 'toks']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /JetStream not reached within 5 s/);
  assert.ok(r.ms < 9000, `took ${r.ms} ms`);

  const urls = env.cluster.urls.join(',');
  const s = await cli(['token', 'revoke', 'bs_whatever', '--cluster', urls, '--stream', 'nosuch']);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /stream nosuch does not exist/);
});
