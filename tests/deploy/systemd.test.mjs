// deploy/systemd/basestation.service, checked without a running systemd:
//   - `systemd-analyze verify` accepts it (ExecStart pointed at the built
//     binary, the man page of Documentation= found in docs/) with no warning;
//   - `systemd-analyze security --offline` rates its sandbox;
//   - the broker started the way the unit starts it (its Environment= lines
//     plus the shipped env.example, its WorkingDirectory, its LimitNOFILE,
//     as an unprivileged user like DynamicUser) works: keys, trusted proxy,
//     database path, descriptor limit;
//   - every system call it makes during a full session (WebSocket, HTTP API,
//     admin SQL, graceful stop) is allowed by the unit's SystemCallFilter=
//     (strace; the filter would otherwise fail those calls with EPERM).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, Client, sleep, needTool, freePort } from '../blackbox/lib.mjs';

const SOURCE = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
const UNIT_PATH = path.join(SOURCE, 'deploy/systemd/basestation.service');
const UNIT = fs.readFileSync(UNIT_PATH, 'utf8');
const ENV_EXAMPLE = fs.readFileSync(path.join(SOURCE, 'deploy/systemd/env.example'), 'utf8');

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
// A missing tool skips its part, except under CI=true, where it fails.
const noAnalyze = needTool('systemd-analyze', 'Debian package systemd');
const noStrace = needTool('strace', 'Debian package strace');
needTool('prlimit', 'Debian package util-linux: starts the broker with the unit\'s LimitNOFILE');
const isRoot = process.getuid() === 0;
// A sanitizer build (scripts/test --sanitize) makes system calls of its own,
// and LeakSanitizer cannot work under ptrace: trace only the plain build.
const sanitized = /lib[a-z]*san\.so/.test(spawnSync('ldd', [BIN], { encoding: 'utf8' }).stdout || '');
const noTrace = noStrace || (sanitized ? 'a sanitizer build: system calls are checked with the plain build' : false);

// Key=value lines of the unit (repeated keys kept in order).
const directives = UNIT.split('\n').filter((l) => /^[A-Z]\w*=/.test(l)).map((l) => {
  const i = l.indexOf('=');
  return [l.slice(0, i), l.slice(i + 1)];
});
const values = (k) => directives.filter(([key]) => key === k).map(([, v]) => v);
const value = (k) => { const v = values(k); assert.equal(v.length, 1, k); return v[0]; };

