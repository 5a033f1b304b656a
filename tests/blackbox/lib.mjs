// Shared helpers for the black-box tests: start the real binary on free
// ports with a fresh database, issue tokens through the CLI, connect with
// the `ws` client or a raw socket.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import crypto from 'node:crypto';
import WebSocket from 'ws';

export const BIN = process.env.BASESTATION_BIN ||
  path.resolve(import.meta.dirname, '../../build/basestation');
export const API_KEY = 'test-api-key';
export const ADMIN_KEY = 'test-admin-key';

export function tempDb() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-test-'));
  return { dir, db: path.join(dir, 'test.db') };
}

// Start `basestation serve`. Resolves once the ready line is logged.
export async function startServer(opts = {}) {
  const { dir, db } = opts.db ? { dir: null, db: opts.db } : tempDb();
  const args = ['serve', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--db', db, ...(opts.noKeys ? [] : ['--api-key', API_KEY, '--admin-key', ADMIN_KEY]),
    ...(opts.args || [])];
  // BASESTATION_WRAPPER runs the server under a tool, e.g. valgrind;
  // opts.prefix (e.g. ['prlimit', '--nofile=256:256']) and opts.wrap (argv
  // words, e.g. a shell that execs "$0" "$@") go before it.
  const wrap = process.env.BASESTATION_WRAPPER ? process.env.BASESTATION_WRAPPER.split(' ') : [];
  const slow = !!process.env.BASESTATION_WRAPPER;
  const cmd = [...(opts.prefix || []), ...(opts.wrap || []), ...wrap, BIN, ...args];
  const proc = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
  const srv = { proc, db, dir, logs: '', stdout: '', exited: null };
  proc.stdout.on('data', (d) => { srv.stdout += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => { srv.exited = { code, sig }; resolve(srv.exited); }));
  srv.exitedPromise = exited;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + srv.logs)), slow ? 60000 : 10000);
    proc.stderr.on('data', (d) => {
      srv.logs += d;
      const m = /event=server\.ready .*ws_port=(\d+) .*http_port=(\d+)/.exec(srv.logs);
      if (m && !srv.wsPort) {
        srv.wsPort = Number(m[1]);
        srv.httpPort = Number(m[2]);
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', () => { clearTimeout(timer); reject(new Error('server exited early:\n' + srv.logs)); });
  });
  srv.url = (q = '') => `ws://127.0.0.1:${srv.wsPort}/ws${q}`;
  srv.http = `http://127.0.0.1:${srv.httpPort}`;
  // Graceful stop; resolves with the exit status.
  srv.stop = async () => {
    if (!srv.exited) proc.kill('SIGTERM');
    const r = await exited;
    return r;
  };
  srv.kill9 = async () => { srv.killed = true; if (!srv.exited) proc.kill('SIGKILL'); return exited; };
  // Stop and check the exit: 0, within 5 s (under ASan a leak or an error
  // report turns into a non-zero status and fails the test here).
  srv.cleanup = async () => {
    const t0 = Date.now();
    const r = await srv.stop();
    if (dir && !opts.keepDb) rmSync(dir, { recursive: true, force: true });
    if (!srv.killed && (r.code !== 0 || (!slow && Date.now() - t0 > 5000))) {
      throw new Error(`server exit ${JSON.stringify(r)} after ${Date.now() - t0} ms\n` + srv.logs.slice(-4000));
    }
  };
  return srv;
}

