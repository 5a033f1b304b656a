// One JetStream cluster per test file, and basestation nodes on it:
//
//   const env = useCluster('bs-x-');     registers before() and after()
//   env.skip                             a skip reason, or false
//   await env.node(name, stream, args, { db })   `serve --cluster` (the
//                                        real binary, --rate 0), stopped in
//                                        after(); db: a path to keep
//   env.cluster, env.dir, env.nodes      (set once before() ran)
//
// after() stops every node and server and removes the temp dir, also when
// an assertion failed, and fails when a node did not exit 0.
import { before, after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startCluster, natsServerMissing } from './nats.mjs';
import { startServer } from '../blackbox/lib.mjs';

export function useCluster(prefix) {
  const env = { skip: natsServerMissing(), nodes: [], dir: null, cluster: null }; // throws under CI=true
  before(async () => {
    if (env.skip) return;
    env.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    env.cluster = await startCluster({ n: 3, dir: env.dir });
  });
  after(async () => {
    // every node exits 0 (under ASan a leak or an error report does not)
    const bad = [];
    for (const n of env.nodes) {
      const r = await n.stop().catch((e) => ({ code: String(e) }));
      if (r.code !== 0 && !n.killed) bad.push(`exit ${JSON.stringify(r)}\n${n.logs.slice(-3000)}`);
    }
    if (env.cluster) {
      for (const s of env.cluster.servers) if (s.proc && !s.exited) s.proc.kill('SIGCONT'); // a frozen one
      await env.cluster.stop();
    }
    if (env.dir) fs.rmSync(env.dir, { recursive: true, force: true });
    if (bad.length) throw new Error(bad.join('\n'));
  });
  env.node = async (name, stream, args = [], { db } = {}) => {
    const srv = await startServer({
      db,
      args: ['--cluster', env.cluster.urls.join(','), '--node', name, '--stream', stream, '--rate', '0', ...args],
    });
    env.nodes.push(srv);
    return srv;
  };
  return env;
}
