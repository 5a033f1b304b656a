// vue.js — Vue 3 composables over the basestation client (Vue is a peer
// dependency; this file imports 'vue', so it needs a bundler or an import map).
//
//   // App.vue, once: makes the app's client
//   const { state } = useBasestation({ url: 'ws://127.0.0.1:8080/ws', uid, token });
//   // any component of the app
//   const { task, steps, elapsed } = useTask(() => route.params.id);
//   const { messages, send } = useRoom('lobby');
//   const { online } = usePresence('lobby');
//
// One client per app: the first useBasestation(options) in a component makes
// it (or install createBasestation(options) with app.use); later calls
// without options get it. What several components share lives in one store
// per client, fed by a fixed set of listeners on the client, so mounting and
// unmounting components adds no listener. What a component holds it gives
// back when its scope ends (unmount, or deactivation under <KeepAlive>) and
// takes again when it comes back (a remount runs setup again):
//   - useTask subscribes the task for as long as a component shows it and
//     unsubscribes when the last one goes; coming back subscribes again, so
//     the server sends the current snapshot at once;
//   - usePresence asks for the room's presence while a component shows it;
//   - useRoom does not leave the room on unmount (membership is durable and
//     leaving would end the offline inbox): the room's last messages are kept
//     in the app's store (and in sessionStorage in browsers, so a reload
//     shows them too), and a component that comes back sees what arrived
//     while it was away.
import {
  computed, getCurrentInstance, getCurrentScope, onActivated, onDeactivated, onScopeDispose,
  ref, shallowRef, toValue, watch,
} from 'vue';
import { BasestationClient, BasestationError, memoryStorage, webStorage } from './basestation.js';

export { BasestationClient, BasestationError };

const STORE_DEFAULTS = { keep: 200 };

// ---- the app's client ----

const byApp = new WeakMap(); // Vue app -> client
let loose = null; // the client of code that runs outside any component

/**
 * A plugin that gives the app its client: `app.use(createBasestation(options))`.
 * @param {object|BasestationClient} options client options, or a client
 * @param {{keep?: number, history?: object|null}} [settings]
 */
export function createBasestation(options, settings) {
  const own = !(options instanceof BasestationClient);
  const client = own ? new BasestationClient(options) : options;
  storeOf(client, settings);
  return {
    client,
    install(app) {
      byApp.set(app, client);
      if (own && typeof app.onUnmount === 'function') app.onUnmount(() => client.close());
    },
  };
}

/**
 * The app's client and its connection state as refs. The first call in an
 * app needs `options` (or a client); later calls may leave them out.
 * @param {object|BasestationClient} [options]
 * @param {{keep?: number, history?: object|null}} [settings] the app store's:
 *   `keep` messages per room (200), `history` where rooms' messages are kept
 *   across reloads (sessionStorage in browsers; null: nowhere)
 */
export function useBasestation(options, settings) {
  const inst = getCurrentInstance();
  const app = inst ? inst.appContext.app : null;
  let client = (app && byApp.get(app)) || loose;
  if (!client || (options instanceof BasestationClient && options !== client)) {
    if (!options) {
      throw new Error('useBasestation: no client yet: call useBasestation(options) once (e.g. in App.vue) or app.use(createBasestation(options))');
    }
    const own = !(options instanceof BasestationClient);
    client = own ? new BasestationClient(options) : options;
    if (app) {
      byApp.set(app, client);
      if (own && typeof app.onUnmount === 'function') app.onUnmount(() => client.close());
    } else {
      loose = client;
    }
  }
  const s = storeOf(client, settings);
  return {
    client,
    state: computed(() => s.state.value),
    connected: computed(() => s.state.value === 'open'),
    session: computed(() => s.session.value),
    error: computed(() => s.error.value),
    queued: computed(() => s.queued.value),
  };
}

function clientOf(opts) {
  if (opts && opts.client) return opts.client;
  return useBasestation().client;
}

// ---- the store: one per client ----

const stores = new WeakMap(); // client -> store

function defaultHistory() {
  return typeof document !== 'undefined' ? webStorage('sessionStorage') : null;
}

