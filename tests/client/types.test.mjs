// The type declarations (clients/js/*.d.ts) under `tsc --noEmit --strict`:
// the typed example compiles (and each of its expected errors is one); a
// wrong use fails to compile; and the declarations cover what the code has:
// every frame type the broker parses or sends (read from src/), every option,
// method, event and error code of basestation.js, every export of vue.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const JS = path.join(ROOT, 'clients/js');
const TSC = path.join(ROOT, 'node_modules/.bin/tsc');
const missing = existsSync(TSC) ? false : `no ${TSC} (npm ci installs typescript from package-lock.json)`;
if (missing && process.env.CI) throw new Error(missing);

function tsc(args, cwd = ROOT) {
  const r = spawnSync(TSC, args, { cwd, encoding: 'utf8', timeout: 120000 });
  return { code: r.status, out: (r.stdout || '') + (r.stderr || '') };
}

// A scratch project compiling `files` ({name: source}) strictly.
function compile(files) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-tsc-'));
  try {
    for (const [name, src] of Object.entries(files)) writeFileSync(path.join(dir, name), src);
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: 'es2022', module: 'esnext', moduleResolution: 'bundler',
        lib: ['es2022', 'dom'], types: [], skipLibCheck: false,
      },
      files: Object.keys(files),
    }));
    return tsc(['--noEmit', '--strict', '-p', path.join(dir, 'tsconfig.json')], dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const lit = (xs) => xs.map((x) => JSON.stringify(x)).join(' | ');

test('the typed example compiles with --strict', { skip: missing, timeout: 120000 }, () => {
  const r = tsc(['--noEmit', '--strict', '-p', path.join(ROOT, 'tests/client/typed/tsconfig.json')]);
  assert.equal(r.code, 0, r.out);
});

test('wrong uses fail to compile', { skip: missing, timeout: 120000 }, () => {
  const head = `import { BasestationClient } from ${JSON.stringify(path.join(JS, 'basestation.js'))};
const bs = new BasestationClient({ url: 'ws://127.0.0.1:8080/ws' });\n`;
  const wrong = {
    'a misspelt event': "bs.on('mesage', () => {});",
    'a misspelt frame type': "bs.request({ type: 'subscibe', task: '1' });",
    'a missing field': "bs.request({ type: 'send', to: 'bob' });",
    'a wrong reply field': "bs.send('bob', 1).then((a) => a.version);",
    'a listener of the wrong shape': "bs.on('task', (t: string) => t);",
    'a wrong option type': "new BasestationClient({ url: 'ws://x', minDelay: '5' });",
  };
  const ok = compile({ 'ok.ts': head + "bs.on('message', (m) => m.seq);\nbs.send('bob', 1).then((a) => a.seq);\n" });
  assert.equal(ok.code, 0, ok.out);
  // One file, one wrong use per line: each line must have its own error.
  const lines = Object.values(wrong);
  const r = compile({ 'wrong.ts': head + lines.join('\n') + '\n' });
  assert.notEqual(r.code, 0, r.out);
  const bad = new Set([...r.out.matchAll(/wrong\.ts\((\d+),/g)].map((m) => Number(m[1])));
  Object.keys(wrong).forEach((what, i) => assert.ok(bad.has(i + 3), `${what} compiled: ${lines[i]}\n${r.out}`));
});

// Names the broker knows, read from its source.
function serverNames() {
  const commands = readFileSync(path.join(ROOT, 'src/proto/commands.c'), 'utf8');
  const table = /types\[\]\s*=\s*\{([\s\S]*?)\};/.exec(commands);
  assert.ok(table, 'the command table in src/proto/commands.c');
  const inbound = [...table[1].matchAll(/\{"([^"]+)",\s*CMD_/g)].map((m) => m[1]);
  const outbound = new Set(['message']);
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.c')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/"type",\s*"([a-z][a-z._]*)"/g)) outbound.add(m[1]);
      }
    }
  };
  walk(path.join(ROOT, 'src'));
  return { inbound, outbound: [...outbound] };
}

test('the declarations cover the protocol and the code', { skip: missing, timeout: 120000 }, async () => {
  const { inbound, outbound } = serverNames();
  assert.ok(inbound.includes('send') && inbound.includes('task.update'), inbound.join());
  assert.ok(outbound.includes('ack') && outbound.includes('connect'), outbound.join());

  const js = readFileSync(path.join(JS, 'basestation.js'), 'utf8');
  const optsDoc = /@typedef \{Object\} ClientOptions([\s\S]*?)\*\//.exec(js)[1];
  const options = [...optsDoc.matchAll(/@property \{[^}]*\} \[?([A-Za-z]+)/g)].map((m) => m[1]);
  const errors = [...new Set([...js.matchAll(/new BasestationError\('([a-z_]+)'/g)].map((m) => m[1]))];
  const events = [...new Set([...js.matchAll(/_emit\('([a-z]+)'/g)].map((m) => m[1]))];
  const { BasestationClient } = await import(path.join(JS, 'basestation.js'));
  const members = Object.getOwnPropertyNames(BasestationClient.prototype).filter((n) => n !== 'constructor' && !n.startsWith('_'));
  const c = new BasestationClient({ url: 'ws://127.0.0.1:9/ws', autoConnect: false, WebSocket: class {} });
  const fields = Object.keys(c).filter((n) => !n.startsWith('_'));
  const vueExports = Object.keys(await import(path.join(JS, 'vue.js')));
  assert.ok(options.length >= 15 && members.includes('send') && fields.includes('lastSeq'), `${options} ${members} ${fields}`);

  // Each name assigned to the declared union: tsc fails on a missing one.
  // The reverse (a declared name the code does not have) via Exclude<> = never.
  const src = `import type * as B from ${JSON.stringify(path.join(JS, 'basestation.js'))};
import type * as V from ${JSON.stringify(path.join(JS, 'vue.js'))};
type Eq<A, E> = [Exclude<A, E>] extends [never] ? ([Exclude<E, A>] extends [never] ? true : false) : false;
const inbound: Array<B.ClientFrame['type'] | B.SeedHeartbeatFrame['type']> = [${inbound.map((x) => JSON.stringify(x)).join(', ')}];
const outbound: Array<Extract<B.ServerFrame, { type: string }>['type']> = [${outbound.map((x) => JSON.stringify(x)).join(', ')}];
const options: true = true as Eq<keyof B.ClientOptions, ${lit(options)}>;
const errors: true = true as Eq<B.ClientErrorCode, ${lit(errors)}>;
const events: true = true as Eq<B.ClientEvent, ${lit(events)}>;
const members: true = true as Eq<{ [K in keyof B.BasestationClient]: B.BasestationClient[K] extends Function ? K : never }[keyof B.BasestationClient], ${lit(members.filter((m) => typeof Object.getOwnPropertyDescriptor(BasestationClient.prototype, m).value === 'function'))}>;
const props: true = true as Eq<{ [K in keyof B.BasestationClient]: B.BasestationClient[K] extends Function ? never : K }[keyof B.BasestationClient], ${lit([...fields, ...members.filter((m) => typeof Object.getOwnPropertyDescriptor(BasestationClient.prototype, m).value !== 'function')])}>;
const vue: true = true as Eq<keyof typeof V, ${lit(vueExports)}>;
export { inbound, outbound, options, errors, events, members, props, vue };
`;
  const r = compile({ 'cover.ts': src });
  assert.equal(r.code, 0, r.out + '\n' + src);
});
