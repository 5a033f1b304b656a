// basestation.js — the JavaScript client for the basestation broker.
//
// One dependency-free ES module for browsers and Node 20+. It does what the
// seed tutorials hand-roll, with every constant an option:
//   - token (and uid) in the query string, or as a WebSocket subprotocol;
//   - reconnect with capped exponential backoff and jitter, optional retry
//     limit (state 'failed' when it is reached);
//   - client heartbeat: {"type":"ping"} every `heartbeatInterval`, the
//     connection is dropped and re-made when nothing arrives within
//     `pongTimeout`; a connect timeout;
//   - resume: the last seq and the server's epoch are kept (pluggable
//     storage) and sent as `since`/`epoch` on every reconnect; messages are
//     deduplicated by seq;
//   - an offline queue: send/publish while offline are kept and flushed, with
//     their refs, after reconnecting; sends not yet acknowledged are resent
//     too (the server acknowledges a known ref again without delivering twice);
//   - rooms are re-joined and tasks re-subscribed after a reconnect;
//   - presence: `join(room, {presence: true})` also brings the room's
//     `presence.join`/`presence.leave` events (event 'presence').
//
// Usage:
//   import { BasestationClient } from '/client/basestation.js';
//   const bs = new BasestationClient({ url: 'ws://host:8080/ws', uid, token });
//   bs.on('message', (m) => console.log(m.from, m.data));
//   bs.on('state', (s) => console.log('state', s));
//   const { seq } = await bs.send('bob', { text: 'hi' });
//   await bs.join('lobby'); await bs.publish('lobby', { text: 'hello room' });
//   const snapshot = await bs.subscribe('demo-1'); bs.on('task', (t) => ...);
//   await bs.join('lobby', { presence: true });
//   bs.on('presence', (e) => console.log(e.type, e.room, e.uid)); // presence.join / presence.leave
//
// Only listening (Server-Sent Events, GET /sse; EventSource reconnects and
// resumes by itself):
//   const ev = new BasestationEvents({ url: 'http://host:8080/sse', token, rooms: ['lobby'], tasks: ['demo-1'] });
//   ev.on('message', (m) => ...); ev.on('task', (t) => ...);
//
// In Node 20 (no global WebSocket) pass the `ws` package:
//   import WebSocket from 'ws'; new BasestationClient({ url, token, WebSocket });

/** @typedef {'closed'|'connecting'|'open'|'reconnecting'|'failed'} ClientState */

/**
 * Where the resume position is kept. Values are strings.
 * @typedef {Object} Storage
 * @property {(key: string) => (string|null|undefined)} get
 * @property {(key: string, value: string) => void} set
 */

/**
 * @typedef {Object} ClientOptions
 * @property {string} url WebSocket URL of the broker, e.g. `ws://127.0.0.1:8080/ws`
 *   (a URL whose path is `/` gets `/ws`).
 * @property {string|(() => string|Promise<string>)} [token] opaque token or JWT
 *   (a function is called before every connection attempt).
 * @property {string} [uid] sent as query `uid`; the server checks that it matches the token.
 * @property {'query'|'protocol'} [auth='query'] how the token travels: query
 *   `token=` (the seeds' way) or the `Sec-WebSocket-Protocol` header
 *   (`['basestation.v1', token]`).
 * @property {typeof WebSocket} [WebSocket] WebSocket constructor (default: the global one;
 *   pass the `ws` package in Node 20).
 * @property {boolean} [autoConnect=true] connect in the constructor.
 * @property {boolean} [reconnect=true] reconnect after a drop.
 * @property {number} [minDelay=500] first reconnect delay, ms.
 * @property {number} [maxDelay=30000] cap of the reconnect delay, ms.
 * @property {number} [factor=2] growth of the delay per failed attempt.
 * @property {number} [jitter=0.5] 0..1: the delay is reduced by up to this fraction at random.
 * @property {number} [maxRetries=Infinity] failed attempts in a row before giving up (state 'failed').
 * @property {number} [heartbeatInterval=20000] ms between client pings (0: off).
 * @property {number} [pongTimeout=10000] ms to wait for any frame after a ping before reconnecting.
 * @property {number} [connectTimeout=10000] ms from opening the socket to the server's `connect` frame.
 * @property {boolean} [resume=true] send `since`/`epoch` when a position is known.
 * @property {Storage|null} [storage] resume position store (default: localStorage in
 *   browsers, memory elsewhere).
 * @property {string} [storageKey] key prefix in `storage` (default `basestation:<uid>`).
 * @property {number} [maxQueue=10000] most requests kept while offline; more are rejected.
 */

