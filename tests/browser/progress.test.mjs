// (b) A task advances while the page is open; (c) the page navigates away and
// back and shows the current progress at once, including the steps that
// finished meanwhile. The task is driven over the HTTP API (deterministic).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason, launch, newPage, demoUrl, waitState, timeline, startServer, token, api, sleep,
} from './lib.mjs';

let srv, browser, page, url;
const progress = async (body) => {
  const r = await api(srv, 'POST', '/api/tasks/job-42/progress', body);
  assert.equal(r.status, 200, r.text);
  return r.json;
};
const stepSel = (i, status) => `#timeline .step[data-index="${i}"][data-status="${status}"]`;

before(async () => {
  if (skipReason) return;
  srv = await startServer();
  browser = await launch();
  const r = await api(srv, 'POST', '/api/tasks', {
    id: 'job-42', title: 'Resize photos', owner: 'alice', total: 30,
    steps: ['下载图片 download', '压缩 compress', '上传 upload'],
  });
  assert.equal(r.status, 201, r.text);
  url = demoUrl(srv, 'alice', token(srv.db, 'alice'));
});
after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
});

test('(b) the timeline follows the task while the page is open', { skip: skipReason, timeout: 60000 }, async () => {
  page = await newPage(browser.ctx);
  await page.goto(url);
  await waitState(page, 'open');
  await page.fill('#task-id', 'job-42');
  await page.click('#task-watch');
  await page.locator('#timeline[data-task="job-42"] .step').first().waitFor();
  assert.equal(await page.locator('#task-title').textContent(), 'Resize photos');
  assert.deepEqual((await timeline(page)).map((s) => s[1]), ['pending', 'pending', 'pending']);

  await progress({ step: 0, status: 'running', done: 2 });
  await page.locator(stepSel(0, 'running')).waitFor({ timeout: 5000 });
  let steps = await timeline(page);
  assert.match(steps[0][2], /执行中/);
  assert.equal(await page.locator('#task-status').textContent(), 'running');
  assert.equal(await page.locator('#task-meter-text').textContent(), '2 / 30');
  // The running step's duration counts up between pushes (seed 000's timer).
  const d1 = parseFloat(steps[0][3]);
  await sleep(1200);
  const d2 = parseFloat((await timeline(page))[0][3]);
  assert.ok(d2 >= d1 + 1, `duration ${d1} -> ${d2}`);
  assert.match((await timeline(page))[0][3], /^\d+\.\d\d秒$/);

  await progress({ step: 0, status: 'finish', done: 10 });
  await progress({ step: 1, status: 'running' });
  await page.locator(stepSel(1, 'running')).waitFor({ timeout: 5000 });
  steps = await timeline(page);
  assert.equal(steps[0][1], 'finish');
  assert.match(steps[0][2], /完成/);
  assert.equal(steps[2][1], 'pending');
  // The list entry shows it too.
  assert.match(await page.locator('#tasks li[data-task="job-42"]').textContent(), /running · 1\/3/);
  await page.screenshot({ path: '/tmp/basestation-demo.png' });
  assert.deepEqual(page.problems, []);
});

test('(c) away and back: the current snapshot at once, with the steps finished meanwhile', { skip: skipReason, timeout: 60000 }, async () => {
  assert.ok(page, 'needs the page of (b)');
  await page.goto(`${srv.http}/client/basestation.js`);
  assert.match(await page.content(), /BasestationClient/);
  await progress({ step: 1, status: 'finish', done: 20 });
  const snap = await progress({ step: 2, status: 'running', done: 25 });

  await page.goBack();
  // No further change is posted: what shows comes from the subscribe snapshot.
  await page.locator(`#timeline[data-task="job-42"][data-version="${snap.version}"]`).waitFor({ timeout: 3000 });
  await waitState(page, 'open');
  let steps = await timeline(page);
  assert.deepEqual(steps.map((s) => s[1]), ['finish', 'finish', 'running']);
  assert.match(steps[1][2], /完成/);
  assert.match(steps[2][2], /执行中/);
  assert.equal(steps[1][3], (snap.steps[1].duration / 1000).toFixed(2) + '秒');
  assert.equal(await page.locator('#task-meter-text').textContent(), '25 / 30');

  // The same after leaving to about:blank and opening the link again.
  await page.goto('about:blank');
  const done = await progress({ step: 2, status: 'finish', done: 30 });
  assert.equal(done.status, 'done');
  await page.goto(url);
  await page.locator(`#timeline[data-task="job-42"][data-version="${done.version}"]`).waitFor({ timeout: 3000 });
  steps = await timeline(page);
  assert.deepEqual(steps.map((s) => s[1]), ['finish', 'finish', 'finish']);
  assert.equal(await page.locator('#task-status').textContent(), 'done');
  assert.deepEqual(page.problems, []);
});
