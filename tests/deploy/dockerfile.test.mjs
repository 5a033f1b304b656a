// deploy/Dockerfile without a Docker engine: do what its stages do, as far
// as this Debian 12 machine can.
//   - the build context is the source tree filtered by .dockerignore, and the
//     builder's meson RUN line, run as written (paths moved to a temp dir),
//     builds and installs from that context alone;
//   - every shared library the installed binary needs comes from a package
//     the runtime stage installs (or one every debian:12-slim has);
//   - the package names of both stages exist in Debian 12;
//   - the CMD starts the broker (ports moved to free ones) and the
//     HEALTHCHECK command says healthy, then unhealthy once it stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const SOURCE = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
const DOCKERFILE = fs.readFileSync(path.join(SOURCE, 'deploy/Dockerfile'), 'utf8');
const IGNORE = fs.readFileSync(path.join(SOURCE, '.dockerignore'), 'utf8');
const osRelease = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
const debian12 = /^ID=debian$/m.test(osRelease) && /^VERSION_ID="?12"?$/m.test(osRelease);
const notDebian = debian12 ? false : 'needs a Debian 12 machine (the image is Debian 12)';

// ---- the Dockerfile, parsed ---------------------------------------------------

// Instructions per stage, continuation lines joined, comments dropped.
function parse(text) {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages = [];
  for (const l of lines) {
    const [, kw, rest] = /^(\S+)\s*(.*)$/.exec(l);
    if (kw.toUpperCase() === 'FROM') stages.push({ from: rest, ins: [] });
    stages.at(-1).ins.push({ kw: kw.toUpperCase(), rest: rest.replace(/\s+/g, ' ') });
  }
  return stages;
}
const stages = parse(DOCKERFILE);
const [builder, runtime] = stages;
const aptPackages = (stage) => stage.ins.filter((i) => i.kw === 'RUN' && /apt-get install/.test(i.rest))
  .flatMap((i) => /apt-get install (.*?)(?:&&|$)/.exec(i.rest)[1].split(' ').filter((w) => w && !w.startsWith('-')));
const one = (stage, kw) => stage.ins.filter((i) => i.kw === kw).map((i) => i.rest);

// ---- .dockerignore, the subset of its syntax this file uses -----------------

