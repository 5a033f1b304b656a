// The admin console: live charts (from GET /metrics, public), rooms, live
// connections, tables with row counts, and a read-only SQL box. Everything
// under /admin it fetches needs the admin key, which is kept in
// sessionStorage (this tab only) and sent as a Bearer token.
import { parseMetrics, sample, Series } from './metrics.js';
import { drawChart, legend } from './charts.js';

const $ = (id) => document.getElementById(id);
const KEY = 'basestation.adminKey';

const getKey = () => { try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; } };
const setKey = (k) => { try { if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY); } catch { /* ignore */ } };

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(method, path, body) {
  const key = getKey();
  if (!key) throw new HttpError(401, 'enter the admin key');
  const headers = { Authorization: 'Bearer ' + key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  // 503 means "busy, try again" (too many queries running): a few retries.
  for (let attempt = 0; ; attempt++) {
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
    } catch (e) {
      throw new HttpError(0, 'the broker does not answer (' + e.message + ')');
    }
    if (res.status !== 503 || attempt >= 3) break;
    await new Promise((r) => setTimeout(r, 150 * (attempt + 1)));
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const msg = (json && json.error) || res.statusText || 'HTTP ' + res.status;
    throw new HttpError(res.status, res.status === 401 ? 'wrong admin key: ' + msg : msg);
  }
  setKeyState('ok');
  return json;
}

function setKeyState(s, text) {
  $('key-state').dataset.state = s === 'ok' ? 'open' : s === 'bad' ? 'failed' : 'closed';
  $('key-state-text').textContent = text || (s === 'ok' ? 'key accepted' : s === 'bad' ? 'key refused' : 'no key');
}

function showError(e) {
  if (e.status === 401) setKeyState(getKey() ? 'bad' : 'none');
  $('error').textContent = e.message;
  $('error').hidden = false;
}
const clearError = () => { $('error').hidden = true; };

function cell(v, cls) {
  const td = document.createElement('td');
  if (v === null || v === undefined) { td.textContent = 'NULL'; td.className = 'null'; return td; }
  td.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (cls) td.className = cls;
  else if (typeof v === 'number') td.className = 'num';
  return td;
}

function fmtSince(ms) {
  if (!ms) return '';
  const age = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const ago = age < 60 ? `${age}s` : age < 3600 ? `${Math.floor(age / 60)}m${age % 60}s` : `${Math.floor(age / 3600)}h${Math.floor((age % 3600) / 60)}m`;
  return `${new Date(ms).toLocaleTimeString()} (${ago} ago)`;
}

// ---- connections ----

async function loadConnections() {
  try {
    const r = await call('GET', '/admin/connections');
    clearError();
    const list = r.connections || [];
    const tb = $('conns').tBodies[0];
    tb.replaceChildren(...list.map((c) => {
      const tr = document.createElement('tr');
      tr.dataset.uid = c.uid;
      tr.append(cell(c.conn), cell(c.uid, 'uid'), cell(c.role ?? null), cell(c.remote), cell(fmtSince(c.since), 'since'),
        cell((c.rooms || []).join(', '), 'col-rooms'), cell(c.tasks ?? null), cell(c.last_seq ?? null), cell(c.out_buffered));
      return tr;
    }));
    $('conns-count').textContent = `${list.length} open` + (r.count !== undefined && r.count !== list.length ? ` (${r.count} incl. handshakes)` : '');
    $('conns-empty').hidden = list.length > 0;
  } catch (e) { showError(e); }
}

// ---- nodes (GET /admin/nodes: this one alone, or every live cluster node) ----

async function loadNodes() {
  try {
    const r = await call('GET', '/admin/nodes');
    clearError();
    const list = r.nodes || [];
    $('nodes').tBodies[0].replaceChildren(...list.map((n) => {
      const tr = document.createElement('tr');
      tr.dataset.node = n.node;
      tr.append(cell(n.node, 'node'), cell(n.connections), cell(n.applied_seq), cell(n.lag), cell(n.version),
        cell(fmtSince(n.since), 'since'), cell(n.age_ms ?? null));
      return tr;
    }));
    $('nodes-count').textContent = list.length === 1 ? 'single node' : `${list.length} live`;
  } catch (e) { showError(e); }
}

