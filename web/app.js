// The demo page: chat (direct messages and a room) and a progress timeline
// drawn like the seed tutorial's (each step: name, 执行中/完成, duration,
// counting live while it runs), over the basestation client library.
import { BasestationClient } from '/client/basestation.js';

const $ = (id) => document.getElementById(id);
const KEY = 'basestation.demo.';
const session = {
  get(k, dflt) {
    try { const v = sessionStorage.getItem(KEY + k); return v === null ? dflt : JSON.parse(v); } catch { return dflt; }
  },
  set(k, v) { try { sessionStorage.setItem(KEY + k, JSON.stringify(v)); } catch { /* full or denied */ } },
  del(k) { try { sessionStorage.removeItem(KEY + k); } catch { /* ignore */ } },
};

// ---- sign in: ?uid=&token=&ws= (the demo's links), else the form ----

function credentials() {
  const q = new URLSearchParams(location.search);
  if (q.get('token')) {
    const c = { uid: q.get('uid') || q.get('id') || '', token: q.get('token'), ws: q.get('ws') || '' };
    session.set('creds', c);
    return c;
  }
  return session.get('creds', null);
}

function wsUrl(port) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  return `${scheme}://${host}:${port || 8080}/ws`;
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams({ uid: $('signin-uid').value.trim(), token: $('signin-token').value.trim() });
  const ws = $('signin-ws').value.trim();
  if (ws) q.set('ws', ws);
  location.search = '?' + q;
});

$('signout').addEventListener('click', () => {
  session.del('creds');
  if (client) client.close();
  location.href = '/';
});

const creds = credentials();
let client = null;

// ---- connection indicator ----

const STATE_TEXT = {
  connecting: 'connecting…', open: 'online', reconnecting: 'reconnecting…', closed: 'offline', failed: 'failed — reload to retry',
};

function setState(s) {
  $('state').dataset.state = s;
  const q = client ? client.queued : 0;
  $('state-text').textContent = STATE_TEXT[s] + (q && s !== 'open' ? ` · ${q} queued` : '');
}

let errorTimer = null;
function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { $('error').hidden = true; }, 6000);
}

// ---- chat ----

const chatKey = () => 'chat.' + creds.uid;
let chat = [];

function saveChat() { session.set(chatKey(), chat.slice(-200)); }

function text(data) {
  if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
  return JSON.stringify(data);
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function renderMessage(m) {
  const li = document.createElement('li');
  li.className = 'msg ' + m.dir;
  if (m.seq) li.dataset.seq = m.seq;
  li.dataset.from = m.from;
  const head = document.createElement('div');
  head.className = 'msg-head';
  const who = document.createElement('span');
  who.className = 'msg-who';
  const where = m.room ? `#${m.room}` : m.to;
  who.textContent = m.dir === 'out' ? `you → ${where}` : (m.room ? `${m.from} in #${m.room}` : m.from);
  const meta = document.createElement('span');
  meta.className = 'msg-meta';
  const status = m.dir === 'out' ? ({ sending: 'sending…', queued: 'queued', sent: '✓', failed: '✗ ' + (m.error || '') })[m.status] : '';
  meta.textContent = [fmtTime(m.ts), m.seq ? '#' + m.seq : '', status].filter(Boolean).join(' · ');
  head.append(who, meta);
  const body = document.createElement('div');
  body.className = 'msg-text';
  body.textContent = text(m.data);
  li.append(head, body);
  return li;
}

function renderChat() {
  const ol = $('messages');
  ol.replaceChildren(...chat.map(renderMessage));
  $('messages-empty').hidden = chat.length > 0;
  ol.scrollTop = ol.scrollHeight;
}

function addIncoming(m) {
  if (chat.some((x) => x.dir === 'in' && x.seq === m.seq)) return;
  chat.push({ dir: 'in', seq: m.seq, from: m.from, to: m.to, room: m.room, data: m.data, ts: m.ts });
  saveChat();
  renderChat();
}

function sendOut(item) {
  const p = item.room ? client.publish(item.room, item.data, { ref: item.ref })
    : client.send(item.to, item.data, { ref: item.ref });
  p.then((ack) => {
    item.status = 'sent';
    item.seq = ack.seq;
  }, (e) => {
    item.status = 'failed';
    item.error = e.code || e.message;
    if (e.code !== 'closed') showError(`not sent: ${e.message || e.code}`);
  }).finally(() => { saveChat(); renderChat(); setState(client.state); });
}

let refN = 0;
function newRef() {
  return `p-${creds.uid.slice(0, 16)}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${++refN}`.slice(0, 64);
}

function outgoing(fields) {
  const item = { dir: 'out', from: creds.uid, ts: Date.now(), ref: newRef(), status: client.state === 'open' ? 'sending' : 'queued', ...fields };
  chat.push(item);
  saveChat();
  renderChat();
  sendOut(item);
  setState(client.state);
}

$('dm-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const to = $('dm-to').value.trim(), t = $('dm-text').value;
  if (!to || !t) return;
  outgoing({ to, data: { text: t } });
  $('dm-text').value = '';
  $('dm-text').focus();
});