function storeOf(client, settings) {
  let s = stores.get(client);
  if (s) return s;
  s = {
    client,
    keep: (settings && settings.keep) || STORE_DEFAULTS.keep,
    history: settings && settings.history !== undefined ? settings.history : defaultHistory(),
    state: shallowRef(client.state),
    session: shallowRef(client.session),
    error: shallowRef(null),
    queued: ref(client.queued),
    tasks: new Map(),
    rooms: new Map(),
    presence: new Map(),
    refPrefix: 'v-' + Math.random().toString(36).slice(2, 10) + '-',
    refN: 0,
  };
  client.on('state', (st) => {
    s.state.value = st;
    s.queued.value = client.queued;
    for (const r of s.rooms.values()) roomStateChanged(s, r);
    if (st === 'open') for (const p of s.presence.values()) if (p.users > 0) presenceRefresh(s, p);
  });
  client.on('connect', (f) => { s.session.value = f; });
  client.on('error', (e) => { s.error.value = e; });
  client.on('task', (t) => {
    const e = s.tasks.get(t.id);
    if (e) taskSet(e, t);
  });
  client.on('message', (m) => {
    if (typeof m.room === 'string') roomIncoming(s, roomOf(s, m.room), m);
  });
  client.on('frame', (f) => {
    if (f.type === 'presence.join' || f.type === 'presence.leave') presenceEvent(s, f);
  });
  stores.set(client, s);
  return s;
}

// Hold the entry for the current key (a value, ref or getter) while the
// calling scope is active: acquire(key) when it is set or changes,
// release(entry) when it changes, on deactivation and when the scope ends.
function hold(key, acquire, release) {
  const current = shallowRef(null);
  let held, active = true;
  const set = (k) => {
    k = k === null || k === undefined || k === '' ? null : String(k);
    if (current.value && held === k) return;
    if (current.value) { release(current.value); current.value = null; }
    held = k;
    if (active && k !== null) current.value = acquire(k);
  };
  const stopWatch = watch(() => toValue(key), set, { immediate: true });
  const pause = () => {
    if (!active) return;
    active = false;
    if (current.value) { release(current.value); current.value = null; }
  };
  const resume = () => {
    if (active) return;
    active = true;
    const k = held;
    held = undefined;
    set(k);
  };
  const stop = () => { stopWatch(); pause(); };
  if (getCurrentInstance()) { onDeactivated(pause); onActivated(resume); }
  if (getCurrentScope()) onScopeDispose(stop);
  return { current, stop };
}

// ---- tasks ----

function taskOf(s, id) {
  let e = s.tasks.get(id);
  if (!e) {
    e = {
      id, users: 0, gen: 0, retryTimer: null, subscribed: false, at: 0, retry: 2000,
      snap: shallowRef(null), error: shallowRef(null), loading: ref(true), fresh: ref(false),
    };
    s.tasks.set(id, e);
  }
  return e;
}

function taskSet(e, t) {
  e.at = Date.now();
  e.snap.value = t;
  e.error.value = null;
  e.loading.value = false;
  if (e.users > 0) e.fresh.value = true;
}

function taskSubscribe(s, e) {
  const gen = ++e.gen;
  e.loading.value = true;
  e.fresh.value = false;
  e.subscribed = true;
  s.client.subscribe(e.id).then((t) => {
    if (gen === e.gen && e.users > 0) taskSet(e, t);
  }, (err) => {
    if (gen !== e.gen) return;
    e.subscribed = false;
    e.loading.value = false;
    e.error.value = err;
    // Not there yet, or the server is busy: ask again while someone shows it.
    const again = ['not_found', 'rate_limited', 'unavailable', 'internal'].includes(err && err.code);
    if (again && e.users > 0 && e.retry > 0) {
      e.retryTimer = setTimeout(() => {
        e.retryTimer = null;
        if (e.users > 0 && gen === e.gen) taskSubscribe(s, e);
      }, e.retry);
    }
  });
}

// Snapshots kept for tasks no component shows (for an instant remount).
const KEEP_UNUSED_TASKS = 100;

