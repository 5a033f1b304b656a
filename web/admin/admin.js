// The admin console: live connections, tables with row counts, and a
// read-only SQL box. Everything it fetches needs the admin key, which is
// kept in sessionStorage (this tab only) and sent as a Bearer token.
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

// ---- wiring ----

function refreshAll() { loadConnections(); loadTables(); }

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
});
$('conns-refresh').addEventListener('click', loadConnections);
$('tables-refresh').addEventListener('click', loadTables);
$('sql-form').addEventListener('submit', (ev) => { ev.preventDefault(); runSql(); });
$('sql').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runSql(); }
});
setInterval(() => { if ($('conns-auto').checked && getKey() && !document.hidden) loadConnections(); }, 5000);

if (getKey()) { setKeyState('pending', 'checking…'); refreshAll(); } else setKeyState('none');
