#!/usr/bin/env node
// The cluster anchor for the benchmarks: Socket.IO 4 on two nodes joined by
// @socket.io/redis-streams-adapter over a Debian redis-server, all started
// here on loopback ports and stopped at the end. Two measurements, one JSON
// line each on stdout (like build/bench/loadgen):
//
//   --mode deliveries   cross-node fan-out: a publisher on node A keeps
//                       --inflight acknowledged emits in flight to a room whose
//                       --receivers members are all on node B; deliveries/s
//                       and latency (send to receipt) over --duration s after
//                       --warmup s.
//   --mode recovery     messages lost by clients that move to the other node:
//                       --receivers clients on node B, a publisher on A emits
//                       numbered messages at --rate/s; after --before s node B
//                       is killed (--kill sigkill, kill -9) or every client
//                       drops its own connection (--kill drop, the network
//                       blip that connection state recovery is made for);
//                       the clients reconnect to node A with Socket.IO's
//                       connection state recovery (what the adapter
//                       advertises) and the publisher goes on for --after s.
//                       Counts what each client never got, how many sessions
//                       were recovered, how long reconnecting took.
//
//   node bench/peers/socketio-cluster.mjs --mode deliveries --receivers 100
//   node bench/peers/socketio-cluster.mjs --mode recovery --kill sigkill
//
// Acks go out on node A at once (no storage), as with the other peers.
// Needs redis-server (Debian package redis-server; scripts/setup --bench) and
// the bench npm packages (npm ci --prefix bench).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HELP = `usage: node bench/peers/socketio-cluster.mjs [options]
  --mode deliveries|recovery   what to measure (default deliveries)
  --receivers N                clients on node B (default 100)
  --inflight N                 deliveries: emits in flight from the publisher (default 32)
  --payload BYTES              deliveries: filler per message (default 128)
  --warmup S --duration S      deliveries: window (default 1, 5)
  --rate N                     recovery: messages per second (default 200)
  --before S --after S         recovery: publishing before / after the kill (default 2, 6)
  --kill sigkill|drop          recovery: kill -9 node B, or drop the clients' connections (default sigkill)
  --redis-server PATH          default redis-server
  --label TEXT                 label in the JSON line
  --quiet                      only the JSON line
  --role node ...              internal: one Socket.IO node`;

function parse(argv) {
  const o = {
    mode: 'deliveries', receivers: 100, inflight: 32, payload: 128, warmup: 1, duration: 5,
    rate: 200, before: 2, after: 6, kill: 'sigkill', redisServer: 'redis-server', label: null,
    quiet: false, role: null, port: 0, redis: null, recovery: false,
  };
  const num = new Set(['receivers', 'inflight', 'payload', 'warmup', 'duration', 'rate', 'before', 'after', 'port']);
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { console.log(HELP); process.exit(0); }
    if (a === '--quiet') { o.quiet = true; continue; }
    if (a === '--recovery') { o.recovery = true; continue; }
    const key = a.replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!a.startsWith('--') || !(key in o) || i + 1 >= argv.length) {
      console.error(`socketio-cluster: unknown argument ${a}\n${HELP}`);
      process.exit(2);
    }
    o[key] = num.has(key) ? Number(argv[++i]) : argv[++i];
  }
  if (!['deliveries', 'recovery'].includes(o.mode) || !['sigkill', 'drop'].includes(o.kill)) {
    console.error(HELP);
    process.exit(2);
  }
  return o;
}

const opts = parse(process.argv);
const log = (...a) => { if (!opts.quiet) console.error('[socketio-cluster]', ...a); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- one Socket.IO node (a child process) ----

async function runNode() {
  const { Server } = await import('socket.io');
  const { createAdapter } = await import('@socket.io/redis-streams-adapter');
  const { createClient } = await import('redis');
  const redis = createClient({ url: opts.redis });
  redis.on('error', () => {}); // reconnects by itself; the measurement shows the effect
  await redis.connect();
  const server = http.createServer();
  const io = new Server(server, {
    adapter: createAdapter(redis, { maxLen: 100000 }),
    transports: ['websocket'],
    serveClient: false,
    connectionStateRecovery: opts.recovery ? { maxDisconnectionDuration: 120000, skipMiddlewares: true } : undefined,
  });
  io.on('connection', (socket) => {
    socket.on('join', (room, ack) => { socket.join(room); if (typeof ack === 'function') ack(); });
    socket.on('publish', (msg, ack) => {
      io.to(msg.room).emit('msg', msg);
      if (typeof ack === 'function') ack();
    });
  });
  server.listen(opts.port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
  process.on('SIGTERM', () => { io.close(); redis.quit().finally(() => process.exit(0)); });
}

// ---- the orchestrator ----

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const children = new Set();
function child(cmd, args, ready) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(p);
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  p.on('exit', () => children.delete(p));
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      const m = ready(out);
      if (m) { clearInterval(poll); resolve({ proc: p, match: m, out: () => out }); }
      else if (p.exitCode !== null || Date.now() - t0 > 15000) {
        clearInterval(poll);
        reject(new Error(`${cmd} did not start:\n${out}`));
      }
    }, 20);
  });
}
function stopAll() { for (const p of children) { try { p.kill('SIGKILL'); } catch {} } }
process.on('exit', stopAll);

// CPU seconds and RSS of a process, from /proc.
function procStat(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    return { cpu_s: (Number(f[11]) + Number(f[12])) / 100, rss_kib: rss };
  } catch { return { cpu_s: 0, rss_kib: 0 }; }
}

function percentiles(values) {
  const v = Float64Array.from(values).sort();
  const at = (q) => (v.length ? Math.round(v[Math.min(v.length - 1, Math.floor(q * v.length))]) : 0);
  return { count: v.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: v.length ? Math.round(v[v.length - 1]) : 0 };
}

async function startCluster(recovery) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sio-cluster-'));
  const rport = await freePort();
  const redis = await child(opts.redisServer, ['--port', String(rport), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', tmp, '--loglevel', 'notice'],
  (out) => /Ready to accept connections/.test(out) || null);
  const self = fileURLToPath(import.meta.url);
  const nodeArgs = ['--role', 'node', '--redis', `redis://127.0.0.1:${rport}`, ...(recovery ? ['--recovery'] : [])];
  const ready = (out) => /listening (\d+)/.exec(out);
  const a = await child(process.execPath, [self, ...nodeArgs], ready);
  const b = await child(process.execPath, [self, ...nodeArgs], ready);
  return {
    tmp, redis, a, b,
    urlA: `http://127.0.0.1:${a.match[1]}`,
    urlB: `http://127.0.0.1:${b.match[1]}`,
    stop() { stopAll(); fs.rmSync(tmp, { recursive: true, force: true }); },
  };
}

