// Chromium's EventSource through the client's BasestationEvents helper
// (clients/js/basestation.js) on GET /sse: the task snapshot and its
// progress, direct messages, and a broker restart in the middle: the
// browser reconnects by itself with Last-Event-ID and the stream resumes
// there (no gap; no duplicate, although the URL still says since=0, which
// would replay everything if the header did not win).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withBroker, newPage, token, api, sleep } from './lib.mjs';

const fx = withBroker();

async function until(page, fn, arg, timeout = 15000) {
  await page.waitForFunction(fn, arg, { timeout });
}

test('EventSource: task progress and direct messages across a broker restart', { skip: skipReason, timeout: 90000 }, async () => {
  let r = await api(fx.srv, 'POST', '/api/tasks', { id: 'job-e', title: 'Stream job', steps: ['one', 'two'], owner: 'bob' });
  assert.equal(r.status, 201, r.text);
  const page = await newPage(fx.browser.ctx);
  await page.goto(`${fx.srv.http}/healthz`);
  await page.evaluate(async ({ port, tok }) => {
    const { BasestationEvents } = await import('/client/basestation.js');
    const got = { msgs: [], tasks: [], states: [] };
    window.got = got;
    window.ev = new BasestationEvents({ url: `http://127.0.0.1:${port}/sse`, token: tok, uid: 'bob', tasks: ['job-e'], since: 0 });
    window.ev.on('message', (m) => got.msgs.push(m.seq));
    window.ev.on('task', (t) => got.tasks.push([t.version, t.steps[0].status]));
    window.ev.on('state', (s) => got.states.push(s));
  }, { port: fx.srv.wsPort, tok: token(fx.srv.db, 'bob') });
  await until(page, () => window.got.tasks.length >= 1);
  const seqs = [];
  const publish = async (n) => {
    for (let i = 0; i < n; i++) {
      const a = await api(fx.srv, 'POST', '/api/publish', { to: 'bob', data: { n: seqs.length } });
      assert.equal(a.status, 200, a.text);
      seqs.push(a.json.seq);
    }
  };
  await publish(5);
  await api(fx.srv, 'POST', '/api/tasks/job-e/progress', { step: 0, status: 'running' });
  await until(page, (n) => window.got.msgs.length >= n && window.got.tasks.some((t) => t[1] === 'running'), seqs.length);

  await fx.stop();
  await until(page, () => window.ev.state === 'connecting', null, 5000);
  await fx.start();
  await publish(5);
  await api(fx.srv, 'POST', '/api/tasks/job-e/progress', { step: 0, status: 'finish' });
  await until(page, (n) => window.got.msgs.length >= n && window.got.tasks.some((t) => t[1] === 'finish'), seqs.length, 20000);
  await sleep(300);
  const got = await page.evaluate(() => ({ ...window.got, duplicates: window.ev.duplicates, state: window.ev.state }));
  assert.deepEqual(got.msgs, seqs, 'every seq once, in order');
  assert.equal(got.duplicates, 0, 'resumed from Last-Event-ID, not from since=0');
  assert.equal(got.state, 'open');
  const versions = got.tasks.map((t) => t[0]);
  assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
  assert.deepEqual(got.tasks.at(-1)[1], 'finish');
  assert.ok(got.states.filter((s) => s === 'open').length >= 2, JSON.stringify(got.states));
  // While the broker was down the browser logs failed attempts; nothing else.
  const problems = page.problems.filter((p) => !/EventSource|ERR_CONNECTION_REFUSED|net::/.test(p));
  assert.deepEqual(problems, []);
  await page.evaluate(() => window.ev.close());
});
