// The Vue example (examples/vue: Vite + Vue 3 + Element Plus on the
// composables), built by `npm run build` and served as is by --web-root, in
// Chromium: seed 000's page (查询流程1 / 查询流程2, an el-timeline with
// 完成 / 执行中 and N.NN秒 counting up), a route change away and back (the
// task is unsubscribed while away, as the server shows, and the current
// state is there within 1 s of coming back, by the back button and by the
// link), a restart of the broker, and seed 002's two-user chat with ack
// state through the same restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { skipReason, launch, newPage, demoUrl, token, tempDb, api, sleep, ADMIN_KEY } from './lib.mjs';
import { startBroker, stopBroker } from '../client/lib.mjs';

const EXAMPLE = path.resolve(import.meta.dirname, '../../examples/vue');
const [major, minor] = process.versions.node.split('.').map(Number);
const noVite = !existsSync(path.join(EXAMPLE, 'node_modules/.bin/vite'))
  ? 'no examples/vue/node_modules (scripts/setup --test runs npm ci there)'
  : major < 20 || (major === 20 && minor < 19) ? `Vite 8 needs Node 20.19 or later, this is ${process.version}` : false;
const skip = skipReason || noVite;
if (skip && process.env.CI) throw new Error(skip);

let srv, browser, db, work, dist;
before(async () => {
  if (skip) return;
  work = mkdtempSync(path.join(tmpdir(), 'bs-vue-'));
  dist = path.join(work, 'dist');
  // The example's own build script, into a scratch directory.
  execFileSync('npm', ['run', 'build', '--', '--outDir', dist, '--emptyOutDir', '--logLevel', 'warn'], {
    cwd: EXAMPLE, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000,
  });
  assert.ok(existsSync(path.join(dist, 'index.html')));
  const t = tempDb();
  db = t;
  srv = await startBroker(t.db, { args: ['--web-root', dist] });
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (srv && !srv.exited) await stopBroker(srv);
  if (db) rmSync(db.dir, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

const restart = async () => {
  await stopBroker(srv);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort, args: ['--web-root', dist] });
};
const waitState = (page, s, timeout = 10000) => page.locator(`#state[data-state="${s}"]`).waitFor({ timeout });
const progress = async (id, body) => {
  const r = await api(srv, 'POST', `/api/tasks/${id}/progress`, body);
  assert.equal(r.status, 200, r.text);
};
// The timeline as [content, timestamp] per el-timeline-item.
const timeline = (page) => page.$$eval('#timeline .el-timeline-item', (lis) => lis.map((li) => [
  li.querySelector('.el-timeline-item__content').textContent.trim(),
  li.querySelector('.el-timeline-item__timestamp').textContent.trim(),
]));
// Wait until the timeline's contents are `want` (timestamps aside).
async function timelineIs(page, id, want, timeout) {
  await page.waitForFunction(([id, want]) => {
    const tl = document.querySelector('#timeline');
    if (!tl || tl.dataset.task !== id) return false;
    const got = [...tl.querySelectorAll('.el-timeline-item__content')].map((e) => e.textContent.trim());
    return JSON.stringify(got) === JSON.stringify(want);
  }, [id, want], { timeout });
}
async function serverTasks(uid) {
  const r = await api(srv, 'GET', '/admin/connections', undefined, ADMIN_KEY);
  return r.json.connections.filter((c) => c.uid === uid).map((c) => c.tasks);
}
const webSocketNoise = (p) => /WebSocket connection to .* failed/.test(p);

test('seed 000: 查询流程1 / 查询流程2, away and back, through a restart', { skip, timeout: 120000 }, async () => {
  let r = await api(srv, 'POST', '/api/tasks', { id: '1', title: '流程1', owner: 'alice', steps: ['准备', '执行', '完成'] });
  assert.equal(r.status, 201, r.text);
  for (let i = 0; i < 3; i++) await progress('1', { step: i, status: 'finish' });
  r = await api(srv, 'POST', '/api/tasks', { id: '2', title: '流程2', owner: 'alice', steps: ['准备', '执行', '完成'] });
  assert.equal(r.status, 201, r.text);
  await progress('2', { step: 0, status: 'running' });

  const page = await newPage(browser.ctx);
  await page.goto(demoUrl(srv, 'alice', token(srv.db, 'alice')));
  await waitState(page, 'open');
  assert.equal(await page.title(), 'basestation · Vue');

  await page.click('#query-1');
  await timelineIs(page, '1', ['准备:完成', '执行:完成', '完成:完成'], 5000);
  for (const [, ts] of await timeline(page)) assert.match(ts, /^\d+\.\d\d秒$/);

  await page.click('#query-2');
  await timelineIs(page, '2', ['准备:执行中', '执行:执行中', '完成:执行中'], 5000);
  let tl = await timeline(page);
  assert.equal(tl[1][1], '0.00秒');
  const s1 = parseFloat(tl[0][1]);
  await sleep(2200);
  const s2 = parseFloat((await timeline(page))[0][1]);
  assert.ok(s2 >= s1 + 1, `the running step counts up: ${s1} -> ${s2}`);
  assert.deepEqual(await serverTasks('alice'), [1]);
  await page.screenshot({ path: '/tmp/basestation-vue-progress.png', fullPage: true });

  // Away (the chat route): the timeline is unmounted and the task unsubscribed.
  await page.click('#nav-chat');
  await page.locator('#chat-text').waitFor();
  assert.equal(await page.locator('#timeline').count(), 0);
  for (let i = 0; (await serverTasks('alice'))[0] !== 0; i++) {
    assert.ok(i < 50, 'unsubscribed while away');
    await sleep(50);
  }
  await progress('2', { step: 0, status: 'finish' });
  await progress('2', { step: 1, status: 'running' });
  // Back (the browser's back button): the current state within 1 s.
  await page.goBack();
  await timelineIs(page, '2', ['准备:完成', '执行:执行中', '完成:执行中'], 1000);
  tl = await timeline(page);
  assert.ok(parseFloat(tl[0][1]) > 2, `the finished step's seconds: ${tl[0][1]}`);

  // Away and back by the links.
  await page.click('#nav-chat');
  await page.locator('#chat-text').waitFor();
  await progress('2', { step: 1, status: 'finish' });
  await page.click('#nav-progress');
  await timelineIs(page, '2', ['准备:完成', '执行:完成', '完成:执行中'], 1000);

  // The broker restarts: reconnect, the subscription is renewed.
  await stopBroker(srv);
  await waitState(page, 'reconnecting', 5000);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort, args: ['--web-root', dist] });
  await waitState(page, 'open', 20000);
  await progress('2', { step: 2, status: 'running' });
  await page.locator('#timeline .el-timeline-item[data-index="2"][data-status="running"]').waitFor({ timeout: 5000 });
  // And away and back once more after the restart.
  await page.click('#nav-chat');
  await page.locator('#chat-text').waitFor();
  await progress('2', { step: 2, status: 'finish' });
  await page.goBack();
  await timelineIs(page, '2', ['准备:完成', '执行:完成', '完成:完成'], 1000);
  await page.locator('#task-title small[data-status="done"]').waitFor({ timeout: 1000 });
  await page.screenshot({ path: '/tmp/basestation-vue-progress-done.png', fullPage: true });
  assert.deepEqual(page.problems.filter((p) => !webSocketNoise(p)), []);
  await page.close();
});

