// Static pages on the HTTP port: / and /admin as HTML, their assets and
// /client/basestation.js with the right types, HEAD, 404 for unknown files,
// and no path traversal in any spelling (sent raw: fetch would normalise).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync, readFileSync, openSync, closeSync, constants as fsConstants } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, httpExchange, connect } from './lib.mjs';

const ROOT = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

const get = (p, method = 'GET') => fetch(srv.http + p, { method });
const raw = (s, target, method = 'GET') => httpExchange(s.httpPort,
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, 3000);

// Text that would show that a file outside the web root was served.
const SECRETS = [/project\(\s*'basestation'/, /root:.*:0:0:/, /^# basestation/m, /Two commands/];

test('/ and /admin are HTML; assets have their types', async () => {
  for (const p of ['/', '/index.html', '/admin', '/admin/', '/admin/index.html']) {
    const r = await get(p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), /^text\/html(;|$)/, p);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.match(await r.text(), /<html|<!doctype html/i, p);
  }
  assert.notEqual(await (await get('/')).text(), await (await get('/admin')).text());
  const types = { '.js': /^text\/javascript/, '.css': /^text\/css/ };
  for (const p of ['/app.js', '/style.css', '/admin/admin.js']) {
    if (!existsSync(path.join(ROOT, 'web', p))) continue;
    const r = await get(p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), types[path.extname(p)], p);
    assert.equal(await r.text(), readFileSync(path.join(ROOT, 'web', p), 'utf8'), p);
  }
  // the console page is public; what it fetches is not
  assert.equal((await get('/admin/connections')).status, 401);
});

test('/client/basestation.js is served as JavaScript when it exists', async () => {
  const file = path.join(ROOT, 'clients/js/basestation.js');
  const r = await get('/client/basestation.js');
  if (!existsSync(file)) {
    assert.equal(r.status, 404);
    return;
  }
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/javascript/);
  assert.equal(await r.text(), readFileSync(file, 'utf8'));
  assert.equal((await get('/client/')).status, 404);
  assert.equal((await get('/client/nope.js')).status, 404);
});

