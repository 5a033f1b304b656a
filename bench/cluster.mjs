#!/usr/bin/env node
// basestation as two nodes of a three-server JetStream cluster (stream
// replicas R3), everything on loopback ports, for bench/run. The NATS
// servers come from tests/cluster/nats.mjs (nats-server on PATH; Debian
// package nats-server, scripts/setup --bench).
//
//   --mode up        start the cluster and nodes A and B, print one JSON line
//                    {"ready":true,"a":{"port","pid"},"b":{...}} and keep
//                    everything running until SIGTERM / SIGINT, then stop it
//                    all (bench/run drives build/bench/loadgen against it:
//                    senders / the publisher on A, receivers on B).
//   --mode recovery  the counterpart of bench/peers/socketio-cluster.mjs
//                    --mode recovery: --receivers clients on node B, members
//                    of one room; a publisher on node A publishes numbered
//                    messages at --rate/s; after --before s node B gets
//                    kill -9; each receiver reconnects to node A with
//                    ?since=<last seq it saw>&epoch=E (what the JavaScript
//                    client does) and the publisher goes on for --after s.
//                    Counts, per receiver, the acked publishes it never got,
//                    duplicates, and how long the move took.
//
//   node bench/cluster.mjs --mode recovery --receivers 100 --rate 200
//
// Output: one JSON line on stdout (like build/bench/loadgen); progress on
// stderr unless --quiet. BASESTATION_BIN overrides build/basestation.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { startCluster, natsServerMissing } from '../tests/cluster/nats.mjs';
import { jwt } from '../tests/blackbox/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const BS = process.env.BASESTATION_BIN || path.join(here, '..', 'build', 'basestation');

const HELP = `usage: node bench/cluster.mjs --mode up|recovery [options]
  --receivers N          recovery: clients on node B (default 100)
  --rate N               recovery: publishes per second (default 200)
  --before S --after S   recovery: publishing before / after the kill (default 2, 6)
  --secret S             JWT secret of the nodes (default a random one; up prints it)
  --label TEXT --quiet`;

function parse(argv) {
  const o = { mode: null, receivers: 100, rate: 200, before: 2, after: 6, secret: null, label: null, quiet: false };
  const num = new Set(['receivers', 'rate', 'before', 'after']);
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { console.log(HELP); process.exit(0); }
    if (a === '--quiet') { o.quiet = true; continue; }
    const key = a.replace(/^--/, '');
    if (!a.startsWith('--') || !(key in o) || i + 1 >= argv.length) {
      console.error(`bench/cluster.mjs: unknown argument ${a}\n${HELP}`);
      process.exit(2);
    }
    o[key] = num.has(key) ? Number(argv[++i]) : argv[++i];
  }
  if (!['up', 'recovery'].includes(o.mode)) { console.error(HELP); process.exit(2); }
  return o;
}