// ---- tables ----

const quoteIdent = (s) => '"' + String(s).replace(/"/g, '""') + '"';

async function loadTables() {
  try {
    const r = await call('POST', '/admin/sql', { sql: "SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name" });
    clearError();
    const names = r.rows.map((row) => row[0]);
    // One at a time: the broker runs only a few queries at once (503 beyond).
    const counts = [];
    for (const n of names) {
      try {
        const c = await call('POST', '/admin/sql', { sql: `SELECT count(*) FROM ${quoteIdent(n)}` });
        counts.push(c.rows[0][0]);
      } catch (e) { counts.push('error: ' + e.message); }
    }
    $('tables').tBodies[0].replaceChildren(...names.map((n, i) => {
      const tr = document.createElement('tr');
      tr.dataset.table = n;
      const name = cell(n, 'table-link');
      name.title = 'show its rows';
      name.addEventListener('click', () => {
        $('sql').value = `SELECT * FROM ${quoteIdent(n)} LIMIT 100`;
        runSql();
      });
      tr.append(name, cell(counts[i]));
      return tr;
    }));
  } catch (e) { showError(e); }
}

// ---- SQL ----

async function runSql() {
  const sql = $('sql').value.trim();
  if (!sql) return;
  $('sql-run').disabled = true;
  $('sql-error').hidden = true;
  try {
    const r = await call('POST', '/admin/sql', { sql });
    const head = document.createElement('tr');
    head.append(...r.columns.map((c, i) => {
      const th = document.createElement('th');
      th.textContent = c;
      if (r.rows.length && r.rows.every((row) => typeof row[i] === 'number' || row[i] === null)) th.className = 'num';
      return th;
    }));
    $('sql-result').tHead.replaceChildren(head);
    $('sql-result').tBodies[0].replaceChildren(...r.rows.map((row) => {
      const tr = document.createElement('tr');
      tr.append(...row.map((v) => cell(v)));
      return tr;
    }));
    $('sql-scroll').hidden = false;
    const meta = $('sql-meta');
    meta.replaceChildren(`${r.rows.length} row${r.rows.length === 1 ? '' : 's'} · ${r.elapsed_ms} ms`);
    if (r.truncated) {
      const w = document.createElement('span');
      w.className = 'warn';
      w.textContent = ' · truncated (row limit reached)';
      meta.append(w);
    }
    meta.dataset.rows = r.rows.length;
    meta.dataset.truncated = r.truncated;
  } catch (e) {
    if (e.status === 401 || e.status === 0) showError(e);
    $('sql-error').textContent = e.message;
    $('sql-error').hidden = false;
    $('sql-meta').textContent = '';
    $('sql-scroll').hidden = true;
  } finally {
    $('sql-run').disabled = false;
  }
}

// ---- live charts: GET /metrics every 2 s, the last 10 minutes ----

const WINDOW_MS = 10 * 60 * 1000;
const SAMPLE_MS = 2000;
const SERIES_KEY = 'basestation.adminSeries';
const CHARTS = [
  { id: 'chart-conns', lines: [['connections', 'connections', '#2563eb'], ['users', 'users online', '#16a34a']] },
  { id: 'chart-msgs', unit: '/s', lines: [['inRate', 'in', '#2563eb'], ['outRate', 'out', '#d97706']] },
  { id: 'chart-commit', unit: 'ms', digits: 2, lines: [['p99ms', 'p99', '#7c3aed']], empty: 'no commits in the window' },
  // Replica lag exists only in cluster mode (basestation_replica_lag).
  { id: 'chart-lag', unit: 'msgs', lines: [['lag', 'lag', '#dc2626']], empty: 'single node — no replica lag' },
];

let series = (() => {
  try { return Series.from(JSON.parse(sessionStorage.getItem(SERIES_KEY) || 'null'), WINDOW_MS, Date.now()); } catch { return new Series(WINDOW_MS); }
})();

function drawCharts() {
  const now = Date.now();
  for (const c of CHARTS) {
    const lines = c.lines.map(([field, label, color]) => ({ label, color, points: series.of(field) }));
    const canvas = $(c.id);
    drawChart(canvas, { lines, now, windowMs: WINDOW_MS, unit: c.unit, empty: c.empty });
    legend($(c.id + '-legend'), lines, c.unit, c.digits);
  }
  $('chart-lag').dataset.mode = series.has('lag') ? 'cluster' : 'single';
}

let sampling = false;
async function sampleMetrics() {
  if (sampling) return;
  sampling = true;
  const t = Date.now();
  try {
    const res = await fetch('/metrics', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    series.add(sample(parseMetrics(await res.text()), t));
    $('live-state').textContent = 'GET /metrics every 2 s · last 10 minutes';
    $('live-state').classList.remove('warn');
  } catch (e) {
    series.add({ t }); // a gap
    $('live-state').textContent = 'GET /metrics failed: ' + e.message;
    $('live-state').classList.add('warn');
  } finally {
    sampling = false;
  }
  try { sessionStorage.setItem(SERIES_KEY, JSON.stringify(series)); } catch { /* full or denied */ }
  drawCharts();
}

// ---- rooms: members and last seq and messages in the last minute (SQL),
// members online (the live connections) ----

const ROOMS_SQL = `WITH b(s) AS (SELECT coalesce((SELECT seq FROM messages
    WHERE ts < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 60000
    ORDER BY seq DESC LIMIT 1), 0)),
  r(room, members) AS (SELECT room, count(*) FROM members GROUP BY room)
SELECT r.room, r.members,
  (SELECT max(seq) FROM messages WHERE room = r.room) AS last_seq,
  (SELECT count(*) FROM messages WHERE room = r.room AND seq > (SELECT s FROM b)) AS per_minute
FROM r ORDER BY per_minute DESC, r.room LIMIT 500`;

async function loadRooms() {
  if (!getKey()) return;
  try {
    const [conns, r] = await Promise.all([call('GET', '/admin/connections'), call('POST', '/admin/sql', { sql: ROOMS_SQL })]);
    const online = new Map();
    for (const c of conns.connections || []) {
      for (const room of c.rooms || []) {
        if (!online.has(room)) online.set(room, new Set());
        online.get(room).add(c.uid);
      }
    }
    $('rooms').tBodies[0].replaceChildren(...r.rows.map(([room, members, lastSeq, perMinute]) => {
      const tr = document.createElement('tr');
      tr.dataset.room = room;
      tr.append(cell(room), cell(members, 'num col-members'), cell(online.has(room) ? online.get(room).size : 0, 'num col-online'),
        cell(lastSeq ?? '—', 'num col-last-seq'), cell(perMinute, 'num col-per-minute'));
      return tr;
    }));
    $('rooms-count').textContent = `${r.rows.length}${r.truncated ? '+' : ''} · messages in the last 60 s`;
    $('rooms-empty').hidden = r.rows.length > 0;
  } catch (e) { showError(e); }
}

// ---- wiring ----

function refreshAll() { loadConnections(); loadNodes(); loadTables(); loadRooms(); }

$('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  setKey($('admin-key').value.trim());
  $('admin-key').value = '';
  setKeyState(getKey() ? 'pending' : 'none', getKey() ? 'checking…' : 'no key');
  refreshAll();
});
$('key-forget').addEventListener('click', () => {
  setKey('');
  setKeyState('none');
  $('conns').tBodies[0].replaceChildren();
  $('tables').tBodies[0].replaceChildren();
  $('rooms').tBodies[0].replaceChildren();
});
$('conns-refresh').addEventListener('click', loadConnections);
$('nodes-refresh').addEventListener('click', loadNodes);
$('rooms-refresh').addEventListener('click', loadRooms);
$('tables-refresh').addEventListener('click', loadTables);
$('sql-form').addEventListener('submit', (ev) => { ev.preventDefault(); runSql(); });
$('sql').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runSql(); }
});
setInterval(() => { if ($('conns-auto').checked && getKey() && !document.hidden) { loadConnections(); loadNodes(); } }, 5000);
setInterval(() => { if (getKey() && !document.hidden) loadRooms(); }, 6000);
setInterval(sampleMetrics, SAMPLE_MS);
addEventListener('resize', drawCharts);
sampleMetrics();

if (getKey()) { setKeyState('pending', 'checking…'); refreshAll(); } else setKeyState('none');