test('HEAD answers like GET without a body; unknown files are 404', async () => {
  const h = await raw(srv, '/', 'HEAD');
  assert.equal(h.status, 200);
  assert.match(h.headers['content-type'], /^text\/html/);
  assert.equal(h.text.slice(h.text.indexOf('\r\n\r\n') + 4), '');
  // under /admin/ what is not a console file is the keyed admin API
  assert.equal((await get('/admin/nope.js')).status, 401);
  for (const p of ['/nope.html', '/web/index.html', '/index.htm', '/index.html/x', '/.git/config', '/favicon.ico']) {
    const r = await get(p);
    assert.equal(r.status, 404, p);
    await r.text();
  }
  assert.equal((await get('/nope.html', 'HEAD')).status, 404);
  // keep-alive: a HEAD answer carries no body, so the next answer on the
  // same connection parses (pipelined)
  const two = await httpExchange(srv.httpPort,
    'HEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3000);
  const parts = two.text.split(/(?=HTTP\/1\.1 )/);
  assert.equal(parts.length, 3, two.text.slice(0, 500));
  assert.match(parts[0], /Content-Length: [1-9]\d*\r\n/);
  assert.ok(parts[0].endsWith('\r\n\r\n'));
  assert.match(parts[1], /^HTTP\/1\.1 200 .*\r\nContent-Length: 16\r\n[^]*\r\n\r\n$/s);
  assert.ok(parts[2].endsWith('\r\n\r\n{"status":"ok"}\n'));
  for (const m of ['POST', 'PUT', 'DELETE']) {
    const r = await get('/', m);
    assert.equal(r.status, 405, m);
    await r.text();
  }
});

test('path traversal is refused in every spelling and never leaks a file', async () => {
  const targets = [
    '/../meson.build', '/%2e%2e/meson.build', '/%2E%2E/meson.build', '/..%2fmeson.build', '/..%2Fmeson.build',
    '/.%2e/meson.build', '/%2e./meson.build', '/admin/../../README.md', '/admin/%2e%2e/%2e%2e/README.md',
    '/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/client/../../README.md', '/client/%2e%2e/%2e%2e/README.md', '/client/..%2f..%2fREADME.md',
    '/client/%2e%2e%2f%2e%2e%2fmeson.build', '/client/../../../../../../etc/passwd',
    '//etc/passwd', '///etc/passwd', '/%2fetc%2fpasswd', '/%2F%2Fetc/passwd', '/etc/passwd',
    '/index.html%00.js', '/index.html%00', '/%00', '/admin/index.html%00.png',
    '/..\\meson.build', '/..%5cmeson.build', '/..%5Cmeson.build', '/client/..%5c..%5cREADME.md', '/\\etc\\passwd',
    '/%252e%252e/meson.build', '/%c0%ae%c0%ae/meson.build', '/%uff0e%uff0e/meson.build',
    '/./index.html/../../meson.build', '/admin/./../../README.md',
    'http://127.0.0.1/../meson.build', 'http://127.0.0.1/%2e%2e/README.md',
    '../meson.build', '*', 'meson.build',
    '/' + 'a/'.repeat(3000) + 'index.html', '/' + '../'.repeat(2000) + 'etc/passwd', '/' + 'x'.repeat(8000),
  ];
  for (const t of targets) {
    const r = await raw(srv, t);
    assert.ok(r.status !== null && r.status >= 400 && r.status < 500, `${t.slice(0, 60)}: ${r.status}`);
    for (const s of SECRETS) assert.doesNotMatch(r.text, s, t.slice(0, 60));
  }
  // a request line over the header limit is refused, the server lives on
  const huge = await raw(srv, '/' + 'y'.repeat(40000));
  assert.ok(huge.status === null || huge.status >= 400, String(huge.status));
  assert.equal((await get('/')).status, 200);
});

test('a custom --web-root: symlinks out of it, dot files and directories are not served', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-web-'));
  const outside = mkdtempSync(path.join(tmpdir(), 'bs-outside-'));
  writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>custom</title>');
  mkdirSync(path.join(dir, 'admin'));
  writeFileSync(path.join(dir, 'admin/index.html'), '<!doctype html><title>custom admin</title>');
  mkdirSync(path.join(dir, 'sub'));
  writeFileSync(path.join(dir, 'sub/a.txt'), 'inside');
  writeFileSync(path.join(outside, 'secret.txt'), 'Two commands: secret');
  writeFileSync(path.join(dir, '.env'), 'Two commands: dot file');
  mkdirSync(path.join(dir, '.hidden'));
  writeFileSync(path.join(dir, '.hidden/x.txt'), 'Two commands: hidden dir');
  symlinkSync(path.join(outside, 'secret.txt'), path.join(dir, 'escape.txt'));
  symlinkSync(outside, path.join(dir, 'outdir'));
  symlinkSync('sub/a.txt', path.join(dir, 'alias.txt'));
  const s = await startServer({ args: ['--web-root', dir] });
  try {
    let r = await fetch(s.http + '/');
    assert.match(await r.text(), /custom/);
    r = await fetch(s.http + '/sub/a.txt');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    assert.equal(await r.text(), 'inside');
    r = await fetch(s.http + '/alias.txt'); // a link that stays inside
    assert.equal(r.status, 200);
    for (const p of ['/escape.txt', '/outdir/secret.txt', '/.env', '/.hidden/x.txt', '/sub', '/sub/', '/admin/..%2f.env', '/%2eenv', '/sub/.%2e/.env']) {
      const x = await raw(s, p);
      assert.ok(x.status === 404 || (p.startsWith('/admin/') && x.status === 401), `${p}: ${x.status}`);
      for (const re of SECRETS) assert.doesNotMatch(x.text, re, p);
    }
  } finally {
    await s.cleanup();
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  }
});

test('a FIFO (or anything not a regular file) in the web root is 404 at once; the loop never waits on it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-web-'));
  writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>fifo root</title>');
  const fifo = path.join(dir, 'pipe.txt');
  execFileSync('mkfifo', [fifo]); // coreutils: a missing tool fails the test
  const s = await startServer({ args: ['--web-root', dir] });
  try {
    // opening a FIFO for reading would block until a writer comes
    const r = await raw(s, '/pipe.txt');
    assert.ok(r.status === 404 || r.status === 403, `GET of a FIFO: ${r.status} after ${r.ms} ms`);
    assert.ok(r.closed || r.status !== null);
    // the broker keeps answering: HTTP and WebSocket
    assert.equal((await fetch(s.http + '/')).status, 200);
    const h = await raw(s, '/pipe.txt', 'HEAD');
    assert.equal(h.status, 404);
    const c = await connect(s, 'fifo-user');
    c.send({ type: 'ping' });
    await c.next('pong');
    await c.close();
  } finally {
    // a loop stuck in open() of the FIFO is released by a writer
    try { closeSync(openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK)); } catch {}
    await s.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