let rooms = [];
function renderRooms() {
  $('rooms').replaceChildren(...rooms.map((r) => {
    const s = document.createElement('span');
    s.className = 'chip';
    s.dataset.room = r;
    s.textContent = '#' + r;
    return s;
  }));
}

// Who is online in each joined room: the presence query when the room is
// joined and after every reconnect (events missed while offline), then live
// from its presence.join / presence.leave events.
const online = new Map(); // room -> Set of uids
function renderOnline() {
  $('online').replaceChildren(...rooms.filter((r) => online.has(r)).map((r) => {
    const d = document.createElement('div');
    d.className = 'online-room';
    d.dataset.room = r;
    const h = document.createElement('span');
    h.className = 'online-head';
    h.textContent = `online in #${r}:`;
    d.append(h, ...[...online.get(r)].sort().map((u) => {
      const s = document.createElement('span');
      s.className = 'uid' + (u === creds.uid ? ' me' : '');
      s.dataset.uid = u;
      s.textContent = u === creds.uid ? `${u} (you)` : u;
      return s;
    }));
    return d;
  }));
}

async function refreshOnline(room) {
  try {
    const p = await client.presence(room);
    online.set(room, new Set(p.online));
    renderOnline();
  } catch { /* asked again after the next reconnect */ }
}

function presenceEvent(e) {
  const set = online.get(e.room);
  if (!set) return;
  if (e.type === 'presence.join') set.add(e.uid); else set.delete(e.uid);
  renderOnline();
}

async function join(room) {
  try {
    await client.join(room, { presence: true });
    if (!rooms.includes(room)) rooms.push(room);
    session.set('rooms.' + creds.uid, rooms);
    renderRooms();
    refreshOnline(room);
  } catch (e) {
    showError(`join ${room}: ${e.message || e.code}`);
  }
}

$('room-join').addEventListener('click', () => {
  const room = $('room-name').value.trim();
  if (room) join(room);
});

$('room-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const room = $('room-name').value.trim(), t = $('room-text').value;
  if (!room || !t) return;
  if (!rooms.includes(room)) await join(room);
  outgoing({ room, data: { text: t } });
  $('room-text').value = '';
});

// ---- progress ----

const snaps = new Map(); // task id -> snapshot (every one the client reported)
let watched = []; // ids shown in the list
let selected = null;
const taskErrors = new Map();

const STEP_LABEL = { finish: '完成', running: '执行中', pending: '等待', failed: '失败' };
const STEP_EN = { finish: 'finished', running: 'running', pending: 'pending', failed: 'failed' };

// Seconds with two decimals, as the seed page shows them.
const seconds = (ms) => (Math.max(0, ms) / 1000).toFixed(2) + '秒';

function stepDuration(s) {
  if (s.status === 'running' && s.started_at) return Math.max(s.duration || 0, Date.now() - s.started_at);
  return s.duration || 0;
}

function saveWatched() {
  session.set('watched.' + creds.uid, watched);
  session.set('selected.' + creds.uid, selected);
}

