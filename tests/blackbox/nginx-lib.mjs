// Debian's real nginx in front of a test broker, configured FROM the shipped
// deploy/nginx/basestation.conf: only the ports and the listen address are
// changed, and proxy_read_timeout is lowered (READ_TIMEOUT_S) so that tests
// of idle timeouts are short. Used by tests/blackbox/nginx.test.mjs and the
// browser tests that go through nginx.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep, needTool, freePort } from './lib.mjs';

export const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';
const SOURCE = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
export const SHIPPED = path.join(SOURCE, 'deploy/nginx/basestation.conf');
export const MAP = path.join(SOURCE, 'deploy/nginx/basestation-upgrade-map.conf');
export const READ_TIMEOUT_S = 3;
// Missing nginx: a reason to skip (a failure under CI=true), else null.
export const nginxMissing = needTool(NGINX, 'Debian package nginx-light; scripts/setup installs it');

// ---- the shipped file, and the test config made from it -------------------

export const shipped = fs.readFileSync(SHIPPED, 'utf8');
export const active = shipped.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');

// Replace re in text; the number of matches must be `count` (so that a change
// of the shipped file's shape breaks this test instead of going untested).
function sub(text, re, repl, count) {
  const n = (text.match(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g')) || []).length;
  assert.equal(n, count, `${re} matched ${n} times in ${SHIPPED}, expected ${count}`);
  return text.replace(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'), repl);
}

function nginxConfig(dir, { port, wsPort, httpPort, tls }) {
  let block = shipped;
  block = sub(block, /^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${port};`, 1);
  block = sub(block, /^\s*listen \[::\]:80;\n/m, '', 1);
  block = sub(block, /^(\s*proxy_read_timeout )\d+s;$/m, `$1${READ_TIMEOUT_S}s;`, 2);
  block = block.replaceAll('127.0.0.1:8080;', `127.0.0.1:${wsPort};`);
  block = block.replaceAll('127.0.0.1:8081;', `127.0.0.1:${httpPort};`);
  if (tls) {
    // Uncomment the TLS lines exactly as a user would.
    block = sub(block, /^(\s*)#(listen 443 ssl http2;)$/m, `$1listen 127.0.0.1:${tls.port} ssl http2;`, 1);
    block = sub(block, /^\s*#listen \[::\]:443 ssl http2;\n/m, '', 1);
    block = sub(block, /^(\s*)#ssl_certificate (.*)$/m, `$1ssl_certificate ${tls.cert};`, 1);
    block = sub(block, /^(\s*)#ssl_certificate_key (.*)$/m, `$1ssl_certificate_key ${tls.key};`, 1);
    block = sub(block, /^(\s*)#((?:ssl_|add_header )\S.*)$/m, '$1$2', 4);
  }
  return `worker_processes 1;
events { worker_connections 256; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${MAP};
${block}
}
`;
}

// promise, or `fallback` after ms (the timer does not outlive the race).
export function within(promise, ms, fallback = null) {
  let timer;
  return Promise.race([promise, new Promise((r) => { timer = setTimeout(r, ms, fallback); })])
    .finally(() => clearTimeout(timer));
}

export const nginxes = new Set();
// Last resort if the test process dies before the after hook: no nginx may
// outlive it (it runs in its own process group: master and worker).
process.on('exit', () => { for (const n of nginxes) { try { process.kill(-n.proc.pid, 'SIGKILL'); } catch {} } });

export async function startNginx(srv, opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bs-nginx-'));
  fs.chmodSync(dir, 0o755); // the worker may run as another user when we are root
  const port = await freePort();
  let tls = null;
  if (opts.tls) {
    tls = { port: await freePort(), cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-keyout', tls.key, '-out', tls.cert], { stdio: 'ignore' });
  }
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, nginxConfig(dir, { port, wsPort: srv.wsPort, httpPort: srv.httpPort, tls }));
  const proc = spawn(NGINX, ['-p', dir + '/', '-c', confPath, '-e', 'stderr',
    '-g', `daemon off; pid ${dir}/nginx.pid; error_log stderr info;`],
  { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const ng = { proc, dir, port, tls, logs: '', exited: false };
  proc.stderr.on('data', (d) => { ng.logs += d; });
  ng.exitedPromise = new Promise((r) => proc.on('exit', () => { ng.exited = true; r(); }));
  nginxes.add(ng);
  ng.stop = async () => {
    if (!ng.exited) {
      try { process.kill(-proc.pid, 'SIGTERM'); } catch {}
      await within(ng.exitedPromise, 3000);
    }
    if (!ng.exited) {
      try { process.kill(-proc.pid, 'SIGKILL'); } catch {}
      await within(ng.exitedPromise, 2000);
    }
    nginxes.delete(ng);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // Ready when the port accepts.
  const deadline = Date.now() + 5000;
  for (;;) {
    if (ng.exited) throw new Error('nginx exited:\n' + ng.logs);
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) { await ng.stop(); throw new Error('nginx did not listen:\n' + ng.logs); }
    await sleep(50);
  }
  ng.url = (q = '') => `ws://127.0.0.1:${port}/ws${q}`;
  return ng;
}

