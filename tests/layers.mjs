// The layer rule (docs/architecture.md): each file of src/ and include/
// belongs to one layer, and includes only headers of its own layer or of
// layers below it. Also: a directory's private headers (src/<dir>/*.h) are
// included from that directory only; the store's header (the one that
// reaches its write functions) only from src/store/ and src/engine/; and
// no header under include/ names an SQLite type. There is no list of
// exceptions: a file the table below does not place is itself an error.
//
//   node tests/layers.mjs ROOT          check the tree at ROOT
//   node tests/layers.mjs --self-test   check that the check catches each
//                                       kind of violation in a scratch tree
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

// Lowest first.
const LAYERS = ['util', 'codec', 'transport', 'store', 'engine', 'broker', 'proto', 'session',
  'http', 'composition', 'entry'];

// Directories of src/ and the files directly in src/.
const SRC_DIRS = {
  util: 'util', ws: 'codec', net: 'transport', auth: 'store', store: 'store', engine: 'engine',
  cluster: 'engine', broker: 'broker', proto: 'proto', conn: 'session', http: 'http',
};
const SRC_FILES = { 'server.c': 'composition', 'demo.c': 'composition', 'main.c': 'entry', 'config.c': 'entry' };

// The public headers (include/basestation/), each in the layer of the code
// it declares. settings.h holds the parsed flags (plain data, read by
// every layer); config.h declares the parser of src/config.c.
const HEADERS = {
  'settings.h': 'util', 'log.h': 'util', 'metrics.h': 'util', 'msgbuf.h': 'util', 'names.h': 'util',
  'result.h': 'util', 'sb.h': 'util', 'xalloc.h': 'util',
  'ws.h': 'codec', 'deflate.h': 'codec',
  'addr.h': 'transport', 'net.h': 'transport', 'transport.h': 'transport', 'tls.h': 'transport', 'tls_base.h': 'transport',
  'auth.h': 'store', 'auth_hook.h': 'store', 'inspect.h': 'store', 'records.h': 'store', 'store.h': 'store',
  'engine.h': 'engine', 'engine_local.h': 'engine', 'engine_nats.h': 'engine', 'jetstream.h': 'engine',
  'broker.h': 'broker', 'session.h': 'broker', 'tasks.h': 'broker',
  'commands.h': 'proto', 'proto.h': 'proto',
  'conn.h': 'session',
  'http.h': 'http',
  'demo.h': 'composition', 'server.h': 'composition',
  'config.h': 'entry',
};
// Made by the build (meson.build): build settings only.
const GENERATED = { 'bs_config.h': 'util' };
// Who may include store.h.
const STORE_USERS = ['src/store/', 'src/engine/'];

function layerOf(rel) {
  const p = rel.split('/');
  if (p[0] === 'include' && p[1] === 'basestation' && p.length === 3) return HEADERS[p[2]];
  if (p[0] === 'src' && p.length === 2) return SRC_FILES[p[1]];
  if (p[0] === 'src' && p.length === 3) return SRC_DIRS[p[1]];
  return undefined;
}

function walk(root, dir, out) {
  let names;
  try { names = readdirSync(path.join(root, dir)); } catch { return out; }
  for (const n of names) {
    const rel = dir ? `${dir}/${n}` : n;
    if (statSync(path.join(root, rel)).isDirectory()) walk(root, rel, out);
    else if (/\.[ch]$/.test(n)) out.push(rel);
  }
  return out;
}

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
}

// The file an #include "..." names, relative to the root: the including
// file's directory first, then include/ and src/ (the build's -I).
function resolve(root, from, name) {
  for (const base of [path.posix.dirname(from), 'include', 'src']) {
    const rel = path.posix.normalize(`${base}/${name}`);
    try { if (statSync(path.join(root, rel)).isFile()) return rel; } catch { /* next */ }
  }
  return undefined;
}