async function clientFor(url, extra = {}) {
  const { io } = await import('socket.io-client');
  const s = io(url, { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 1000, ...extra });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no connection to ${url}`)), 10000);
    s.once('connect', () => { clearTimeout(t); resolve(); });
  });
  return s;
}

async function joinAll(sockets, room) {
  await Promise.all(sockets.map((s) => s.timeout(10000).emitWithAck('join', room)));
}

async function deliveries() {
  const c = await startCluster(false);
  try {
    const room = 'bench';
    const receivers = [];
    for (let i = 0; i < opts.receivers; i++) receivers.push(await clientFor(c.urlB));
    await joinAll(receivers, room);
    const pub = await clientFor(c.urlA);
    log(`${opts.receivers} receivers on node B, publisher on node A`);
    let measuring = false, delivered = 0, published = 0;
    const lat = [];
    for (const s of receivers) {
      s.on('msg', (m) => {
        if (!measuring) return;
        delivered++;
        if (lat.length < 2e6) lat.push((performance.now() - m.t) * 1000);
      });
    }
    const filler = 'x'.repeat(opts.payload);
    let running = true;
    const loop = async () => {
      while (running) {
        await pub.timeout(10000).emitWithAck('publish', { room, t: performance.now(), d: filler });
        if (measuring) published++;
      }
    };
    const loops = Array.from({ length: opts.inflight }, loop);
    await sleep(opts.warmup * 1000);
    const before = [c.a, c.b, c.redis].map((p) => procStat(p.proc.pid));
    const cpu0 = process.cpuUsage();
    measuring = true;
    const t0 = performance.now();
    await sleep(opts.duration * 1000);
    measuring = false;
    const window = (performance.now() - t0) / 1000;
    const after = [c.a, c.b, c.redis].map((p) => procStat(p.proc.pid));
    const cpu1 = process.cpuUsage(cpu0);
    running = false;
    await Promise.allSettled(loops);
    const cpu = (i) => +(after[i].cpu_s - before[i].cpu_s).toFixed(2);
    return {
      ok: delivered > 0, label: opts.label || 'socketio-cluster/deliveries', mode: 'deliveries',
      receivers: opts.receivers, inflight: opts.inflight, payload: opts.payload, window_s: +window.toFixed(3),
      published, delivered, delivered_per_s: Math.round(delivered / window),
      published_per_s: Math.round(published / window), latency_us: percentiles(lat),
      server: {
        cpu_s: { node_a: cpu(0), node_b: cpu(1), redis: cpu(2) },
        // This process: the publisher and every receiver. Near window_s,
        // the figure is the clients' limit, not the servers'.
        clients_cpu_s: +((cpu1.user + cpu1.system) / 1e6).toFixed(2),
        rss_kib: { node_a: after[0].rss_kib, node_b: after[1].rss_kib, redis: after[2].rss_kib },
      },
    };
  } finally {
    c.stop();
  }
}

async function recovery() {
  const c = await startCluster(true);
  try {
    const room = 'bench';
    const rx = [];
    for (let i = 0; i < opts.receivers; i++) {
      const s = await clientFor(c.urlB);
      const r = { s, seen: new Set(), dups: 0, disconnectAt: 0, reconnectMs: null, recovered: null };
      s.on('msg', (m) => { if (r.seen.has(m.seq)) r.dups++; else r.seen.add(m.seq); });
      s.on('disconnect', () => {
        if (!r.disconnectAt) r.disconnectAt = performance.now();
        s.io.uri = c.urlA; // the next attempt goes to the other node
      });
      s.on('connect', () => {
        if (!r.disconnectAt || r.reconnectMs !== null) return;
        r.reconnectMs = performance.now() - r.disconnectAt;
        r.recovered = s.recovered;
        // Not recovered: the application joins again (what it must do).
        if (!s.recovered) s.emit('join', room);
      });
      rx.push(r);
    }
    await joinAll(rx.map((r) => r.s), room);
    const pub = await clientFor(c.urlA);
    log(`${opts.receivers} receivers on node B, publisher on node A, ${opts.rate}/s, then ${opts.kill}`);
    let seq = 0;
    const timer = setInterval(() => { pub.emit('publish', { room, seq: ++seq }); }, 1000 / opts.rate);
    await sleep(opts.before * 1000);
    const atKill = seq;
    if (opts.kill === 'sigkill') c.b.proc.kill('SIGKILL');
    else for (const r of rx) r.s.io.engine.close();
    await sleep(opts.after * 1000);
    clearInterval(timer);
    const published = seq;
    // The last ones arrive: wait until nothing came for 1 s (at most 20 s),
    // so that a slow client is not counted as a lost message.
    const total = () => rx.reduce((x, r) => x + r.seen.size, 0);
    for (let last = -1, t0 = Date.now(); Date.now() - t0 < 20000;) {
      const n = total();
      if (n === last) break;
      last = n;
      await sleep(1000);
    }
    const missing = rx.map((r) => {
      const m = [];
      for (let i = 1; i <= published; i++) if (!r.seen.has(i)) m.push(i);
      return m;
    });
    const lost = missing.map((m) => m.length);
    const moved = rx.filter((r) => r.reconnectMs !== null);
    const sum = lost.reduce((x, y) => x + y, 0);
    return {
      ok: moved.length > 0, label: opts.label || `socketio-cluster/recovery-${opts.kill}`, mode: 'recovery',
      kill: opts.kill, receivers: opts.receivers, rate: opts.rate, published, published_before_kill: atKill,
      reconnected: moved.length, recovered: moved.filter((r) => r.recovered).length,
      lost_total: sum, lost_per_receiver: { min: Math.min(...lost), mean: +(sum / lost.length).toFixed(1), max: Math.max(...lost) },
      duplicates: rx.reduce((x, r) => x + r.dups, 0),
      // Which ones, for the first receiver (relative to the kill at
      // published_before_kill).
      lost_sample: missing[0].slice(0, 20),
      reconnect_ms: percentiles(moved.map((r) => r.reconnectMs * 1000)),
    };
  } finally {
    c.stop();
  }
}

if (opts.role === 'node') {
  await runNode();
} else {
  try {
    const r = opts.mode === 'deliveries' ? await deliveries() : await recovery();
    if (r.reconnect_ms) for (const k of ['p50', 'p90', 'p99', 'max']) r.reconnect_ms[k] = Math.round(r.reconnect_ms[k] / 1000);
    console.log(JSON.stringify(r));
    process.exit(r.ok ? 0 : 1);
  } catch (e) {
    console.error('socketio-cluster:', e.message);
    console.log(JSON.stringify({ ok: false, label: opts.label || `socketio-cluster/${opts.mode}`, error: e.message }));
    process.exit(1);
  }
}