function taskRelease(s, e) {
  if (--e.users > 0) return;
  e.gen++;
  clearTimeout(e.retryTimer);
  e.retryTimer = null;
  e.fresh.value = false;
  if (e.subscribed) {
    e.subscribed = false;
    s.client.unsubscribe(e.id).catch(() => { /* closed, or already gone */ });
  }
  // Forget the least recently released beyond the limit.
  s.tasks.delete(e.id);
  s.tasks.set(e.id, e);
  let unused = 0;
  for (const x of s.tasks.values()) if (x.users === 0) unused++;
  for (const [id, x] of s.tasks) {
    if (unused <= KEEP_UNUSED_TASKS) break;
    if (x.users === 0) { s.tasks.delete(id); unused--; }
  }
}

const FINAL = new Set(['done', 'failed', 'canceled']);

// ms a step has taken at local time `now`: the running step counts on from
// the duration in the snapshot (the server's "so far" when it was made), so
// the client's clock need not agree with the server's.
function stepElapsed(t, step, at, now) {
  if (step.status === 'running' && !FINAL.has(t.status)) {
    const base = step.duration !== null && step.duration !== undefined ? step.duration
      : step.started_at ? Math.max(0, at - step.started_at) : 0;
    return base + Math.max(0, now - at);
  }
  return step.duration || 0;
}

/**
 * A task's snapshot, kept current: subscribed while shown, unsubscribed on
 * unmount. `id` may be a ref or a getter (switching tasks).
 * @param {*} id
 * @param {{client?: BasestationClient, tick?: number, retry?: number}} [opts]
 *   `tick`: ms between updates of `elapsed` (1000, as seed 000 counts);
 *   `retry`: ms before asking again for a task that does not exist (yet) (2000; 0: never)
 */
export function useTask(id, opts = {}) {
  const client = clientOf(opts);
  const s = storeOf(client);
  const tick = opts.tick > 0 ? opts.tick : 1000;
  const now = ref(Date.now());
  const h = hold(id, (k) => {
    const e = taskOf(s, k);
    if (opts.retry !== undefined) e.retry = opts.retry;
    if (++e.users === 1) taskSubscribe(s, e);
    return e;
  }, (e) => taskRelease(s, e));

  const task = computed(() => (h.current.value ? h.current.value.snap.value : null));
  const steps = computed(() => {
    const e = h.current.value, t = task.value;
    if (!e || !t) return [];
    const n = now.value;
    return t.steps.map((st, index) => ({ ...st, index, elapsed: stepElapsed(t, st, e.at, n) }));
  });
  const running = computed(() => steps.value.find((st) => st.status === 'running') || null);
  const counting = computed(() => !!(running.value && task.value && !FINAL.has(task.value.status)));
  const elapsed = computed(() => (running.value ? running.value.elapsed : 0));

  let timer = null;
  const stopTimer = () => { if (timer) { clearInterval(timer); timer = null; } };
  const stopTick = watch(counting, (on) => {
    now.value = Date.now();
    if (on && !timer) timer = setInterval(() => { now.value = Date.now(); }, tick);
    if (!on) stopTimer();
  }, { immediate: true });
  // A new snapshot restarts the count from its duration.
  const stopSnap = watch(task, () => { now.value = Date.now(); });
  if (getCurrentScope()) onScopeDispose(stopTimer);

  return {
    task,
    steps,
    running,
    elapsed,
    loading: computed(() => (h.current.value ? h.current.value.loading.value : false)),
    fresh: computed(() => (h.current.value ? h.current.value.fresh.value : false)),
    error: computed(() => (h.current.value ? h.current.value.error.value : null)),
    stop() { stopTick(); stopSnap(); stopTimer(); h.stop(); },
  };
}

// ---- rooms ----

function roomOf(s, room) {
  let r = s.rooms.get(room);
  if (r) return r;
  r = {
    room,
    users: 0,
    list: ref([]),
    seqs: new Set(),
    pending: new Set(),
    joined: ref(false),
    error: shallowRef(null),
    joinAsked: false,
    saveTimer: null,
    key: s.client.storageKey + ':room:' + room,
  };
  s.rooms.set(room, r);
  roomLoad(s, r);
  return r;
}