export function check(root) {
  const bad = [];
  const files = [...walk(root, 'src', []), ...walk(root, 'include', [])];
  for (const file of files) {
    const layer = layerOf(file);
    if (layer === undefined) {
      bad.push(`${file}: in no layer (tests/layers.mjs places every file of src/ and include/)`);
      continue;
    }
    const text = readFileSync(path.join(root, file), 'utf8');
    const code = stripComments(text);
    if (file.startsWith('include/') && /\bsqlite3\w*/.test(code))
      bad.push(`${file}: names an SQLite type (keep them in src/store/)`);
    for (const m of code.matchAll(/^[ \t]*#[ \t]*include[ \t]*"([^"]+)"/gm)) {
      const name = m[1];
      let target, tlayer;
      if (GENERATED[name]) {
        target = name;
        tlayer = GENERATED[name];
      } else {
        target = resolve(root, file, name);
        if (target === undefined) {
          bad.push(`${file}: includes "${name}", which is not in the tree`);
          continue;
        }
        tlayer = layerOf(target);
        if (tlayer === undefined) {
          bad.push(`${file}: includes ${target}, which is in no layer`);
          continue;
        }
      }
      if (LAYERS.indexOf(tlayer) > LAYERS.indexOf(layer))
        bad.push(`${file} (${layer}) includes ${target} (${tlayer}), a layer above it`);
      const tp = target.split('/');
      if (tp[0] === 'src' && tp.length === 3 && target.endsWith('.h') &&
          path.posix.dirname(target) !== path.posix.dirname(file))
        bad.push(`${file} includes ${target}, a header private to ${path.posix.dirname(target)}/`);
      if (target === 'include/basestation/store.h' && !STORE_USERS.some((d) => file.startsWith(d)))
        bad.push(`${file} includes the store's header: only ${STORE_USERS.join(' and ')} write to the store`);
    }
  }
  return { files: files.length, bad };
}

function selfTest() {
  const cases = [
    // [what, files to add, the message it must produce]
    ['util includes broker', { 'src/util/x.c': '#include "basestation/broker.h"\n' }, 'a layer above it'],
    ['codec includes session', { 'src/ws/x.c': '#include "basestation/conn.h"\n' }, 'a layer above it'],
    ['broker includes http', { 'src/broker/x.c': '#include "basestation/http.h"\n' }, 'a layer above it'],
    ['a file in no layer', { 'src/newdir/x.c': '/* */\n' }, 'in no layer'],
    ['a header in no layer', { 'include/basestation/new.h': '/* */\n' }, 'in no layer'],
    ['another directory\'s private header', { 'src/broker/x.c': '#include "store/tokens.h"\n' }, 'private to'],
    ['the store header outside store and engine', { 'src/broker/x.c': '#include "basestation/store.h"\n' }, 'write to the store'],
    ['an SQLite type in a public header', { 'include/basestation/store.h': 'struct sqlite3;\nsqlite3 *store_db(void);\n' }, 'SQLite type'],
  ];
  const base = {
    'include/basestation/log.h': '/* util */\n',
    'include/basestation/broker.h': '#include "basestation/log.h"\n',
    'include/basestation/conn.h': '#include "basestation/broker.h"\n',
    'include/basestation/http.h': '#include "basestation/conn.h"\n',
    'include/basestation/store.h': '/* mentions sqlite3 only in a comment */\n',
    'src/store/tokens.h': '#include "basestation/store.h"\n',
    'src/store/tokens.c': '#include "tokens.h"\n#include "bs_config.h"\n',
    'src/broker/ok.c': '#include "basestation/broker.h"\n#include "basestation/log.h"\n',
    'src/main.c': '#include "basestation/http.h"\n',
  };
  let failures = 0;
  const run = (what, extra, want) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'layers-'));
    try {
      for (const [f, text] of Object.entries({ ...base, ...extra })) {
        mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
        writeFileSync(path.join(dir, f), text);
      }
      const { bad } = check(dir);
      const ok = want === null ? bad.length === 0 : bad.some((b) => b.includes(want));
      console.log(`${ok ? 'ok' : 'FAILED'}: ${what}${want ? ` -> ${bad.join('; ') || 'nothing found'}` : ''}`);
      if (!ok) failures++;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  run('a clean tree passes', {}, null);
  for (const [what, extra, want] of cases) run(what, extra, want);
  return failures;
}

if (process.argv[2] === '--self-test') {
  process.exit(selfTest() ? 1 : 0);
} else {
  const root = process.argv[2] || path.join(path.dirname(new URL(import.meta.url).pathname), '..');
  const { files, bad } = check(root);
  for (const b of bad) console.error(b);
  console.log(`${files} files of src/ and include/ checked: ${bad.length} violation(s)`);
  process.exit(bad.length ? 1 : 0);
}