function renderTasks() {
  $('tasks').replaceChildren(...watched.map((id) => {
    const t = snaps.get(id);
    const li = document.createElement('li');
    li.dataset.task = id;
    li.tabIndex = 0;
    li.className = 'task-item' + (id === selected ? ' selected' : '');
    const title = document.createElement('div');
    title.className = 'task-item-title';
    title.textContent = t ? t.title : id;
    const meta = document.createElement('div');
    meta.className = 'task-item-meta';
    if (t) {
      const fin = t.steps.filter((s) => s.status === 'finish').length;
      meta.textContent = `${id} · ${t.status} · ${fin}/${t.steps.length}`;
      li.dataset.status = t.status;
    } else {
      meta.textContent = taskErrors.get(id) || `${id} · loading…`;
    }
    const x = document.createElement('button');
    x.type = 'button';
    x.className = 'link unwatch';
    x.title = 'stop watching';
    x.textContent = '×';
    x.addEventListener('click', (ev) => { ev.stopPropagation(); unwatch(id); });
    li.append(title, meta, x);
    li.addEventListener('click', () => select(id));
    li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') select(id); });
    return li;
  }));
}

function renderTimeline() {
  const t = selected ? snaps.get(selected) : null;
  $('timeline-empty').hidden = !!t;
  $('task-title').textContent = t ? t.title : (selected || '—');
  $('task-status').textContent = t ? t.status : '';
  $('task-status').dataset.status = t ? t.status : '';
  $('task-note').textContent = t && t.note ? t.note : '';
  const meter = $('task-meter');
  if (t && Number.isInteger(t.total) && t.total > 0) {
    meter.hidden = false;
    const done = Math.min(t.done || 0, t.total);
    $('task-meter-fill').style.width = `${(100 * done) / t.total}%`;
    $('task-meter-text').textContent = `${done} / ${t.total}`;
  } else {
    meter.hidden = true;
  }
  const ol = $('timeline');
  ol.dataset.task = t ? t.id : '';
  ol.dataset.version = t ? t.version : '';
  ol.replaceChildren(...(t ? t.steps : []).map((s, i) => {
    const li = document.createElement('li');
    li.className = 'step';
    li.dataset.status = s.status;
    li.dataset.index = i;
    const dot = document.createElement('span');
    dot.className = 'step-dot';
    const main = document.createElement('div');
    main.className = 'step-main';
    const name = document.createElement('span');
    name.className = 'step-name';
    name.textContent = s.name;
    const label = document.createElement('span');
    label.className = 'step-label';
    label.textContent = `：${STEP_LABEL[s.status] || s.status} ${STEP_EN[s.status] || ''}`.trimEnd();
    main.append(name, label);
    const dur = document.createElement('time');
    dur.className = 'step-duration';
    dur.textContent = s.started_at || s.duration ? seconds(stepDuration(s)) : '';
    li.append(dot, main, dur);
    return li;
  }));
}

// The running step's duration counts up between pushes.
setInterval(() => {
  const t = selected ? snaps.get(selected) : null;
  if (!t) return;
  for (const li of $('timeline').querySelectorAll('.step[data-status="running"]')) {
    const s = t.steps[Number(li.dataset.index)];
    if (s) li.querySelector('.step-duration').textContent = seconds(stepDuration(s));
  }
}, 100);

function select(id) {
  selected = id;
  saveWatched();
  renderTasks();
  renderTimeline();
}

async function watch(id, { select: sel = true } = {}) {
  id = String(id);
  if (!watched.includes(id)) watched.push(id);
  taskErrors.delete(id);
  if (sel) selected = id;
  saveWatched();
  renderTasks();
  renderTimeline();
  try {
    const snap = await client.subscribe(id);
    snaps.set(id, snap);
  } catch (e) {
    taskErrors.set(id, `${id} · ${e.code === 'not_found' ? 'no such task' : e.code || e.message}`);
    setTimeout(() => { if (taskErrors.has(id) && !snaps.has(id)) unwatch(id); }, 5000);
  }
  renderTasks();
  renderTimeline();
}

function unwatch(id) {
  watched = watched.filter((x) => x !== id);
  if (client.tasks.has(id)) client.unsubscribe(id).catch(() => {});
  if (selected === id) selected = watched[watched.length - 1] || null;
  saveWatched();
  renderTasks();
  renderTimeline();
}

$('task-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('task-id').value.trim();
  if (id) watch(id);
  $('task-id').value = '';
});

// Follow the demo's jobs (demo-1, demo-2, …): find the newest by probing
// (subscribe answers not_found for ids that do not exist), then look for the
// next one every few seconds.
let newestDemo = 0;
let probing = false;

async function exists(id) {
  try {
    await client.subscribe(id);
    return true;
  } catch (e) {
    if (e.code === 'not_found' || e.code === 'forbidden') return false;
    throw e;
  }
}