function roomLoad(s, r) {
  if (!s.history) return;
  let saved = null;
  try { saved = JSON.parse(s.history.get(r.key) || 'null'); } catch { /* ignore a bad value */ }
  if (!Array.isArray(saved)) return;
  for (const m of saved) {
    if (!m || typeof m !== 'object') continue;
    if (Number.isInteger(m.seq)) r.seqs.add(m.seq);
    r.list.value.push(m);
  }
  // Messages still on their way when the page was left: send them again
  // with the same ref (the broker stores each ref once).
  for (const item of r.list.value) {
    if (item.mine && (item.status === 'sending' || item.status === 'queued')) roomPublish(s, r, item).catch(() => {});
  }
}

function roomSave(s, r) {
  if (!s.history || r.saveTimer) return;
  r.saveTimer = setTimeout(() => {
    r.saveTimer = null;
    try { s.history.set(r.key, JSON.stringify(r.list.value)); } catch { /* full or denied */ }
  }, 100);
}

function roomPush(s, r, item) {
  const list = r.list.value;
  list.push(item);
  while (list.length > s.keep) {
    const old = list.shift();
    if (Number.isInteger(old.seq)) r.seqs.delete(old.seq);
  }
  roomSave(s, r);
  return list[list.length - 1];
}

function roomIncoming(s, r, m) {
  if (!Number.isInteger(m.seq) || r.seqs.has(m.seq)) return;
  r.seqs.add(m.seq);
  const me = s.session.value && s.session.value.uid;
  const mine = m.from === me;
  roomPush(s, r, { seq: m.seq, room: r.room, from: m.from, data: m.data, ts: m.ts, mine, status: mine ? 'sent' : 'received', ref: null, error: null });
}

function roomJoin(s, r) {
  if (r.joinAsked) return;
  r.joinAsked = true;
  r.error.value = null;
  s.client.join(r.room).then(() => { r.joined.value = true; }, (e) => {
    r.joinAsked = false;
    r.error.value = e;
  });
}

function roomStateChanged(s, r) {
  const st = s.state.value === 'open' ? 'sending' : 'queued';
  for (const item of r.pending) item.status = st;
}

function roomPublish(s, r, item) {
  if (!s.client.rooms.has(r.room)) roomJoin(s, r);
  item.status = s.state.value === 'open' ? 'sending' : 'queued';
  item.error = null;
  r.pending.add(item);
  s.queued.value = s.client.queued + 1;
  const p = s.client.publish(r.room, item.data, { ref: item.ref });
  s.queued.value = s.client.queued;
  return p.then((ack) => {
    r.pending.delete(item);
    s.queued.value = s.client.queued;
    if (r.seqs.has(ack.seq)) {
      // The message came back before its ack (a resume after a lost ack): keep one.
      const list = r.list.value;
      const i = list.findIndex((m) => m !== item && m.seq === ack.seq);
      if (i >= 0) list.splice(i, 1);
    }
    r.seqs.add(ack.seq);
    item.seq = ack.seq;
    item.status = 'sent';
    roomSave(s, r);
    return ack;
  }, (e) => {
    r.pending.delete(item);
    s.queued.value = s.client.queued;
    item.status = 'failed';
    item.error = (e && (e.code || e.message)) || 'failed';
    roomSave(s, r);
    throw e;
  });
}

function roomSend(s, r, data, opts = {}) {
  const ref = opts.ref !== undefined ? opts.ref : s.refPrefix + (++s.refN) + '-' + Date.now().toString(36);
  const me = (s.session.value && s.session.value.uid) || s.client.options.uid || null;
  const item = roomPush(s, r, {
    seq: null, room: r.room, from: me, data, ts: Date.now(), mine: true, status: 'queued', ref, error: null,
  });
  return roomPublish(s, r, item);
}

