// clients/js as an npm package: `npm pack` holds what package.json's
// `files` lists and nothing else, the tarball installs offline with no
// dependency pulled in (vue is an optional peer), `import 'basestation'`
// works in Node against the real broker, 'basestation/vue' needs vue and
// then works, and TypeScript finds the types through `exports` (nodenext).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packAndInstall, ROOT, PACKAGE_DIR } from './pack.mjs';
import { startServer, token } from '../blackbox/lib.mjs';

const TSC = path.join(ROOT, 'node_modules/.bin/tsc');
const noTsc = existsSync(TSC) ? false : `no ${TSC} (npm ci installs typescript)`;
if (noTsc && process.env.CI) throw new Error(noTsc);

let pkg, srv;
before(async () => {
  pkg = packAndInstall();
  srv = await startServer();
});
after(async () => {
  if (pkg) pkg.cleanup();
  if (srv) await srv.cleanup();
});

const run = (file, src) => {
  writeFileSync(path.join(pkg.dir, file), src);
  return spawnSync(process.execPath, [file], { cwd: pkg.dir, encoding: 'utf8', timeout: 30000 });
};

test('the tarball holds the package files and nothing else', () => {
  const files = pkg.packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, ['README.md', 'basestation.d.ts', 'basestation.js', 'package.json', 'vue.d.ts', 'vue.js']);
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
  assert.equal(manifest.name, 'basestation');
  assert.equal(manifest.dependencies, undefined, 'no runtime dependencies');
  assert.deepEqual(manifest.peerDependenciesMeta, { vue: { optional: true } });
  assert.equal(manifest.types, './basestation.d.ts');
  assert.deepEqual(Object.keys(manifest.exports).sort(), ['.', './package.json', './vue']);
  // Installed from the tarball, alone.
  assert.deepEqual(readdirSync(path.join(pkg.dir, 'node_modules')).filter((n) => !n.startsWith('.')), ['basestation']);
  const installed = JSON.parse(readFileSync(path.join(pkg.dir, 'node_modules/basestation/package.json'), 'utf8'));
  assert.equal(installed.version, manifest.version);
});

test('import "basestation" in Node: a message to the real broker', () => {
  const r = run('main.mjs', `
import { BasestationClient, BasestationError, memoryStorage } from 'basestation';
import Default from 'basestation';
import WebSocket from ${JSON.stringify(path.join(ROOT, 'node_modules/ws/wrapper.mjs'))};
if (Default !== BasestationClient || typeof BasestationError !== 'function') throw new Error('exports');
const c = new BasestationClient({ url: ${JSON.stringify(srv.url())}, uid: 'pat', token: ${JSON.stringify(token(srv.db, 'pat'))}, WebSocket, storage: memoryStorage() });
await c.waitFor('open', 5000);
const ack = await c.send('quinn', { text: 'from the tarball' });
c.close();
console.log(JSON.stringify(ack));
`);
  assert.equal(r.status, 0, r.stderr);
  const ack = JSON.parse(r.stdout.trim());
  assert.equal(ack.type, 'ack');
  assert.ok(Number.isInteger(ack.seq) && ack.seq > 0, r.stdout);
});

test('"basestation/vue" needs its peer vue, then imports', () => {
  const probe = `import * as v from 'basestation/vue'; console.log(Object.keys(v).sort().join(','));`;
  let r = run('vue1.mjs', probe);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /Cannot find package 'vue'/);
  symlinkSync(path.join(ROOT, 'node_modules/vue'), path.join(pkg.dir, 'node_modules/vue'), 'dir');
  r = run('vue2.mjs', probe);
  assert.equal(r.status, 0, r.stderr);
  for (const name of ['useBasestation', 'useTask', 'useRoom', 'usePresence', 'createBasestation', 'BasestationClient']) {
    assert.ok(r.stdout.trim().split(',').includes(name), `${name} in ${r.stdout}`);
  }
});

test('TypeScript finds the types through exports', { skip: noTsc, timeout: 120000 }, () => {
  if (!existsSync(path.join(pkg.dir, 'node_modules/vue'))) {
    symlinkSync(path.join(ROOT, 'node_modules/vue'), path.join(pkg.dir, 'node_modules/vue'), 'dir');
  }
  writeFileSync(path.join(pkg.dir, 'index.ts'), `
import { BasestationClient, type AckFrame, type Task } from 'basestation';
import { useTask, useRoom } from 'basestation/vue';
const c = new BasestationClient({ url: 'ws://127.0.0.1:8080/ws', autoConnect: false });
const ack: Promise<AckFrame> = c.send('bob', { text: 'hi' });
const snap: Promise<Task> = c.subscribe(1);
// @ts-expect-error: not an event
c.on('nope', () => {});
export function setup() { const { task } = useTask(1, { client: c }); const { send } = useRoom('r', { client: c }); return { task, send, ack, snap }; }
`);
  writeFileSync(path.join(pkg.dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], types: [], skipLibCheck: false },
    files: ['index.ts'],
  }));
  const r = spawnSync(TSC, ['--noEmit', '--strict', '-p', 'tsconfig.json'], { cwd: pkg.dir, encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
