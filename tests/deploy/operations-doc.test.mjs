// docs/operations.md stays true:
//   - every ```sh block of its "HTTP API" and "Looking inside" sections runs,
//     in order, against a real broker (127.0.0.1:8081 and the database path
//     moved to the test's), and its output matches the block shown after it:
//     JSON with the same keys, array lengths and values (times, tokens and
//     other per-run values excepted); text with the same first line and the
//     same "(N rows)" line;
//   - the metrics table names every metric /metrics exports, with its type,
//     and nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, token, Client, BIN, API_KEY, ADMIN_KEY } from '../blackbox/lib.mjs';

const SOURCE = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
const DOC = fs.readFileSync(path.join(SOURCE, 'docs/operations.md'), 'utf8');

function section(title) {
  const i = DOC.indexOf('\n## ' + title);
  assert.ok(i >= 0, `no section "## ${title}"`);
  const j = DOC.indexOf('\n## ', i + 4);
  return DOC.slice(i, j < 0 ? undefined : j);
}

// Fenced blocks in order: {lang, body, end}.
function blocks(text) {
  const out = [];
  const re = /^```(\w*)\n([\s\S]*?)^```$/gm;
  let m;
  while ((m = re.exec(text))) out.push({ lang: m[1], body: m[2], start: m.index, end: re.lastIndex });
  return out;
}

// (command block, expected output block or null) pairs.
function examples(text) {
  const bs = blocks(text);
  const out = [];
  bs.forEach((b, i) => {
    if (b.lang !== 'sh') return;
    const next = bs[i + 1];
    const adjacent = next && text.slice(b.end, next.start).trim() === '' && next.lang !== 'sh';
    out.push({ cmd: b.body, expect: adjacent ? next : null });
  });
  return out;
}

// Values that differ from run to run.
const VOLATILE = new Set(['token', 'expires_at', 'created_at', 'updated_at', 'started_at', 'finished_at',
  'since', 'ts', 'duration', 'elapsed_ms', 'epoch', 'conn']);

function sameShape(doc, real, where = '$') {
  if (doc === null || real === null) return;
  assert.equal(typeof real, typeof doc, `${where}: ${JSON.stringify(real)} vs documented ${JSON.stringify(doc)}`);
  if (Array.isArray(doc)) {
    assert.ok(Array.isArray(real), where);
    assert.equal(real.length, doc.length, `${where}: length`);
    doc.forEach((d, i) => sameShape(d, real[i], `${where}[${i}]`));
  } else if (typeof doc === 'object') {
    assert.deepEqual(Object.keys(real).sort(), Object.keys(doc).sort(), `${where}: keys`);
    for (const k of Object.keys(doc)) if (!VOLATILE.has(k)) sameShape(doc[k], real[k], `${where}.${k}`);
  } else {
    assert.equal(real, doc, where);
  }
}

let srv, alice;
before(async () => {
  // --node: the name the guide's /admin/nodes example shows (the default
  // is this machine's hostname and the port).
  srv = await startServer({ args: ['--node', 'web1-8080'] });
  // The guide's setting: alice is connected (with a token from the CLI) and
  // is a member of lobby.
  alice = new Client(srv.url('?token=' + token(srv.db, 'alice')));
  await alice.opened;
  await alice.next('connect');
  alice.send({ type: 'join', room: 'lobby' });
  await alice.next('joined');
});
after(async () => { if (alice) await alice.close(); if (srv) await srv.cleanup(); });

test('the HTTP API and sql examples run and print what the guide shows', async () => {
  const ex = [...examples(section('5. The HTTP API')), ...examples(section('6. Looking inside: `basestation sql`'))];
  assert.ok(ex.length >= 15, `only ${ex.length} examples found`);
  const env = { ...process.env, API_KEY, ADMIN_KEY };
  for (const { cmd, expect } of ex) {
    const run = cmd.replaceAll('127.0.0.1:8081', `127.0.0.1:${srv.httpPort}`)
      .replaceAll('/var/lib/basestation/basestation.db', srv.db)
      .replace(/^basestation /gm, BIN + ' ');
    const r = spawnSync('bash', ['-c', `{ ${run}\n} 2>&1`], { encoding: 'utf8', env, timeout: 10000 });
    const out = r.stdout.replace(/\r/g, '');
    assert.equal(r.status, 0, `${cmd}\n${out}`);
    if (!expect) continue;
    if (expect.lang === 'json') {
      let real;
      assert.doesNotThrow(() => { real = JSON.parse(out); }, `not JSON:\n${cmd}\n${out}`);
      sameShape(JSON.parse(expect.body), real);
    } else {
      const first = (s) => s.split('\n')[0].trimEnd();
      assert.equal(first(out), first(expect.body), cmd);
      const rows = (s) => (/^\(\d+ rows?\)$/m.exec(s) || [null])[0];
      assert.equal(rows(out), rows(expect.body), cmd);
    }
  }
  // alice's connection got both publishes, as the guide shows (read now:
  // the examples ran synchronously).
  const got = [(await alice.next('message')).data.text, (await alice.next('message')).data.text];
  assert.deepEqual(got, ['your report is ready', 'deploy at 17:00']);
});

test('the metrics table lists every exported metric with its type, and only those', async () => {
  const text = await (await fetch(srv.http + '/metrics')).text();
  const exported = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  assert.ok(exported.size > 10);
  const table = new Map([...section('7. Metrics').matchAll(/^\| `(basestation_\w+)(?:\{[^`]*\})?` \| (\w+) \|/gm)]
    .map((m) => [m[1], m[2]]));
  for (const [name, type] of exported) {
    assert.ok(table.has(name), `${name} is not described in docs/operations.md`);
    assert.equal(table.get(name), type, `${name}'s type`);
  }
  for (const name of table.keys()) assert.ok(exported.has(name), `${name} is documented but not exported`);
});