/**
 * A message delivered to this user.
 * @typedef {Object} Message
 * @property {'message'} type
 * @property {number} seq
 * @property {string} from
 * @property {string} [to]
 * @property {string} [room]
 * @property {*} data
 * @property {number} ts
 */

/**
 * @typedef {Object} TaskStep
 * @property {string} name
 * @property {'pending'|'running'|'finish'|'failed'} status
 * @property {number} started_at
 * @property {number} finished_at
 * @property {number} duration
 */

/**
 * @typedef {Object} Task
 * @property {string} id
 * @property {string} title
 * @property {'pending'|'running'|'done'|'failed'|'canceled'} status
 * @property {string} owner
 * @property {TaskStep[]} steps
 * @property {number|null} done
 * @property {number|null} total
 * @property {string|null} note
 * @property {number} version
 * @property {number} updated_at
 */

const DEFAULTS = {
  auth: 'query',
  autoConnect: true,
  reconnect: true,
  minDelay: 500,
  maxDelay: 30000,
  factor: 2,
  jitter: 0.5,
  maxRetries: Infinity,
  heartbeatInterval: 20000,
  pongTimeout: 10000,
  connectTimeout: 10000,
  resume: true,
  maxQueue: 10000,
};

/** Error for a request the server refused (an `error` frame) or the client dropped. */
export class BasestationError extends Error {
  /**
   * @param {string} code server error code (`forbidden`, `not_found`, …) or a client one
   *   (`closed`, `queue_full`)
   * @param {string} message
   * @param {object} [frame] the server's error frame
   */
  constructor(code, message, frame) {
    super(message || code);
    this.name = 'BasestationError';
    this.code = code;
    this.frame = frame;
  }
}

/** A memory-only Storage. */
export function memoryStorage() {
  const m = new Map();
  return { get: (k) => (m.has(k) ? m.get(k) : null), set: (k, v) => { m.set(k, v); } };
}

/** localStorage (or sessionStorage) as a Storage; memory when unavailable. */
export function webStorage(which = 'localStorage') {
  try {
    const s = globalThis[which];
    const probe = '__basestation_probe__';
    s.setItem(probe, '1');
    s.removeItem(probe);
    return {
      get: (k) => { try { return s.getItem(k); } catch { return null; } },
      set: (k, v) => { try { s.setItem(k, v); } catch { /* full or denied */ } },
    };
  } catch {
    return memoryStorage();
  }
}