test('seed 002: two users chat, with ack state, through a restart and a route change', { skip, timeout: 120000 }, async () => {
  const alice = await newPage(browser.ctx);
  const bob = await newPage(browser.ctx);
  await alice.goto(demoUrl(srv, 'ann', token(srv.db, 'ann')) + '#/chat');
  await bob.goto(demoUrl(srv, 'ben', token(srv.db, 'ben')) + '#/chat');
  await waitState(alice, 'open');
  await waitState(bob, 'open');
  await alice.locator('#online [data-uid="ben"]').waitFor({ timeout: 10000 });
  await bob.locator('#online [data-uid="ann"]').waitFor({ timeout: 10000 });

  const say = async (page, text) => {
    await page.fill('#chat-text', text);
    await page.click('#chat-send');
  };
  await say(alice, '你好 ben');
  await alice.locator('#messages .msg.out[data-status="sent"]', { hasText: '你好 ben' }).waitFor({ timeout: 5000 });
  assert.match(await alice.locator('#messages .msg.out').first().textContent(), /已发送 ✓/);
  await bob.locator('#messages .msg.in', { hasText: '你好 ben' }).waitFor({ timeout: 5000 });
  await say(bob, 'hi ann');
  await alice.locator('#messages .msg.in', { hasText: 'hi ann' }).waitFor({ timeout: 5000 });

  // The broker goes down: ann's message waits, visibly, and goes once it is back.
  await stopBroker(srv);
  await waitState(alice, 'reconnecting', 5000);
  await say(alice, 'sent while the broker was down');
  await alice.locator('#messages .msg.out[data-status="queued"]', { hasText: 'while the broker was down' }).waitFor();
  assert.match(await alice.locator('#messages .msg.out[data-status="queued"]').textContent(), /等待发送/);
  srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort, args: ['--web-root', dist] });
  await waitState(alice, 'open', 20000);
  await waitState(bob, 'open', 20000);
  await alice.locator('#messages .msg.out[data-status="sent"]', { hasText: 'while the broker was down' }).waitFor({ timeout: 5000 });
  await bob.locator('#messages .msg.in', { hasText: 'while the broker was down' }).waitFor({ timeout: 5000 });

  // ben leaves the chat route; ann writes; ben comes back and sees it.
  await bob.click('#nav-progress');
  await bob.locator('#query-1').waitFor();
  await say(alice, 'while you were on the other page');
  await alice.locator('#messages .msg.out[data-status="sent"]', { hasText: 'other page' }).waitFor({ timeout: 5000 });
  await bob.goBack();
  await bob.locator('#messages .msg.in', { hasText: 'other page' }).waitFor({ timeout: 1000 });
  assert.deepEqual(await bob.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent)),
    ['你好 ben', 'hi ann', 'sent while the broker was down', 'while you were on the other page']);
  const stored = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE room = 'chat'" }, ADMIN_KEY);
  assert.equal(stored.json.rows[0][0], 4, 'each message stored once');
  await alice.screenshot({ path: '/tmp/basestation-vue-chat-ann.png', fullPage: true });
  await bob.screenshot({ path: '/tmp/basestation-vue-chat-ben.png', fullPage: true });
  assert.deepEqual([...alice.problems, ...bob.problems].filter((p) => !webSocketNoise(p)), []);
  void restart;
});
