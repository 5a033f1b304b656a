// A real JetStream cluster for the tests: n `nats-server` processes on
// loopback ports, each with `jetstream {store_dir}` and a `cluster {name,
// listen, routes}` block, config files and store directories under `dir`.
//
//   const c = await startCluster({ n: 3, dir });
//   c.urls            ['nats://127.0.0.1:P1', ...] (client ports)
//   await c.kill(i)   SIGKILL server i (its store stays)
//   await c.restart(i) start server i again on the same ports and store
//   await c.stop()    stop every server (call it in finally/after)
//
// startCluster resolves once every server answers /healthz (JetStream
// enabled and current) and /jsz names a meta leader with every peer current.
// Under CI=true a missing nats-server is an error; otherwise callers can ask
// natsServerMissing() for a skip reason.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

export const NATS_SERVER = process.env.NATS_SERVER_BIN || 'nats-server';

// A reason to skip (string), or false when nats-server can be run. Under
// CI=true it throws instead: the suite must not pass without the cluster.
export function natsServerMissing() {
  const r = spawnSync(NATS_SERVER, ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return false;
  const why = `${NATS_SERVER} is not installed (Debian package nats-server; scripts/setup --test installs it)`;
  if (process.env.CI === 'true') throw new Error(why);
  return why;
}

// n distinct free loopback ports (bound together, then released).
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', resolve); });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function getJson(port, p, ms = 1000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout: ms }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        try { resolve({ status: res.statusCode, body: JSON.parse(body) }); } catch { resolve({ status: res.statusCode, body: null }); }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: null }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The config of server i (a nats-server config file, the syntax nats-server -t
// checks). Exported so that tests can compare with the shipped examples.
export function serverConfig({ name, port, clusterPort, httpPort, storeDir, routes, clusterName = 'bs-test' }) {
  return [
    `server_name: ${name}`,
    `listen: 127.0.0.1:${port}`,
    `http: 127.0.0.1:${httpPort}`,
    'jetstream {',
    `  store_dir: "${storeDir}"`,
    '  max_memory_store: 64MB',
    '  max_file_store: 1GB',
    '}',
    'cluster {',
    `  name: ${clusterName}`,
    `  listen: 127.0.0.1:${clusterPort}`,
    '  routes: [',
    ...routes.map((r) => `    ${r}`),
    '  ]',
    '}',
    '',
  ].join('\n');
}

// Waits until every running server reports JetStream healthy and one of
// them names a meta leader whose cluster has every server current.
async function waitReady(servers, timeoutMs) {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < timeoutMs) {
    const live = servers.filter((s) => s.proc && s.exited === null);
    let ok = live.length > 0;
    for (const s of live) {
      const h = await getJson(s.httpPort, '/healthz?js-enabled-only=true');
      if (h.status !== 200) { ok = false; last = `${s.name} /healthz ${h.status} ${JSON.stringify(h.body)}`; break; }
      const j = await getJson(s.httpPort, '/jsz');
      const meta = j.body && j.body.meta_cluster;
      if (!meta || !meta.leader) { ok = false; last = `${s.name} /jsz: no meta leader`; break; }
      const replicas = meta.replicas || [];
      // The leader is not in its own replica list; every other live server must be current.
      const current = replicas.filter((r) => r.current && !r.offline).map((r) => r.name);
      const others = live.filter((o) => o.name !== meta.leader).map((o) => o.name);
      if (s.name === meta.leader && !others.every((n) => current.includes(n))) {
        ok = false; last = `${s.name} is meta leader, current peers ${current.join(',')} of ${others.join(',')}`; break;
      }
    }
    if (ok) return;
    for (const s of servers) {
      if (s.proc && s.exited !== null && !s.killed) throw new Error(`nats-server ${s.name} exited ${JSON.stringify(s.exited)}:\n${s.log.slice(-3000)}`);
    }
    await sleep(200);
  }
  throw new Error(`JetStream cluster not ready after ${timeoutMs} ms: ${last}\n` +
    servers.map((s) => `--- ${s.name}\n${s.log.slice(-1500)}`).join('\n'));
}

function spawnServer(s) {
  s.exited = null;
  s.killed = false;
  s.proc = spawn(NATS_SERVER, ['-c', s.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const onData = (d) => { s.log = (s.log + d).slice(-200000); };
  s.proc.stdout.on('data', onData);
  s.proc.stderr.on('data', onData);
  s.exitPromise = new Promise((resolve) => s.proc.on('exit', (code, sig) => { s.exited = { code, sig }; resolve(s.exited); }));
}

export async function startCluster({ n = 3, dir, readyTimeoutMs = 30000, clusterName = 'bs-test' } = {}) {
  if (!dir) throw new Error('startCluster: dir is required');
  const ports = await freePorts(3 * n);
  const servers = [];
  for (let i = 0; i < n; i++) {
    servers.push({
      name: `n${i + 1}`, port: ports[3 * i], clusterPort: ports[3 * i + 1], httpPort: ports[3 * i + 2],
      storeDir: path.join(dir, `n${i + 1}-store`), configPath: path.join(dir, `n${i + 1}.conf`),
    });
  }
  for (const s of servers) {
    fs.mkdirSync(s.storeDir, { recursive: true });
    const routes = servers.filter((o) => o !== s).map((o) => `nats-route://127.0.0.1:${o.clusterPort}`);
    fs.writeFileSync(s.configPath, serverConfig({ ...s, routes, clusterName }));
  }
  return launchServers(servers, { readyTimeoutMs });
}

// Starts servers from config files already written: each of `specs` is
// {name (its server_name), configPath, port (client), httpPort (monitoring)}.
// Resolves with the same object as startCluster once the cluster is ready.
export async function launchServers(specs, { readyTimeoutMs = 30000 } = {}) {
  const servers = specs.map((s) => ({ ...s, log: '', proc: null, exited: null, killed: false }));
  const cluster = {
    servers,
    urls: servers.map((s) => `nats://127.0.0.1:${s.port}`),
    async kill(i) {
      const s = servers[i];
      if (!s.proc || s.exited !== null) return;
      s.killed = true;
      s.proc.kill('SIGKILL');
      await s.exitPromise;
    },
    async restart(i, { timeoutMs = 30000 } = {}) {
      const s = servers[i];
      if (s.proc && s.exited === null) throw new Error(`${s.name} is running`);
      spawnServer(s);
      await waitReady(servers, timeoutMs);
    },
    async stop() {
      await Promise.all(servers.map(async (s) => {
        if (!s.proc || s.exited !== null) return;
        s.killed = true;
        s.proc.kill('SIGTERM');
        const t = setTimeout(() => s.proc.kill('SIGKILL'), 5000);
        await s.exitPromise;
        clearTimeout(t);
      }));
    },
    logs() { return servers.map((s) => `--- ${s.name}\n${s.log}`).join('\n'); },
  };
  try {
    for (const s of servers) spawnServer(s);
    await waitReady(servers, readyTimeoutMs);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