function randomId(n = 8) {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = new Uint8Array(n);
  if (globalThis.crypto && globalThis.crypto.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  let s = '';
  for (const b of bytes) s += abc[b % abc.length];
  return s;
}

// A short stable tag for a token, so two users in one browser keep separate positions.
function tag(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
  return (h >>> 0).toString(36);
}

const OPEN = 1;

/**
 * The client. Events (subscribe with `on(type, listener)`):
 * - `state` (state, previous): 'connecting' | 'open' | 'reconnecting' | 'closed' | 'failed'
 * - `connect` (frame): the server's first frame `{uid, conn, heartbeat, seq, epoch}`
 * - `message` (message): a message for this user or one of its rooms, each seq once
 * - `task` (task): a task snapshot (subscribe reply and every change), each version once
 * - `resumed` (frame): `{since, last, complete}` after a resume replay
 * - `error` (error): a server `error` frame without a pending request, or a transport problem
 * - `close` ({code, reason}): the socket closed (a reconnect may follow)
 * - `frame` (frame): every frame from the server, before any processing
 */
export class BasestationClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || !options.url) throw new TypeError('BasestationClient: option `url` is required');
    /** @type {Required<ClientOptions>} */
    this.options = { ...DEFAULTS, ...options };
    const o = this.options;
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== 'function') {
      throw new TypeError('BasestationClient: no WebSocket; pass option `WebSocket` (e.g. the `ws` package)');
    }
    this._storage = o.storage !== undefined ? (o.storage || memoryStorage())
      : (typeof globalThis.document !== 'undefined' ? webStorage('localStorage') : memoryStorage());
    const who = o.uid || (typeof o.token === 'string' ? 't' + tag(o.token) : 'anon');
    this._key = o.storageKey || 'basestation:' + who;
    /** @type {Map<string, Function[]>} */
    this._listeners = new Map();
    /** @type {ClientState} */
    this.state = 'closed';
    /** Highest seq delivered (null: none known yet). */
    this.lastSeq = null;
    /** The server's epoch of `lastSeq`. */
    this.epoch = null;
    /** The last `connect` frame. */
    this.session = null;
    /** Failed connection attempts in a row. */
    this.retries = 0;
    /** Messages dropped as duplicates (seq already seen). */
    this.duplicates = 0;
    /** Rooms to be a member of (re-joined after every reconnect). */
    this.rooms = new Set();
    /** The rooms of `rooms` joined with presence events. */
    this._presence = new Set();
    /** Tasks subscribed (re-subscribed after every reconnect) and their last snapshot. */
    this.tasks = new Map();
    this._prefix = 'c-' + randomId(8) + '-';
    this._n = 0;
    /** Pending requests by ref, in creation order. */
    this._pending = new Map();
    this._ws = null;
    this._timers = { retry: null, connect: null, heartbeat: null, pong: null };
    this._wanted = false;
    this._gen = 0;
    this._load();
    if (o.autoConnect) this.connect();
  }

  // ---- events ----

  /**
   * @param {string} type
   * @param {Function} fn
   * @returns {() => void} removes the listener
   */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, []);
    this._listeners.get(type).push(fn);
    return () => this.off(type, fn);
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    const l = this._listeners.get(type);
    if (!l) return;
    const i = l.indexOf(fn);
    if (i >= 0) l.splice(i, 1);
  }

  /** @param {string} type @param {Function} fn */
  once(type, fn) {
    const off = this.on(type, (...a) => { off(); fn(...a); });
    return off;
  }

  _emit(type, ...args) {
    const l = this._listeners.get(type);
    if (!l) return;
    for (const fn of [...l]) {
      try { fn(...args); } catch (e) {
        if (typeof console !== 'undefined') console.error('basestation: listener for', type, 'threw', e);
      }
    }
  }

  /**
   * Resolves the next time the state becomes `state` (at once when it is).
   * @param {ClientState} [state='open']
   * @param {number} [timeout] ms; rejects after it
   */
  waitFor(state = 'open', timeout) {
    if (this.state === state) return Promise.resolve(this.session);
    return new Promise((resolve, reject) => {
      let t = null;
      const off = this.on('state', (s) => {
        if (s !== state) return;
        off(); if (t) clearTimeout(t); resolve(this.session);
      });
      if (timeout !== undefined) {
        t = setTimeout(() => { off(); reject(new BasestationError('timeout', `state not ${state} within ${timeout} ms`)); }, timeout);
      }
    });
  }

  // ---- connection ----

  /** Start (or restart after 'failed'/'closed') connecting. */
  connect() {
    this._wanted = true;
    if (this.state === 'connecting' || this.state === 'reconnecting' || this.state === 'open') return;
    this.retries = 0;
    this._open();
  }

  /**
   * Close and stop reconnecting. Requests not yet acknowledged are rejected
   * (code 'closed').
   */
  close(code = 1000, reason = 'client close') {
    this._wanted = false;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) { try { ws.close(code, reason); } catch { /* already closing */ } }
    const err = new BasestationError('closed', 'the client was closed');
    for (const p of this._pending.values()) p.reject(err);
    this._pending.clear();
    this._setState('closed');
  }

  /** Number of requests waiting to be sent or acknowledged. */
  get queued() { return this._pending.size; }

  /** The key of the resume position in `storage` (the Vue helpers keep their state under it too). */
  get storageKey() { return this._key; }

  _setState(s) {
    if (this.state === s) return;
    const prev = this.state;
    this.state = s;
    this._emit('state', s, prev);
  }

  _clearTimers() {
    for (const k of Object.keys(this._timers)) {
      if (this._timers[k]) { clearTimeout(this._timers[k]); clearInterval(this._timers[k]); }
      this._timers[k] = null;
    }
  }

  async _url() {
    const o = this.options;
    const u = new URL(o.url, typeof location !== 'undefined' ? location.href : undefined);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
    const token = typeof o.token === 'function' ? await o.token() : o.token;
    if (token && o.auth !== 'protocol') u.searchParams.set('token', token);
    if (o.uid) u.searchParams.set('uid', o.uid);
    u.searchParams.delete('since');
    u.searchParams.delete('epoch');
    if (o.resume && this.lastSeq !== null) {
      u.searchParams.set('since', String(this.lastSeq));
      if (this.epoch) u.searchParams.set('epoch', this.epoch);
    }
    return { url: u.toString(), protocols: token && o.auth === 'protocol' ? ['basestation.v1', token] : undefined };
  }

  async _open() {
    const gen = ++this._gen;
    this._setState(this.retries === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    let target;
    try { target = await this._url(); } catch (e) {
      if (gen !== this._gen) return;
      this._emit('error', e);
      this._lost({ code: 1006, reason: 'token: ' + (e && e.message) }, false);
      return;
    }
    if (gen !== this._gen || !this._wanted) return;
    let ws;
    try {
      ws = target.protocols ? new this._WS(target.url, target.protocols) : new this._WS(target.url);
    } catch (e) {
      this._emit('error', e);
      this._lost({ code: 1006, reason: String(e && e.message) }, false);
      return;
    }
    this._ws = ws;
    this._opened = false;
    this._timers.connect = setTimeout(() => {
      if (this._ws !== ws) return;
      this._emit('error', new BasestationError('connect_timeout', `no connect frame within ${this.options.connectTimeout} ms`));
      this._drop(ws, 4000, 'connect timeout');
    }, this.options.connectTimeout);
    ws.onmessage = (ev) => { if (this._ws === ws) this._onData(ev.data); };
    ws.onerror = (ev) => {
      if (this._ws !== ws) return;
      this._emit('error', new BasestationError('transport', (ev && ev.message) || 'WebSocket error'));
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._lost({ code: ev.code, reason: ev.reason }, this._opened);
    };
  }

  // Abandon a socket that does not answer: no close handshake is waited for.
  _drop(ws, code, reason) {
    if (this._ws !== ws) return;
    const opened = this._opened;
    this._ws = null;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(code, reason);
    } catch { /* closing anyway */ }
    this._lost({ code, reason }, opened, true);
  }

  _lost(info, wasOpen, detached = false) {
    if (!detached) this._ws = null;
    this._clearTimers();
    this._emit('close', info);
    if (!this._wanted) { this._setState('closed'); return; }
    if (!this.options.reconnect) { this._wanted = false; this._setState('closed'); return; }
    if (wasOpen) this.retries = 0;
    if (this.retries >= this.options.maxRetries) {
      this._setState('failed');
      this._wanted = false;
      return;
    }
    this._setState('reconnecting');
    const delay = this.delay(this.retries);
    this.retries++;
    this._timers.retry = setTimeout(() => {
      this._timers.retry = null;
      if (this._wanted) this._open();
    }, delay);
  }

  /**
   * The delay before reconnect attempt `n` (0-based): min(maxDelay, minDelay·factor^n),
   * reduced at random by up to `jitter` of itself.
   * @param {number} n
   */
  delay(n) {
    const o = this.options;
    const base = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, n));
    return Math.max(0, Math.round(base * (1 - o.jitter * Math.random())));
  }

  _startHeartbeat() {
    const o = this.options;
    if (!(o.heartbeatInterval > 0)) return;
    const ws = this._ws;
    this._timers.heartbeat = setInterval(() => {
      if (this._ws !== ws || this._timers.pong) return;
      this._write({ type: 'ping' });
      this._timers.pong = setTimeout(() => {
        this._timers.pong = null;
        this._emit('error', new BasestationError('heartbeat_timeout', `nothing received within ${o.pongTimeout} ms of a ping`));
        this._drop(ws, 4000, 'heartbeat timeout');
      }, o.pongTimeout);
    }, o.heartbeatInterval);
  }

  _write(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try { ws.send(JSON.stringify(frame)); return true; } catch { return false; }
  }

  // ---- resume position ----

  _load() {
    try {
      const v = this._storage.get(this._key);
      if (!v) return;
      const j = JSON.parse(v);
      if (Number.isInteger(j.seq) && j.seq >= 0) this.lastSeq = j.seq;
      if (typeof j.epoch === 'string') this.epoch = j.epoch;
    } catch { /* a bad value is ignored */ }
  }

  _save() {
    // Another tab of the same user may have seen more: keep the highest.
    let seq = this.lastSeq;
    try {
      const v = this._storage.get(this._key);
      const j = v ? JSON.parse(v) : null;
      if (j && j.epoch === this.epoch && Number.isInteger(j.seq) && seq !== null && j.seq > seq) seq = j.seq;
    } catch { /* overwrite */ }
    try { this._storage.set(this._key, JSON.stringify({ seq, epoch: this.epoch })); } catch { /* ignore */ }
  }

  /** Forget the resume position (the next connection gets the offline inbox). */
  resetPosition() {
    this.lastSeq = null;
    this.epoch = null;
    try { this._storage.set(this._key, JSON.stringify({ seq: null, epoch: null })); } catch { /* ignore */ }
  }

  // ---- incoming ----

  _onData(data) {
    let f;
    try {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      f = JSON.parse(text);
    } catch (e) {
      this._emit('error', new BasestationError('bad_frame', 'a frame that is not JSON'));
      return;
    }
    if (this._timers.pong) { clearTimeout(this._timers.pong); this._timers.pong = null; }
    if (!f || typeof f !== 'object') return;
    this._emit('frame', f);
    const entry = f.ref !== undefined ? this._pending.get(String(f.ref)) : undefined;
    switch (f.type) {
      case 'connect':
        this._onConnect(f);
        return;
      case 'message':
        this._onMessage(f);
        return;
      case 'task':
        this._onTask(f.task, entry);
        return;
      case 'presence.join':
      case 'presence.leave':
        this._emit('presence', f);
        return;
      case 'resumed':
        // Complete: everything for us up to `last` has been replayed, so the
        // position moves there. Not complete (retention, another epoch, or
        // the server's replay cap): it stays at the last seq delivered, so a
        // `resume()` can go on from there.
        if (f.complete === true && Number.isInteger(f.last) && (this.lastSeq === null || f.last > this.lastSeq)) {
          this.lastSeq = f.last;
          this._save();
        }
        this._emit('resumed', f);
        if (entry) this._settle(entry, f);
        return;
      case 'error':
        if (entry) {
          this._pending.delete(entry.ref);
          if (entry.kind === 'join' && f.code !== 'internal' && f.code !== 'rate_limited') this._forgetRoom(entry.frame.room);
          if (entry.kind === 'subscribe' && f.code !== 'internal' && f.code !== 'rate_limited') this.tasks.delete(entry.frame.task);
          entry.reject(new BasestationError(f.code, f.message, f));
        } else {
          this._emit('error', new BasestationError(f.code, f.message, f));
        }
        return;
      default:
        if (entry) this._settle(entry, f);
    }
  }

  _settle(entry, value) {
    this._pending.delete(entry.ref);
    entry.resolve(value);
  }

  _onConnect(f) {
    if (f.epoch && f.epoch === this.epoch && Number.isInteger(f.seq) && this.lastSeq !== null && f.seq < this.lastSeq) {
      // Same history but it ends before our position: the database was
      // restored from an older copy. New messages will reuse seqs we have
      // seen, so start over from the server's newest seq on a new connection.
      this.lastSeq = f.seq;
      this._save();
      this._emit('error', new BasestationError('history_rewound', `the server's last seq ${f.seq} is behind ours; resuming from there`));
      this._drop(this._ws, 4000, 'history rewound');
      return;
    }
    this._opened = true;
    if (this._timers.connect) { clearTimeout(this._timers.connect); this._timers.connect = null; }
    this.retries = 0;
    const wasEpoch = this.epoch;
    if (f.epoch && wasEpoch && f.epoch !== wasEpoch) {
      // Our seq belongs to another history: the server replays all of its own.
      this.lastSeq = null;
      for (const t of this.tasks.keys()) this.tasks.set(t, null);
    }
    if (f.epoch) this.epoch = f.epoch;
    this.session = f;
    this._save();
    this._startHeartbeat();
    // Flush before announcing 'open', so that what listeners send then is not sent twice.
    this._flush();
    this._setState('open');
    this._emit('connect', f);
  }

  // After (re)connecting: rooms, then tasks, then every pending request, in order.
  _flush() {
    const byRoom = new Map(), byTask = new Map();
    for (const p of this._pending.values()) {
      if (p.kind === 'join') byRoom.set(p.frame.room, p);
      if (p.kind === 'subscribe') byTask.set(p.frame.task, p);
    }
    const sent = new Set();
    for (const room of this.rooms) {
      const p = byRoom.get(room);
      if (p) { this._write(p.frame); sent.add(p); } else this._write(this._joinFrame(room, this._ref()));
    }
    for (const task of this.tasks.keys()) {
      const p = byTask.get(task);
      if (p) { this._write(p.frame); sent.add(p); } else this._write({ type: 'subscribe', task, ref: this._ref() });
    }
    for (const p of [...this._pending.values()]) {
      if (sent.has(p)) continue;
      if (p.kind === 'resume') {
        // The new connection resumed by itself (since= in its URL).
        this._pending.delete(p.ref);
        p.reject(new BasestationError('reconnected', 'the connection was re-made and resumed from the last seq'));
        continue;
      }
      this._write(p.frame);
    }
  }

  _onMessage(m) {
    if (!Number.isInteger(m.seq)) { this._emit('message', m); return; }
    if (this.lastSeq !== null && m.seq <= this.lastSeq) { this.duplicates++; return; }
    this.lastSeq = m.seq;
    this._save();
    this._emit('message', m);
  }

  _onTask(t, entry) {
    if (!t || typeof t !== 'object') return;
    const known = this.tasks.has(t.id) ? this.tasks.get(t.id) : undefined;
    const fresh = !known || !(known.version >= t.version);
    if (this.tasks.has(t.id) && fresh) this.tasks.set(t.id, t);
    if (entry) this._settle(entry, t);
    if (fresh) this._emit('task', t);
  }

  // ---- requests ----

  _ref() { return this._prefix + (++this._n); }

  /**
   * Send any frame that the server answers with a reply carrying `ref`.
   * Kept while offline and (re)sent after every (re)connect until answered.
   * @param {object} frame
   * @param {string} [kind]
   * @returns {Promise<any>}
   */
  request(frame, kind = frame.type) {
    if (this._pending.size >= this.options.maxQueue) {
      return Promise.reject(new BasestationError('queue_full', `more than ${this.options.maxQueue} requests pending`));
    }
    const ref = frame.ref !== undefined ? String(frame.ref) : this._ref();
    const f = { ...frame, ref: frame.ref !== undefined ? frame.ref : ref };
    return new Promise((resolve, reject) => {
      const prev = this._pending.get(ref);
      if (prev) this._pending.delete(ref);
      const entry = { ref, frame: f, kind, resolve, reject };
      this._pending.set(ref, entry);
      if (prev) { // the same ref again: one answer settles both
        entry.resolve = (v) => { prev.resolve(v); resolve(v); };
        entry.reject = (e) => { prev.reject(e); reject(e); };
      }
      if (this.state === 'open') this._write(f);
    });
  }

  /**
   * A direct message to `to`. Resolves with the ack `{type:'ack', ref, seq}` once stored.
   * @param {string} to
   * @param {*} data
   * @param {{ref?: string|number}} [opts] a ref of your own (idempotency key)
   */
  send(to, data, opts = {}) {
    return this.request({ type: 'send', to, data, ...(opts.ref !== undefined ? { ref: opts.ref } : {}) });
  }

  /**
   * A message to a room this user has joined. Resolves with the ack.
   * @param {string} room
   * @param {*} data
   * @param {{ref?: string|number}} [opts]
   */
  publish(room, data, opts = {}) {
    return this.request({ type: 'publish', room, data, ...(opts.ref !== undefined ? { ref: opts.ref } : {}) });
  }

  /**
   * Join a room (kept across reconnects). Resolves with `{type:'joined', room}`.
   * With `presence: true` this connection (and every one after a reconnect)
   * also gets the room's `presence.join`/`presence.leave` events, emitted as
   * 'presence'; `presence: false` stops them; absent keeps what was asked.
   * @param {string} room
   * @param {{presence?: boolean}} [opts]
   */
  join(room, opts = {}) {
    this.rooms.add(room);
    if (opts.presence === true) this._presence.add(room);
    if (opts.presence === false) this._presence.delete(room);
    const f = { type: 'join', room };
    if (typeof opts.presence === 'boolean') f.presence = opts.presence;
    return this.request(f);
  }

  _joinFrame(room, ref) {
    return this._presence.has(room) ? { type: 'join', room, presence: true, ref } : { type: 'join', room, ref };
  }

  _forgetRoom(room) {
    this.rooms.delete(room);
    this._presence.delete(room);
  }

  /** Leave a room. Resolves with `{type:'left', room}`. @param {string} room */
  leave(room) {
    this._forgetRoom(room);
    for (const p of [...this._pending.values()]) {
      if (p.kind === 'join' && p.frame.room === room) {
        this._pending.delete(p.ref);
        p.reject(new BasestationError('canceled', 'left the room before it was joined'));
      }
    }
    return this.request({ type: 'leave', room });
  }

  /**
   * Watch a task (kept across reconnects). Resolves with the current snapshot;
   * later changes come as `task` events.
   * @param {string} task
   * @returns {Promise<Task>}
   */
  subscribe(task) {
    task = String(task);
    if (!this.tasks.has(task)) this.tasks.set(task, null);
    return this.request({ type: 'subscribe', task });
  }

  /** Stop watching a task. @param {string} task */
  unsubscribe(task) {
    task = String(task);
    this.tasks.delete(task);
    return this.request({ type: 'unsubscribe', task });
  }

  /** Who of a room is online. Resolves with `{type:'presence', room, online}`. @param {string} room */
  presence(room) { return this.request({ type: 'presence', room }); }

  /**
   * Ask for a replay of what came after the last seq delivered (or `since`),
   * e.g. after a `resumed` event with `complete: false`. Resolves with the
   * `resumed` frame.
   * @param {number} [since]
   */
  resume(since) {
    const f = { type: 'resume', since: since ?? this.lastSeq ?? 0 };
    if (this.epoch) f.epoch = this.epoch;
    return this.request(f);
  }

  /** Round trip; resolves with the pong. */
  ping() { return this.request({ type: 'ping' }); }

  /** The last snapshot of a subscribed task. @param {string} id @returns {Task|null} */
  task(id) { return this.tasks.get(String(id)) || null; }
}