// A test's skip reason when the program (a path, or a name looked up on
// PATH) is missing, false when it is there. Under CI=true a missing tool is
// a failure, never a silent skip: this throws, which fails the test file.
export function needTool(prog, why) {
  const found = prog.includes('/') ? existsSync(prog)
    : (process.env.PATH || '').split(':').some((d) => d && existsSync(path.join(d, prog)));
  if (found) return false;
  const msg = `${prog} is missing (${why})`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${msg}`);
  return msg;
}

// A self-signed certificate for 127.0.0.1 (EC P-256, CN=name) made by the
// openssl CLI in dir: { cert, key } (paths). The caller checks for openssl
// with needTool.
export function selfSignedPair(dir, name) {
  const cert = path.join(dir, `${name}.crt`), key = path.join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

export function token(db, uid, role = 'user', ttl) {
  const args = ['token', 'issue', '--uid', uid, '--role', role, '--db', db];
  if (ttl !== undefined) args.push('--ttl', String(ttl));
  return execFileSync(BIN, args, { encoding: 'utf8' }).trim();
}

// A `ws` client that queues every JSON message it receives.
export class Client {
  constructor(url, opts = {}) {
    this.queue = [];
    this.waiters = [];
    this.all = [];
    this.ws = new WebSocket(url, opts.protocols || [], { headers: opts.headers || {}, ...(opts.wsOptions || {}) });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve);
      this.ws.on('error', reject);
      this.ws.on('unexpected-response', (req, res) => reject(Object.assign(new Error('HTTP ' + res.statusCode), { status: res.statusCode, headers: res.headers })));
    });
    this.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      this.all.push(msg);
      const i = this.waiters.findIndex((w) => w.pred(msg));
      if (i >= 0) { const [w] = this.waiters.splice(i, 1); clearTimeout(w.timer); w.resolve(msg); } else this.queue.push(msg);
    });
  }
  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }
  // Next message matching pred (removed from the queue).
  next(pred = () => true, ms = 5000) {
    if (typeof pred === 'string') { const t = pred; pred = (m) => m.type === t; }
    const i = this.queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error('timeout waiting for message; queue=' + JSON.stringify(this.queue).slice(0, 500)));
      }, ms);
      this.waiters.push(w);
    });
  }
  // Resolves true when nothing matching pred arrives within ms.
  async none(pred, ms = 300) {
    try { await this.next(pred, ms); return false; } catch { return true; }
  }
  close() { try { this.ws.close(); } catch {} return this.closed; }
  terminate() { this.ws.terminate(); }
}

export async function connect(srv, uid, opts = {}) {
  const tok = opts.token || token(srv.db, uid, opts.role || 'user');
  const q = new URLSearchParams({ token: tok, ...(opts.query || {}) });
  const c = new Client(srv.url('?' + q), opts);
  await c.opened;
  // Under a wrapper such as valgrind the server answers many times slower.
  c.hello = await c.next('connect', process.env.BASESTATION_WRAPPER ? 30000 : 5000);
  c.token = tok;
  return c;
}

// Send raw bytes and collect the reply until the server closes or ms pass.
export function rawExchange(port, data, ms = 3000) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = () => { if (done) return; done = true; clearTimeout(t); s.destroy(); resolve(Buffer.concat(chunks)); };
    const t = setTimeout(finish, ms);
    s.on('connect', () => s.write(data));
    s.on('data', (d) => chunks.push(d));
    s.on('end', finish);
    s.on('close', finish);
    s.on('error', finish);
  });
}

export function upgradeRequest(port, { path = '/ws', query = '', headers = {}, omit = [] } = {}) {
  const h = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  for (const k of omit) delete h[k];
  let s = `GET ${path}${query} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) s += `${k}: ${v}\r\n`;
  return s + '\r\n';
}

export function statusOf(buf) {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(buf.toString('latin1'));
  return m ? Number(m[1]) : null;
}

// Encode a client frame (masked unless mask === false).
export function frame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0, len } = {}) {
  payload = Buffer.from(payload);
  const n = len ?? payload.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode)];
  const m = mask ? 0x80 : 0;
  if (n < 126) head.push(m | n);
  else if (n < 65536) head.push(m | 126, n >> 8, n & 255);
  else { head.push(m | 127); const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); head.push(...b); }
  let body = payload;
  const parts = [Buffer.from(head)];
  if (mask) {
    const key = crypto.randomBytes(4);
    body = Buffer.from(payload.map((x, i) => x ^ key[i & 3]));
    parts.push(key);
  }
  parts.push(body);
  return Buffer.concat(parts);
}