async function probeDemo() {
  if (probing || !$('follow-demo').checked || !client || client.state !== 'open') return;
  probing = true;
  const probed = [];
  try {
    let lo = newestDemo, hi;
    if (lo === 0) {
      // Gallop: 1, 2, 4, … until one is missing, then bisect.
      let n = 1;
      while (n < 1 << 20) {
        probed.push('demo-' + n);
        if (!(await exists('demo-' + n))) break;
        lo = n;
        n *= 2;
      }
      hi = n;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        probed.push('demo-' + mid);
        if (await exists('demo-' + mid)) lo = mid; else hi = mid;
      }
    } else {
      while (true) {
        probed.push('demo-' + (lo + 1));
        if (!(await exists('demo-' + (lo + 1)))) break;
        lo++;
      }
    }
    if (lo > newestDemo) {
      const prev = newestDemo ? 'demo-' + newestDemo : null;
      newestDemo = lo;
      const follow = !selected || selected === prev || selected === '1' || !watched.includes(selected);
      await watch('demo-' + lo, { select: follow });
      // Keep the last three demo jobs in the list.
      for (const id of watched.filter((x) => /^demo-\d+$/.test(x))) {
        if (Number(id.slice(5)) <= newestDemo - 3) unwatch(id);
      }
    }
  } catch { /* offline: try again later */ }
  for (const id of probed) if (!watched.includes(id) && client.tasks.has(id)) client.unsubscribe(id).catch(() => {});
  probing = false;
}

// ---- start ----

function start(c) {
  $('app').hidden = false;
  $('who').hidden = false;
  $('who-uid').textContent = c.uid || '(token)';
  client = new BasestationClient({ url: wsUrl(c.ws), uid: c.uid || undefined, token: c.token });
  window.basestation = client; // for the console and the tests
  client.on('state', (s) => {
    setState(s);
    if (s === 'open') {
      for (const m of chat) if (m.dir === 'out' && m.status === 'queued') m.status = 'sending';
      renderChat();
      probeDemo();
    }
  });
  client.on('connect', (f) => {
    if (!c.uid) { c.uid = f.uid; $('who-uid').textContent = f.uid; }
  });
  client.on('message', addIncoming);
  client.on('presence', presenceEvent);
  // After a reconnect: what changed while this page was offline.
  client.on('connect', () => { for (const r of online.keys()) refreshOnline(r); });
  client.on('task', (t) => {
    snaps.set(t.id, t);
    if (watched.includes(t.id)) { renderTasks(); if (t.id === selected) renderTimeline(); }
  });
  let everOpen = false, failures = 0;
  client.on('close', () => {
    if (!everOpen && ++failures === 3) {
      showError(`cannot connect to ${wsUrl(c.ws)} — check the token and the WebSocket port (ws=), then reload`);
    }
  });
  client.on('connect', () => { everOpen = true; });
  client.on('error', (e) => {
    if (e.code === 'heartbeat_timeout' || e.code === 'connect_timeout') showError(e.message);
  });
  client.on('resumed', (r) => {
    if (!r.complete) showError('some older messages are no longer stored (history was trimmed)');
  });
  setState(client.state);

  chat = session.get(chatKey(), []);
  renderChat();
  // Messages that were still on their way when the page was left: send them
  // again with the same ref (the broker stores each ref once).
  for (const m of chat) if (m.dir === 'out' && (m.status === 'sending' || m.status === 'queued')) sendOut(m);

  rooms = session.get('rooms.' + c.uid, []);
  renderRooms();
  for (const r of rooms) client.join(r, { presence: true }).then(() => refreshOnline(r), () => {});

  watched = session.get('watched.' + c.uid, null) || ['1'];
  selected = session.get('selected.' + c.uid, null) || watched[watched.length - 1] || null;
  newestDemo = Math.max(0, ...watched.filter((x) => /^demo-\d+$/.test(x)).map((x) => Number(x.slice(5))));
  for (const id of watched) watch(id, { select: false });
  renderTasks();
  renderTimeline();
  setInterval(probeDemo, 3000);
  $('follow-demo').addEventListener('change', probeDemo);
}

if (!creds || !creds.token) {
  $('signin').hidden = false;
  setState('closed');
} else {
  start(creds);
}