/**
 * @typedef {Object} EventsOptions
 * @property {string} url the broker's SSE URL, e.g. `http://127.0.0.1:8080/sse`
 *   (a `ws:`/`wss:` URL or a path `/ws` is turned into its `http:`/`https:` `/sse`).
 * @property {string} token opaque token or JWT (query `token=`: EventSource sends no headers).
 * @property {string} [uid] query `uid`; the server checks that it matches the token.
 * @property {string[]} [rooms] rooms whose messages the stream carries (the user must be a member).
 * @property {Array<string|number>} [tasks] tasks whose snapshots the stream carries.
 * @property {number} [since] resume after this seq (else: the offline inbox).
 * @property {typeof EventSource} [EventSource] EventSource constructor (default: the global one).
 * @property {boolean} [withCredentials=false] passed to EventSource.
 * @property {boolean} [autoConnect=true] connect in the constructor.
 */

/**
 * A read-only stream over Server-Sent Events (`GET /sse`): the same
 * `message` and `task` events as BasestationClient, each seq once and each
 * task version once. The browser's EventSource reconnects by itself and
 * resumes with Last-Event-ID; when it gives up (a refusal), state 'closed'
 * and an `error` event; connect() starts again from the last seq seen.
 */
export class BasestationEvents {
  /** @param {EventsOptions} options */
  constructor(options) {
    if (!options || !options.url) throw new TypeError('BasestationEvents: option `url` is required');
    this.options = { autoConnect: true, withCredentials: false, ...options };
    this._ES = this.options.EventSource || globalThis.EventSource;
    if (typeof this._ES !== 'function') {
      throw new TypeError('BasestationEvents: no EventSource; pass option `EventSource`');
    }
    /** @type {Map<string, Function[]>} */
    this._listeners = new Map();
    /** @type {'closed'|'connecting'|'open'} */
    this.state = 'closed';
    /** Highest seq delivered (null: none yet). */
    this.lastSeq = Number.isInteger(this.options.since) ? this.options.since : null;
    /** Messages dropped as duplicates (seq already seen). */
    this.duplicates = 0;
    /** The last snapshot of each listed task. */
    this.tasks = new Map();
    this._es = null;
    if (this.options.autoConnect) this.connect();
  }