let tmp;
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bs-systemd-')); fs.chmodSync(tmp, 0o755); });
after(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

test('the unit has the hardening and the settings the docs promise', () => {
  const want = {
    Type: 'exec', DynamicUser: 'yes', StateDirectory: 'basestation', WorkingDirectory: '/var/lib/basestation',
    NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes',
    PrivateDevices: 'yes', RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX', CapabilityBoundingSet: '',
    LimitNOFILE: '65536', EnvironmentFile: '-/etc/basestation/env', KillSignal: 'SIGTERM',
    TimeoutStopSec: '10', Restart: 'on-failure', ExecStart: '/usr/local/bin/basestation serve',
  };
  for (const [k, v] of Object.entries(want)) assert.equal(value(k), v, k);
  assert.deepEqual(values('SystemCallFilter'), ['@system-service', '~@privileged']);
  const env = Object.fromEntries(values('Environment').map((e) => e.split(/=(.*)/s).slice(0, 2)));
  assert.equal(env.BASESTATION_DB, '/var/lib/basestation/basestation.db');
  // The broker needs a descriptor per connection, plus a few of its own.
  assert.ok(Number(env.BASESTATION_MAX_CONNECTIONS) < Number(value('LimitNOFILE')) - 100);
});

test('systemd-analyze verify accepts the unit without a word', { skip: noAnalyze }, () => {
  const unit = UNIT.replace(/^ExecStart=\/usr\/local\/bin\/basestation /m, `ExecStart=${BIN} `);
  assert.notEqual(unit, UNIT);
  const file = path.join(tmp, 'basestation.service');
  fs.writeFileSync(file, unit);
  const args = ['verify'];
  const env = { ...process.env };
  if (have('man')) {
    // Documentation=man:basestation(1) is checked with man(1): give it the
    // page meson installs.
    fs.mkdirSync(path.join(tmp, 'man/man1'), { recursive: true });
    fs.copyFileSync(path.join(SOURCE, 'docs/basestation.1'), path.join(tmp, 'man/man1/basestation.1'));
    env.MANPATH = path.join(tmp, 'man');
  } else {
    args.push('--man=no');
  }
  const r = spawnSync('systemd-analyze', [...args, file], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((r.stdout + r.stderr).trim(), '', 'verify printed warnings');
});

test('systemd-analyze security rates the sandbox 2.0 or better', { skip: noAnalyze }, (t) => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT_PATH], { encoding: 'utf8' });
  if (/unrecognized option|Unknown option/.test(r.stderr)) { t.skip('systemd-analyze security has no --offline (systemd < 250)'); return; }
  const m = /Overall exposure level for basestation\.service: (\d+\.\d+)/.exec(r.stdout);
  assert.ok(m, r.stdout + r.stderr);
  t.diagnostic(`exposure ${m[1]}`);
  assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}:\n${r.stdout}`);
});

// ---- system calls ------------------------------------------------------------

// The names in a systemd syscall group, groups expanded.
function syscallGroups() {
  const out = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager'], { encoding: 'utf8' }).stdout;
  const groups = {};
  let cur = null;
  for (const line of out.split('\n')) {
    if (/^@\S+$/.test(line)) { cur = groups[line] = []; continue; }
    const m = /^\s+([@\w-]+)$/.exec(line);
    if (m && cur) cur.push(m[1]);
  }
  const expand = (g, seen = new Set()) => {
    const set = new Set();
    for (const x of groups[g] || []) {
      if (x.startsWith('@')) { if (!seen.has(x)) { seen.add(x); for (const y of expand(x, seen)) set.add(y); } } else set.add(x);
    }
    return set;
  };
  return { groups, expand };
}

function allowedSyscalls() {
  const { groups, expand } = syscallGroups();
  const filters = values('SystemCallFilter');
  assert.ok(groups[filters[0]], `unknown group ${filters[0]}`);
  const allowed = expand(filters[0]);
  for (const f of filters.slice(1)) {
    assert.ok(f.startsWith('~'), f);
    for (const x of expand(f.slice(1))) allowed.delete(x);
  }
  return allowed;
}

function envFile(text) {
  const env = {};
  for (const l of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(l.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

test('started as the unit starts it: settings apply, descriptor limit raised, only allowed system calls', { timeout: 60000 }, async (t) => {
  const dir = path.join(tmp, 'state'); // WorkingDirectory / StateDirectory
  fs.mkdirSync(dir);
  if (isRoot) fs.chownSync(dir, 65534, 65534); // run as nobody, like a DynamicUser
  const httpPort = await freePort();
  // Environment= first, then the env file overrides (systemd's order).
  const env = {};
  for (const e of values('Environment')) { const [k, v] = e.split(/=(.*)/s); env[k] = v; }
  Object.assign(env, envFile(ENV_EXAMPLE));
  assert.ok(env.BASESTATION_API_KEY && env.BASESTATION_ADMIN_KEY, 'env.example sets both keys');
  assert.equal(env.BASESTATION_LISTEN, '127.0.0.1:8080');
  assert.equal(env.BASESTATION_HTTP, '127.0.0.1:8081');
  env.BASESTATION_LISTEN = '127.0.0.1:0';
  env.BASESTATION_HTTP = `127.0.0.1:${httpPort}`;
  env.BASESTATION_DB = env.BASESTATION_DB.replace('/var/lib/basestation', dir);
  const exec = value('ExecStart').split(' ');
  exec[0] = BIN;

  const nofile = Number(value('LimitNOFILE'));
  const hard = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 0;
  // Raising the hard limit needs CAP_SYS_RESOURCE, which a container's root
  // may lack: then the machine's hard limit stands in for LimitNOFILE.
  const want = Math.min(nofile, hard || nofile);
  // A soft limit below the hard one shows that the broker raises it.
  const pre = ['prlimit', `--nofile=1024:${want}`, '--'];
  const straceOut = path.join(tmp, 'strace.txt');
  const traced = !noTrace;
  const cmd = [...pre, ...(traced ? ['strace', '-f', '-qq', '-o', straceOut, ...(isRoot ? ['-u', 'nobody'] : []), '--'] : []), ...exec];
  const proc = spawn(cmd[0], cmd.slice(1), {
    cwd: dir, stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d; });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  let brokerPid = null;
  try {
    const wsPort = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not ready:\n' + logs)), 15000);
      proc.stderr.on('data', () => {
        const m = /event=server\.ready .*ws_port=(\d+)/.exec(logs);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      proc.on('exit', () => { clearTimeout(timer); reject(new Error('exited:\n' + logs)); });
    });
    // The broker: the traced child of strace, or the process itself.
    brokerPid = proc.pid;
    if (traced) {
      for (let i = 0; i < 50; i++) {
        const kids = fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim();
        if (kids) { brokerPid = Number(kids.split(' ')[0]); break; }
        await sleep(20);
      }
    }
    assert.match(fs.readFileSync(`/proc/${brokerPid}/cmdline`, 'utf8'), /basestation\0serve/);
    assert.match(logs, new RegExp(`db=${env.BASESTATION_DB.replace(/[.]/g, '\\.')} `));
    const lim = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync(`/proc/${brokerPid}/limits`, 'utf8'));
    assert.deepEqual([Number(lim[1]), Number(lim[2])], [want, want], 'soft descriptor limit raised to the hard one');

    // A full session.
    const H = `http://127.0.0.1:${httpPort}`;
    const api = async (method, p, body, key = env.BASESTATION_API_KEY) => {
      const res = await fetch(H + p, { method, headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    for (const p of ['/healthz', '/metrics', '/', '/admin']) assert.equal((await fetch(H + p)).status, 200, p);
    const alice = await api('POST', '/api/tokens', { uid: 'alice' });
    assert.equal(alice.status, 201, 'the API key from env.example works');
    const bob = await api('POST', '/api/tokens', { uid: 'bob', role: 'producer' });
    const a = new Client(`ws://127.0.0.1:${wsPort}/ws?token=${alice.json.token}`, { headers: { 'X-Forwarded-For': '6.6.6.6' } });
    await a.opened; await a.next('connect');
    const b = new Client(`ws://127.0.0.1:${wsPort}/ws?token=${bob.json.token}`);
    await b.opened; await b.next('connect');
    assert.match(logs, /uid=alice .*remote=6\.6\.6\.6/, 'BASESTATION_TRUSTED_PROXIES=127.0.0.1 applies');
    a.send({ type: 'join', room: 'r', ref: 1 }); await a.next('joined');
    b.send({ type: 'join', room: 'r', ref: 2 }); await b.next('joined');
    b.send({ type: 'publish', room: 'r', data: { x: 1 }, ref: 3 }); await b.next('ack'); await a.next('message');
    b.send({ type: 'send', to: 'alice', data: 'hi', ref: 4 }); await b.next('ack'); await a.next('message');
    a.send({ type: 'ping', ref: 5 }); await a.next('pong');
    assert.equal((await api('POST', '/api/publish', { to: 'alice', data: { y: 2 } })).status, 200);
    await a.next('message');
    assert.equal((await api('POST', '/api/tasks', { id: 'job', title: 'Job', steps: ['one', 'two'], owner: 'alice' })).status, 201);
    a.send({ type: 'subscribe', task: 'job', ref: 6 }); await a.next('task');
    assert.equal((await api('POST', '/api/tasks/job/progress', { step: 0, status: 'running' })).status, 200);
    await a.next('task');
    assert.equal((await api('GET', '/api/tasks/job')).status, 200);
    assert.equal((await api('GET', '/admin/connections', undefined, env.BASESTATION_ADMIN_KEY)).status, 200);
    assert.equal((await api('POST', '/admin/sql', { sql: 'SELECT count(*) FROM messages' }, env.BASESTATION_ADMIN_KEY)).status, 200);
    await a.close();
    const again = new Client(`ws://127.0.0.1:${wsPort}/ws?token=${alice.json.token}&since=0`);
    await again.opened; await again.next('resumed');
    // b stays connected: the graceful stop closes it with 1001.
    const bClosed = b.closed;
    await again.close();
    process.kill(brokerPid, 'SIGTERM');
    assert.equal((await bClosed).code, 1001);
    let timer;
    const r = await Promise.race([exited, new Promise((res) => { timer = setTimeout(res, 10000, null); })]); // TimeoutStopSec=10
    clearTimeout(timer);
    assert.deepEqual(r, { code: 0, sig: null }, logs);
  } finally {
    if (brokerPid) try { process.kill(brokerPid, 'SIGKILL'); } catch {}
    try { proc.kill('SIGKILL'); } catch {}
  }

  if (!traced) { t.diagnostic(noTrace + ': system calls not checked'); return; }
  if (noAnalyze) { t.diagnostic(noAnalyze + ': system calls not checked'); return; }
  const allowed = allowedSyscalls();
  const used = new Map();
  for (const line of fs.readFileSync(straceOut, 'utf8').split('\n')) {
    const m = /^(\d+)\s+([a-z_0-9]+)\(/.exec(line);
    if (m) used.set(m[2], (used.get(m[2]) || 0) + 1);
  }
  // systemd installs the filter before execve, so the dynamic loader's
  // calls count as well.
  assert.ok(used.size > 20, `too few system calls seen (${used.size})`);
  const refused = [...used.keys()].filter((s) => !allowed.has(s));
  t.diagnostic(`${used.size} distinct system calls, all checked against SystemCallFilter=${values('SystemCallFilter').join(' ')}`);
  assert.deepEqual(refused, [], 'system calls the unit would refuse: ' + refused.join(' '));
});
