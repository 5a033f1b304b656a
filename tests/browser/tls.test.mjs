// The demo page served over https:// (--tls-cert) in Chromium: it connects
// to the WebSocket port over wss:// (the page picks wss on an https page) and
// a direct message goes through. The certificate is self-signed, made here
// by the openssl CLI; Chromium runs with --ignore-certificate-errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { skipReason, launch, newPage, demoUrl, waitState, startServer, token, needTool, selfSignedPair } from './lib.mjs';

const skip = skipReason || needTool('openssl', 'makes the test certificate');
let srv, browser, dir;
before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'bs-tls-browser-'));
  const pair = selfSignedPair(dir, 'browser');
  srv = await startServer({ args: ['--tls-cert', pair.cert, '--tls-key', pair.key] });
  srv.http = `https://127.0.0.1:${srv.httpPort}`;
  browser = await launch(['--ignore-certificate-errors']);
});
after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('an https:// page talks to the broker over wss://', { skip, timeout: 60000 }, async () => {
  const alice = await newPage(browser.ctx);
  const bob = await newPage(browser.ctx);
  const sockets = [];
  alice.on('websocket', (ws) => sockets.push(ws.url()));
  await alice.goto(demoUrl(srv, 'alice', token(srv.db, 'alice')));
  await bob.goto(demoUrl(srv, 'bob', token(srv.db, 'bob')));
  await waitState(alice, 'open');
  await waitState(bob, 'open');
  assert.equal(await alice.evaluate(() => location.protocol), 'https:');
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(`wss://127.0.0.1:${srv.wsPort}/ws`)), JSON.stringify(sockets));

  await alice.fill('#dm-to', 'bob');
  await alice.fill('#dm-text', 'over TLS');
  await alice.click('#dm-send');
  const got = bob.locator('#messages .msg.in', { hasText: 'over TLS' });
  await got.waitFor({ timeout: 5000 });
  assert.equal(await got.getAttribute('data-from'), 'alice');
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});