// Raw WebSocket on port with token t: the upgrade (with `first` written in
// the same packet when given), then raw frames in and parsed frames out.
// Resolves once the connect frame arrived; rejects when refused. headers
// go into the upgrade request; api.head is the 101's head.
export function openRawWs(port, t, { first = null, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0), upgraded = false, ended = false, waiters = [];
    const frames = [];
    const notify = () => { const w = waiters; waiters = []; w.forEach((f) => f()); };
    const pump = () => {
      for (;;) {
        if (!upgraded) {
          const i = buf.indexOf('\r\n\r\n');
          if (i < 0) return;
          const head = buf.subarray(0, i).toString();
          if (!head.startsWith('HTTP/1.1 101')) { reject(new Error('no upgrade: ' + head)); s.destroy(); return; }
          api.head = head;
          buf = buf.subarray(i + 4);
          upgraded = true;
          continue;
        }
        if (buf.length < 2) return;
        let n = buf[1] & 127, off = 2;
        if (buf[1] & 0x80) throw new Error('server frames must not be masked');
        if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); off = 4; } else if (n === 127) { if (buf.length < 10) return; n = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + n) return;
        const f = { fin: !!(buf[0] & 0x80), rsv: (buf[0] >> 4) & 7, opcode: buf[0] & 15, payload: buf.subarray(off, off + n) };
        if (f.opcode === 8) {
          f.code = n >= 2 ? f.payload.readUInt16BE(0) : 1005;
          f.reason = f.payload.subarray(2).toString();
        }
        if (f.opcode === 1) { try { f.json = JSON.parse(f.payload.toString()); } catch {} }
        buf = buf.subarray(off + n);
        frames.push(f);
      }
    };
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); notify(); });
    s.on('close', () => { ended = true; notify(); reject(new Error('closed before the upgrade')); });
    s.on('error', () => {});
    s.on('connect', () => {
      const head = Buffer.from(upgradeRequest(port, { query: '?token=' + t, headers }));
      s.write(first ? Buffer.concat([head, first]) : head);
    });
    const api = {
      head: null,
      socket: s,
      frames,
      write: (b) => s.write(b),
      get ended() { return ended; },
      // Wait for a frame matching pred (not consumed).
      async waitFor(pred, ms = 5000) {
        const deadline = Date.now() + ms;
        for (;;) {
          const f = frames.find(pred);
          if (f) return f;
          if (ended || Date.now() > deadline) return null;
          await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
        }
      },
      async json(pred, ms) {
        const f = await api.waitFor((x) => x.json && pred(x.json), ms);
        return f ? f.json : null;
      },
      async closeCode(ms = 5000) {
        const f = await api.waitFor((x) => x.opcode === 8, ms);
        return f ? f.code : null;
      },
      async waitEnd(ms = 5000) {
        const deadline = Date.now() + ms;
        while (!ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        return ended;
      },
      // The close frame, then the TCP close: { code, reason, ended }.
      async closed(ms = 5000) {
        const f = await api.waitFor((x) => x.opcode === 8, ms);
        await api.waitEnd(ms);
        return { code: f ? f.code : null, reason: f ? f.reason : null, ended };
      },
      destroy: () => s.destroy(),
    };
    (async () => {
      const f = await api.waitFor((x) => x.json && x.json.type === 'connect');
      if (f) resolve(api);
      else { s.destroy(); reject(new Error('no connect frame')); }
    })();
  });
}

// The same with a token issued for uid.
export function rawWs(srv, uid = 'raw') {
  return openRawWs(srv.wsPort, token(srv.db, uid));
}

export async function api(srv, method, p, body, key = API_KEY) {
  const headers = {};
  if (key) headers.Authorization = 'Bearer ' + key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(srv.http + p, { method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, text, headers: res.headers };
}

// n characters that do not compress: tests about output bytes (back-pressure,
// buffered output) must not be undone by permessage-deflate, which the ws
// client offers and the server takes by default.
export const incompressible = (n) => crypto.randomBytes(Math.ceil(n * 3 / 4) + 3).toString('base64').slice(0, n);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A port free a moment ago (nothing listens on it now).
export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// ---- appended helpers (handshake/frames/heartbeat/shutdown tests) ----

// Like rawExchange, but also tells whether the server closed the TCP
// connection (closed: true) before ms passed, after how long, and the
// parsed status line and headers (names lower-cased).
// until(text), when given, ends the wait early (closed: false) as soon as
// it returns true for what has arrived.
export function httpExchange(port, data, ms = 3000, until = null) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const buf = Buffer.concat(chunks);
      const text = buf.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      const headers = {};
      for (const line of text.slice(0, headEnd < 0 ? text.length : headEnd).split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ buf, text, status: statusOf(buf), headers, closed, ms: Date.now() - t0 });
    };
    const t = setTimeout(() => finish(false), ms);
    s.on('connect', () => s.write(data));
    s.on('data', (d) => { chunks.push(d); if (until && until(Buffer.concat(chunks).toString('latin1'))) finish(false); });
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
  });
}

// Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2).
export function acceptKey(key) {
  return crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

// An HS256 JWT (header may be overridden, e.g. {alg:'none'}).
export function jwt(secret, claims, header = { alg: 'HS256', typ: 'JWT' }) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = b64(header) + '.' + b64(claims);
  const sig = header.alg === 'HS256' ? crypto.createHmac('sha256', secret).update(body).digest('base64url') : '';
  return body + '.' + sig;
}

// ---- memory checks ----

// Environment for a broker whose RSS a test measures. A sanitizer build
// keeps freed memory in quarantine (256 MiB by default), which would hide
// whether it is reused: turn the quarantine off there, so RSS means the
// same on every build (allocations stay padded; bounds must allow that).
export const SANITIZED = /lib[a-z]*san\.so/.test(spawnSync('ldd', [BIN], { encoding: 'utf8' }).stdout || '');
export const MEMORY_ENV = SANITIZED
  ? { ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'quarantine_size_mb=0'].filter(Boolean).join(':') }
  : {};

// The broker's resident set (VmRSS), in bytes.
export function rssBytes(srv) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// The value of an unlabelled sample of GET /metrics (throws when absent).
export async function metricValue(srv, name) {
  const text = await (await fetch(srv.http + '/metrics')).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}