/**
 * A room: its messages (incoming and this user's, with their ack state) and
 * `send`. Joins the room on first use; never leaves it by itself.
 * @param {*} room a name, ref or getter
 * @param {{client?: BasestationClient, join?: boolean}} [opts]
 */
export function useRoom(room, opts = {}) {
  const client = clientOf(opts);
  const s = storeOf(client);
  const h = hold(room, (k) => {
    const r = roomOf(s, k);
    r.users++;
    if (opts.join !== false) roomJoin(s, r);
    else if (client.rooms.has(k)) r.joined.value = true;
    return r;
  }, (r) => { r.users--; });
  const need = () => {
    if (!h.current.value) throw new BasestationError('closed', 'useRoom: no room');
    return h.current.value;
  };
  return {
    messages: computed(() => (h.current.value ? h.current.value.list.value : [])),
    joined: computed(() => (h.current.value ? h.current.value.joined.value : false)),
    error: computed(() => (h.current.value ? h.current.value.error.value : null)),
    /** Publish; the message shows at once with status queued/sending, then sent (with its seq) or failed. */
    send(data, o) {
      try { return roomSend(s, need(), data, o); } catch (e) { return Promise.reject(e); }
    },
    /** Send a failed message again (same ref). */
    retry(item) {
      try { return roomPublish(s, need(), item); } catch (e) { return Promise.reject(e); }
    },
    /** Forget the messages kept for this room (here and in the history storage). */
    clear() {
      const r = h.current.value;
      if (!r) return;
      r.list.value.splice(0);
      r.seqs.clear();
      roomSave(s, r);
    },
    stop: h.stop,
  };
}

// ---- presence ----

function presenceOf(s, room) {
  let p = s.presence.get(room);
  if (!p) {
    p = { room, users: 0, online: ref([]), error: shallowRef(null), loading: ref(true), timer: null, busy: false, interval: 10000 };
    s.presence.set(room, p);
  }
  return p;
}

function presenceRefresh(s, p) {
  if (p.busy || s.client.state !== 'open') return;
  p.busy = true;
  s.client.presence(p.room).then((f) => {
    p.online.value = Array.isArray(f.online) ? [...f.online].sort() : [];
    p.error.value = null;
  }, (e) => { p.error.value = e; }).finally(() => {
    p.busy = false;
    p.loading.value = false;
  });
}

function presenceEvent(s, f) {
  const p = s.presence.get(f.room);
  if (!p) return;
  const set = new Set(p.online.value);
  if (f.type === 'presence.join') set.add(f.uid); else set.delete(f.uid);
  p.online.value = [...set].sort();
}

/**
 * Who of a room is online: asked when shown, after every reconnect and every
 * `interval` ms while shown; stops on unmount.
 * @param {*} room a name, ref or getter
 * @param {{client?: BasestationClient, interval?: number}} [opts]
 */
export function usePresence(room, opts = {}) {
  const client = clientOf(opts);
  const s = storeOf(client);
  const h = hold(room, (k) => {
    const p = presenceOf(s, k);
    if (opts.interval > 0) p.interval = opts.interval;
    if (++p.users === 1) {
      p.timer = setInterval(() => presenceRefresh(s, p), p.interval);
      presenceRefresh(s, p);
    }
    return p;
  }, (p) => {
    if (--p.users === 0) { clearInterval(p.timer); p.timer = null; }
  });
  return {
    online: computed(() => (h.current.value ? h.current.value.online.value : [])),
    loading: computed(() => (h.current.value ? h.current.value.loading.value : false)),
    error: computed(() => (h.current.value ? h.current.value.error.value : null)),
    refresh() { if (h.current.value) presenceRefresh(s, h.current.value); },
    stop: h.stop,
  };
}

// For tests and tools: how many components hold what, per client.
export function storeStats(client) {
  const s = stores.get(client);
  if (!s) return null;
  const count = (m) => Object.fromEntries([...m].filter(([, e]) => e.users > 0).map(([k, e]) => [k, e.users]));
  return { tasks: count(s.tasks), rooms: count(s.rooms), presence: count(s.presence) };
}

export { memoryStorage, webStorage };