const opts = parse(process.argv);
const log = (...a) => { if (!opts.quiet) console.error('[cluster]', ...a); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SECRET = opts.secret || `bench-cluster-${process.pid}`;

// One basestation node on the cluster; resolves once it logs server.ready.
function startNode(name, urls, dir) {
  const args = ['serve', '--listen', '127.0.0.1:0', '--http', 'off', '--db', path.join(dir, `${name}.sqlite`),
    '--cluster', urls.join(','), '--node', name, '--stream', 'bench', '--jwt-secret', SECRET, '--rate', '0',
    '--max-outbuf', '67108864', '--max-connections', '100000', '--log-level', 'info'];
  const proc = spawn(BS, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const node = { name, proc, port: 0, log: '', exited: null };
  node.exit = new Promise((resolve) => proc.on('exit', (code, sig) => { node.exited = { code, sig }; resolve(); }));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node ${name} not ready in 30 s:\n${node.log.slice(-2000)}`)), 30000);
    proc.stderr.on('data', (d) => {
      node.log = (node.log + d).slice(-100000);
      const m = /event=server\.ready .*ws_port=(\d+)/.exec(node.log);
      if (m && !node.port) { node.port = Number(m[1]); clearTimeout(t); resolve(node); }
    });
    proc.on('exit', () => { clearTimeout(t); if (!node.port) reject(new Error(`node ${name} exited:\n${node.log.slice(-2000)}`)); });
  });
}

async function stopNode(n) {
  if (!n || n.exited) return;
  n.proc.kill('SIGTERM');
  const t = setTimeout(() => n.proc.kill('SIGKILL'), 5000);
  await n.exit;
  clearTimeout(t);
}

async function up() {
  const missing = natsServerMissing();
  if (missing) throw new Error(missing);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cluster-'));
  const parts = { cluster: null, a: null, b: null };
  parts.stop = async () => {
    await Promise.all([stopNode(parts.a), stopNode(parts.b)]);
    if (parts.cluster) await parts.cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    parts.cluster = await startCluster({ n: 3, dir, clusterName: 'bench' });
    parts.a = await startNode('na', parts.cluster.urls, dir);
    parts.b = await startNode('nb', parts.cluster.urls, dir);
  } catch (e) {
    await parts.stop();
    throw e;
  }
  log(`nodes A :${parts.a.port} (pid ${parts.a.proc.pid}), B :${parts.b.port} (pid ${parts.b.proc.pid}) on ${parts.cluster.urls.join(',')}`);
  return parts;
}

// A client: frames parsed, the connect frame awaited.
function wsClient(port, uid, query = '') {
  const token = jwt(SECRET, { sub: uid, exp: Math.floor(Date.now() / 1000) + 3600 });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}${query}`);
  const c = { ws, hello: null, onMessage: () => {} };
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.type === 'connect') c.hello = m;
    c.onMessage(m);
  });
  c.ready = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no connect frame from :${port}`)), 10000);
    ws.on('error', (e) => { clearTimeout(t); reject(e); });
    const wait = setInterval(() => { if (c.hello) { clearInterval(wait); clearTimeout(t); resolve(c); } }, 5);
  });
  c.send = (o) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(o)); };
  return c;
}

function percentiles(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0);
  return { count: s.length, p50: Math.round(q(0.5)), p90: Math.round(q(0.9)), p99: Math.round(q(0.99)), max: Math.round(s.length ? s[s.length - 1] : 0) };
}

async function recovery() {
  const parts = await up();
  const clients = [];
  try {
    const { a, b } = parts;
    const room = 'bench';
    const rx = [];
    for (let i = 0; i < opts.receivers; i++) {
      const r = { uid: `rx${i}`, seen: new Set(), dups: 0, last: 0, disconnectAt: 0, reconnectMs: null, complete: null, c: null };
      const attach = (c) => {
        r.c = c;
        clients.push(c);
        c.onMessage = (m) => {
          if (m.type === 'message' && m.room === room) {
            if (r.seen.has(m.data.n)) r.dups++; else r.seen.add(m.data.n);
            if (m.seq > r.last) r.last = m.seq;
          } else if (m.type === 'resumed' && r.reconnectMs === null) {
            r.reconnectMs = performance.now() - r.disconnectAt;
            r.complete = m.complete;
          }
        };
        c.ws.on('close', () => {
          if (r.disconnectAt || c.ws !== r.c.ws) return;
          r.disconnectAt = performance.now();
          // to the other node, resuming after the last seq seen; retried
          // until it answers (a bounded number of times)
          const epoch = c.hello.epoch;
          const again = async (n) => {
            const next = wsClient(a.port, r.uid, `&since=${r.last}&epoch=${epoch}`);
            attach(next);
            try { await next.ready; } catch { if (n < 50) { await sleep(200); again(n + 1); } }
          };
          again(0);
        });
      };
      const c = wsClient(b.port, r.uid);
      attach(c);
      await c.ready;
      c.send({ type: 'join', room, ref: 'j' });
      rx.push(r);
    }
    const pub = wsClient(a.port, 'publisher');
    clients.push(pub);
    await pub.ready;
    let joined = false;
    pub.onMessage = (m) => { if (m.type === 'joined') joined = true; };
    pub.send({ type: 'join', room, ref: 'j' });
    for (let i = 0; i < 100 && !joined; i++) await sleep(50);
    await sleep(300); // the receivers' joins are stored too
    log(`${opts.receivers} receivers on node B, publisher on node A, ${opts.rate}/s, then kill -9 of B`);
    const acked = new Set();
    let n = 0;
    pub.onMessage = (m) => { if (m.type === 'ack' && typeof m.ref === 'string' && m.ref[0] === 'p') acked.add(Number(m.ref.slice(1))); };
    const timer = setInterval(() => { n++; pub.send({ type: 'publish', room, data: { n }, ref: `p${n}` }); }, 1000 / opts.rate);
    await sleep(opts.before * 1000);
    const atKill = n;
    b.proc.kill('SIGKILL');
    await b.exit;
    await sleep(opts.after * 1000);
    clearInterval(timer);
    // the last ones arrive: wait until nothing came for 1 s (at most 20 s)
    const total = () => rx.reduce((x, r) => x + r.seen.size, 0);
    for (let last = -1, t0 = Date.now(); Date.now() - t0 < 20000;) {
      const t = total();
      if (t === last && acked.size >= n) break;
      last = t;
      await sleep(1000);
    }
    const published = [...acked].sort((x, y) => x - y);
    const missing = rx.map((r) => published.filter((k) => !r.seen.has(k)));
    const lost = missing.map((m) => m.length);
    const moved = rx.filter((r) => r.reconnectMs !== null);
    const sum = lost.reduce((x, y) => x + y, 0);
    return {
      ok: moved.length > 0, label: opts.label || 'basestation-cluster/recovery-sigkill', mode: 'recovery', kill: 'sigkill',
      receivers: opts.receivers, rate: opts.rate, published: n, acked: acked.size, published_before_kill: atKill,
      reconnected: moved.length, recovered: moved.filter((r) => r.complete).length,
      lost_total: sum, lost_per_receiver: { min: Math.min(...lost), mean: +(sum / lost.length).toFixed(1), max: Math.max(...lost) },
      duplicates: rx.reduce((x, r) => x + r.dups, 0), lost_sample: missing[0].slice(0, 20),
      reconnect_ms: percentiles(moved.map((r) => r.reconnectMs)),
    };
  } finally {
    for (const c of clients) c.ws.terminate();
    await parts.stop();
  }
}

if (opts.mode === 'up') {
  const parts = await up().catch((e) => {
    console.error('bench/cluster.mjs:', e.message);
    console.log(JSON.stringify({ ready: false, error: e.message }));
    process.exit(1);
  });
  console.log(JSON.stringify({ ready: true, secret: SECRET, a: { port: parts.a.port, pid: parts.a.proc.pid },
    b: { port: parts.b.port, pid: parts.b.proc.pid } }));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await parts.stop();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // a node that dies on its own ends the run
  for (const n of [parts.a, parts.b]) n.exit.then(() => { if (!stopping) { console.error(`node ${n.name} exited:\n${n.log.slice(-2000)}`); stop(); } });
} else {
  try {
    const r = await recovery();
    console.log(JSON.stringify(r));
    process.exit(r.ok ? 0 : 1);
  } catch (e) {
    console.error('bench/cluster.mjs:', e.message);
    console.log(JSON.stringify({ ok: false, label: opts.label || 'basestation-cluster/recovery-sigkill', error: e.message }));
    process.exit(1);
  }
}