  /** The stream's URL: the listed rooms and tasks, and the position. */
  url() {
    const o = this.options;
    const base = typeof location !== 'undefined' ? location.href : 'http://localhost/';
    const u = new URL(o.url, base);
    if (u.protocol === 'ws:') u.protocol = 'http:';
    if (u.protocol === 'wss:') u.protocol = 'https:';
    if (u.pathname === '/ws' || u.pathname === '/') u.pathname = '/sse';
    u.searchParams.set('token', o.token);
    if (o.uid) u.searchParams.set('uid', o.uid);
    for (const r of o.rooms || []) u.searchParams.append('room', r);
    for (const t of o.tasks || []) u.searchParams.append('task', String(t));
    if (this.lastSeq !== null) u.searchParams.set('since', String(this.lastSeq));
    return u.toString();
  }

  /** Open the stream (no-op while one is open). */
  connect() {
    if (this._es) return;
    const es = new this._ES(this.url(), { withCredentials: !!this.options.withCredentials });
    this._es = es;
    this._setState('connecting');
    es.onopen = () => { if (this._es === es) this._setState('open'); };
    es.onerror = () => {
      if (this._es !== es) return;
      if (es.readyState === 2) { // CLOSED: EventSource gave up (a refusal)
        this._es = null;
        this._setState('closed');
        this._emit('error', new Error('BasestationEvents: the stream was refused or failed'));
      } else {
        this._setState('connecting'); // reconnecting by itself, with Last-Event-ID
      }
    };
    es.addEventListener('message', (e) => this._onMessage(JSON.parse(e.data)));
    es.addEventListener('task', (e) => this._onTask(JSON.parse(e.data)));
  }

  /** Close the stream. */
  close() {
    if (this._es) this._es.close();
    this._es = null;
    this._setState('closed');
  }

  _setState(s) {
    if (s === this.state) return;
    const prev = this.state;
    this.state = s;
    this._emit('state', s, prev);
  }

  _onMessage(m) {
    if (this.lastSeq !== null && m.seq <= this.lastSeq) { this.duplicates++; return; }
    this.lastSeq = m.seq;
    this._emit('message', m);
  }

  _onTask(t) {
    const known = this.tasks.get(t.id);
    if (known && known.version >= t.version) return;
    this.tasks.set(t.id, t);
    this._emit('task', t);
  }
}
// The same listener methods as the WebSocket client.
for (const k of ['on', 'off', 'once', '_emit']) {
  Object.defineProperty(BasestationEvents.prototype, k, {
    value: BasestationClient.prototype[k], writable: true, configurable: true,
  });
}

export default BasestationClient;
