// Chromium's own EventSource (no client library: the seed's one-way page)
// through Debian's nginx configured from the shipped
// deploy/nginx/basestation.conf: task progress and direct messages, and the
// broker restarted in the middle. While it is down nginx cannot reach it;
// the shipped /sse location answers with an empty stream that asks the
// browser to retry (a 502 would make EventSource give up for good), so the
// browser comes back by itself with Last-Event-ID and the stream resumes
// there: every seq once, in order, although the URL still says since=0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withBroker, newPage, token, api, sleep } from './lib.mjs';
import { startNginx, nginxMissing } from '../blackbox/nginx-lib.mjs';

const skip = skipReason || nginxMissing;
// Heartbeat comments every second keep the stream open past the test
// nginx's 3 s proxy_read_timeout.
const ARGS = ['--heartbeat', '1', '--trusted-proxy', '127.0.0.1'];
const fx = withBroker({ args: ARGS });

async function until(page, fn, arg, timeout = 15000) {
  await page.waitForFunction(fn, arg, { timeout });
}

test('EventSource through nginx: progress and messages across a broker restart, resumed by Last-Event-ID', { skip, timeout: 90000 }, async () => {
  const ng = await startNginx(fx.srv);
  try {
    let r = await api(fx.srv, 'POST', '/api/tasks', { id: 'job-n', title: 'Behind nginx', steps: ['fetch', 'build'], owner: 'carol' });
    assert.equal(r.status, 201, r.text);
    const page = await newPage(fx.browser.ctx);
    const origin = `http://127.0.0.1:${ng.port}`;
    await page.goto(`${origin}/healthz`);
    await page.evaluate((tok) => {
      const got = { ids: [], tasks: [], opens: 0, errors: 0 };
      window.got = got;
      // Same origin as the page: nginx serves both.
      const es = new EventSource(`/sse?token=${encodeURIComponent(tok)}&task=job-n&since=0`);
      window.es = es;
      es.onopen = () => { got.opens++; };
      es.onerror = () => { got.errors++; };
      es.addEventListener('message', (e) => { got.ids.push(Number(e.lastEventId)); });
      es.addEventListener('task', (e) => {
        const t = JSON.parse(e.data);
        got.tasks.push([t.version, t.steps[0].status]);
      });
    }, token(fx.srv.db, 'carol'));
    await until(page, () => window.got.tasks.length >= 1);

    const seqs = [];
    const publish = async (n) => {
      for (let i = 0; i < n; i++) {
        const a = await api(fx.srv, 'POST', '/api/publish', { to: 'carol', data: { n: seqs.length } });
        assert.equal(a.status, 200, a.text);
        seqs.push(a.json.seq);
      }
    };
    await publish(5);
    r = await api(fx.srv, 'POST', '/api/tasks/job-n/progress', { step: 0, status: 'running' });
    assert.equal(r.status, 200, r.text);
    await until(page, (n) => window.got.ids.length >= n && window.got.tasks.some((t) => t[1] === 'running'), seqs.length);

    await fx.stop();
    // The broker is down: the browser keeps trying through nginx (each try
    // an empty 200 stream with retry: 2000) and does not give up.
    await until(page, () => window.got.errors >= 2, null, 10000);
    assert.notEqual(await page.evaluate(() => window.es.readyState), 2, 'EventSource gave up (CLOSED)');
    await fx.start();
    await publish(5);
    r = await api(fx.srv, 'POST', '/api/tasks/job-n/progress', { step: 0, status: 'finish' });
    assert.equal(r.status, 200, r.text);
    await until(page, (n) => window.got.ids.length >= n && window.got.tasks.some((t) => t[1] === 'finish'), seqs.length, 20000);
    await sleep(300);
    const got = await page.evaluate(() => ({ ...window.got, state: window.es.readyState }));
    assert.deepEqual(got.ids, seqs, 'every seq once, in order: resumed from Last-Event-ID, not from since=0');
    const versions = got.tasks.map((v) => v[0]);
    assert.deepEqual(versions, [...new Set(versions)].sort((a, b) => a - b), 'task versions once each, in order');
    assert.equal(got.tasks.at(-1)[1], 'finish');
    assert.equal(got.state, 1, 'OPEN at the end');
    const problems = page.problems.filter((p) => !/EventSource|net::/.test(p));
    assert.deepEqual(problems, []);
    await page.evaluate(() => window.es.close());
  } finally {
    await ng.stop();
  }
});
