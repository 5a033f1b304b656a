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
// an assertion failed.
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
    for (const n of env.nodes) await n.stop().catch(() => {});
    if (env.cluster) {
      for (const s of env.cluster.servers) if (s.proc && !s.exited) s.proc.kill('SIGCONT'); // a frozen one
      await env.cluster.stop();
    }
    if (env.dir) fs.rmSync(env.dir, { recursive: true, force: true });
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