const ignoreRes = IGNORE.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((p) => {
  assert.doesNotMatch(p, /^!|[[\]\\]/, `.dockerignore pattern ${p} needs a fuller matcher in this test`);
  const src = p.replace(/^\/+/, '').split('/').map((seg) => (seg === '**' ? '(?:.*/)?'
    : seg.replace(/[.+^${}()|]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]') + '/')).join('').replace(/\/$/, '');
  return new RegExp('^' + src + '(?:/|$)');
});
const ignored = (rel) => ignoreRes.some((re) => re.test(rel));

function copyContext(dir, rel = '') {
  const out = [];
  for (const e of fs.readdirSync(path.join(SOURCE, rel), { withFileTypes: true })) {
    const r = rel ? rel + '/' + e.name : e.name;
    if (ignored(r)) continue;
    if (e.isDirectory()) { fs.mkdirSync(path.join(dir, r)); out.push(...copyContext(dir, r)); }
    else if (e.isFile()) { fs.copyFileSync(path.join(SOURCE, r), path.join(dir, r)); out.push(r); }
  }
  return out;
}

function installed(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && /install ok installed/.test(r.stdout);
}

let tmp, ctx, stage, contextFiles, buildLog = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bs-docker-'));
  ctx = path.join(tmp, 'src');
  stage = path.join(tmp, 'stage');
  fs.mkdirSync(ctx);
});
after(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

test('shape: two Debian 12 stages, non-root, volume, ports, healthcheck, SIGTERM', () => {
  assert.equal(stages.length, 2);
  assert.match(builder.from, /^debian:12-slim AS build$/);
  assert.equal(runtime.from, 'debian:12-slim');
  // libevent-openssl (and the core it links) for an https --auth-url, and
  // the CA certificates its backend's certificate is checked against.
  // libnats and libevent's pthread locking for --cluster (engine/nats.c).
  // liburing for --io uring (net/uring.c).
  assert.deepEqual(aptPackages(runtime).sort(), ['ca-certificates', 'libevent-2.1-7', 'libevent-core-2.1-7',
    'libevent-openssl-2.1-7', 'libevent-pthreads-2.1-7', 'libjansson4', 'libnats3.4', 'libprotobuf-c1', 'libsqlite3-0', 'libssl3',
    'liburing2', 'zlib1g']);
  assert.match(one(runtime, 'USER')[0], /^basestation$/);
  assert.deepEqual(one(runtime, 'VOLUME'), ['["/var/lib/basestation"]']);
  assert.deepEqual(one(runtime, 'EXPOSE'), ['8080 8081']);
  assert.deepEqual(one(runtime, 'STOPSIGNAL'), ['SIGTERM']);
  assert.equal(one(runtime, 'HEALTHCHECK').length, 1);
  for (const s of stages) for (const r of one(s, 'RUN').filter((x) => /apt-get install/.test(x))) {
    assert.match(r, /--no-install-recommends/);
    assert.match(r, /rm -rf \/var\/lib\/apt\/lists\/\*/);
  }
});

test('package names of both stages are Debian 12 packages (installed here by scripts/setup)', { skip: notDebian }, () => {
  const missing = [...aptPackages(builder), ...aptPackages(runtime)].filter((p) => !installed(p));
  assert.deepEqual(missing, [], 'not installed here: ' + missing.join(' '));
});

test('the builder RUN line builds and installs from the .dockerignore-filtered context', { timeout: 300000 }, () => {
  contextFiles = copyContext(ctx);
  assert.ok(contextFiles.includes('meson.build'));
  assert.ok(!contextFiles.some((f) => /^(build|node_modules|bench|\.git)\//.test(f)), 'context has build output or packages');
  assert.ok(!contextFiles.some((f) => /\.db(-wal|-shm|-journal)?$/.test(f)), 'context has a database');
  const runs = one(builder, 'RUN').filter((r) => /meson setup/.test(r));
  assert.equal(runs.length, 1);
  assert.deepEqual(one(builder, 'WORKDIR'), ['/src']);
  const cmd = runs[0].replaceAll(' /build', ' ' + path.join(tmp, 'build')).replaceAll(' /stage', ' ' + stage);
  const r = spawnSync('bash', ['-ec', cmd], { cwd: ctx, encoding: 'utf8', timeout: 280000 });
  buildLog = r.stdout + r.stderr;
  assert.equal(r.status, 0, 'build failed:\n' + buildLog.slice(-4000));
  for (const f of ['usr/local/bin/basestation', 'usr/local/share/basestation/web/index.html',
    'usr/local/share/basestation/web/admin/index.html', 'usr/local/share/basestation/schema/001_init.sql',
    'usr/local/share/man/man1/basestation.1']) {
    assert.ok(fs.existsSync(path.join(stage, f)), `${f} not installed`);
  }
  // The runtime stage copies exactly this tree.
  assert.deepEqual(one(runtime, 'COPY'), ['--from=build /stage/usr/local/ /usr/local/']);
  assert.deepEqual(fs.readdirSync(stage), ['usr']);
  assert.deepEqual(fs.readdirSync(path.join(stage, 'usr')), ['local']);
});

test('the JavaScript client is installed for /client/ (when the source has one)', {
  todo: fs.existsSync(path.join(SOURCE, 'clients/js/basestation.js')) &&
    !/clients/.test(fs.readFileSync(path.join(SOURCE, 'meson.build'), 'utf8')) ? 'meson.build does not install clients/js yet' : false,
}, () => {
  if (!fs.existsSync(path.join(SOURCE, 'clients/js/basestation.js'))) return;
  assert.ok(fs.existsSync(path.join(stage, 'usr/local/share/basestation/clients/js/basestation.js')));
});

test('every shared library of the binary comes from a runtime package', { skip: notDebian }, () => {
  const bin = path.join(stage, 'usr/local/bin/basestation');
  assert.ok(fs.existsSync(bin), 'no installed binary (the build test failed)');
  const ldd = execFileSync('ldd', [bin], { encoding: 'utf8' });
  const pkgs = new Set();
  for (const m of ldd.matchAll(/=> (\/\S+)/g)) {
    // dpkg knows a file by the path its package ships (/lib or /usr/lib:
    // merged /usr), so try the variants.
    const real = fs.realpathSync(m[1]);
    const cands = [m[1], real, real.replace(/^\/usr\//, '/'), m[1].replace(/^\/lib/, '/usr/lib')];
    const owner = cands.map((c) => spawnSync('dpkg', ['-S', c], { encoding: 'utf8' }))
      .find((r) => r.status === 0);
    assert.ok(owner, `no package owns ${m[1]}`);
    pkgs.add(owner.stdout.split(':')[0]);
  }
  assert.ok(pkgs.size >= 4, ldd);
  const rt = new Set(aptPackages(runtime));
  // libc6 (libc, libm, the loader) is in every debian:12-slim: its essential
  // packages depend on it. Anything else must be installed by the stage.
  const notCovered = [...pkgs].filter((p) => !rt.has(p) && p !== 'libc6');
  assert.deepEqual(notCovered, [], `libraries from packages the runtime stage lacks:\n${ldd}`);
});

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

test('CMD starts the broker; HEALTHCHECK is healthy while it runs, unhealthy after', async () => {
  const bin = path.join(stage, 'usr/local/bin/basestation');
  assert.ok(fs.existsSync(bin), 'no installed binary (the build test failed)');
  const entry = JSON.parse(one(runtime, 'ENTRYPOINT')[0]);
  assert.deepEqual(entry, ['/usr/local/bin/basestation']);
  const httpPort = await freePort();
  const db = path.join(tmp, 'data', 'basestation.db');
  fs.mkdirSync(path.dirname(db));
  const args = JSON.parse(one(runtime, 'CMD')[0]).map((a) => a
    .replace('0.0.0.0:8080', '127.0.0.1:0').replace('0.0.0.0:8081', `127.0.0.1:${httpPort}`)
    .replace('/var/lib/basestation/basestation.db', db));
  assert.equal(args[0], 'serve');
  const hc = /^(?:--\S+ )*CMD (\[.*\])$/.exec(one(runtime, 'HEALTHCHECK')[0]);
  assert.ok(hc, 'HEALTHCHECK in exec form');
  const check = JSON.parse(hc[1]).map((a) => a.replace('/dev/tcp/127.0.0.1/8081', `/dev/tcp/127.0.0.1/${httpPort}`));
  const runCheck = () => spawnSync(check[0], check.slice(1), { encoding: 'utf8', timeout: 5000 }).status;

  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  try {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not ready:\n' + logs)), 10000);
      proc.stderr.on('data', (d) => { logs += d; if (/event=server\.ready/.test(logs)) { clearTimeout(t); resolve(); } });
      proc.on('exit', () => { clearTimeout(t); reject(new Error('exited:\n' + logs)); });
    });
    assert.match(logs, new RegExp(`http_port=${httpPort} db=${db.replace(/[.]/g, '\\.')}`));
    assert.equal(runCheck(), 0, 'healthcheck failed against a running broker');
  } finally {
    proc.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  assert.notEqual(runCheck(), 0, 'healthcheck passed with no broker');
});
