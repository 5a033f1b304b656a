// (d) The broker restarts while the pages are open: the indicator shows the
// reconnect and goes back to open, a message sent while the broker was down
// is delivered once it is back, and the pages keep working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withBroker, newPage, demoUrl, waitState, token, api } from './lib.mjs';

const fx = withBroker();

test('the pages reconnect after a restart and deliver what was sent while it was down', { skip: skipReason, timeout: 90000 }, async () => {
  const alice = await newPage(fx.browser.ctx);
  const bob = await newPage(fx.browser.ctx);
  await alice.goto(demoUrl(fx.srv, 'alice', token(fx.srv.db, 'alice')));
  await bob.goto(demoUrl(fx.srv, 'bob', token(fx.srv.db, 'bob')));
  await waitState(alice, 'open');
  await waitState(bob, 'open');
  const r = await api(fx.srv, 'POST', '/api/tasks', { id: 'job-r', title: 'Restart job', steps: ['one', 'two'], owner: 'bob' });
  assert.equal(r.status, 201, r.text);
  await bob.fill('#task-id', 'job-r');
  await bob.click('#task-watch');
  await bob.locator('#timeline[data-task="job-r"] .step').first().waitFor();

  await fx.stop();
  await alice.locator('#state[data-state="reconnecting"]').waitFor({ timeout: 5000 });
  await bob.locator('#state[data-state="reconnecting"]').waitFor({ timeout: 5000 });

  // Sent while the broker is down: queued on the page.
  await alice.fill('#dm-to', 'bob');
  await alice.fill('#dm-text', 'sent while the broker was down');
  await alice.click('#dm-send');
  const mine = alice.locator('#messages .msg.out', { hasText: 'sent while the broker was down' });
  await mine.locator('.msg-meta', { hasText: 'queued' }).waitFor();
  assert.match(await alice.locator('#state-text').textContent(), /1 queued/);

  await fx.start();
  // The client's backoff (0.5 s doubling, jitter) brings both back well within this.
  await waitState(alice, 'open', 20000);
  await waitState(bob, 'open', 20000);
  const got = bob.locator('#messages .msg.in', { hasText: 'sent while the broker was down' });
  await got.waitFor({ timeout: 5000 });
  await mine.locator('.msg-meta', { hasText: '✓' }).waitFor({ timeout: 5000 });
  assert.equal(await alice.locator('#state-text').textContent(), 'online');

  // Keeps working: the task subscription was renewed, chat goes both ways.
  await api(fx.srv, 'POST', '/api/tasks/job-r/progress', { step: 0, status: 'running' });
  await bob.locator('#timeline .step[data-index="0"][data-status="running"]').waitFor({ timeout: 5000 });
  await bob.fill('#dm-to', 'alice');
  await bob.fill('#dm-text', 'got it');
  await bob.click('#dm-send');
  await alice.locator('#messages .msg.in', { hasText: 'got it' }).waitFor({ timeout: 5000 });
  assert.equal(await bob.locator('#messages .msg.in').count(), 1, 'delivered exactly once');
  const stored = await api(fx.srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE data LIKE '%broker was down%'" }, 'test-admin-key');
  assert.equal(stored.json.rows[0][0], 1);
  // The browser logs failed WebSocket attempts while the broker is down; nothing else.
  const problems = [...alice.problems, ...bob.problems].filter((p) => !/WebSocket connection to .* failed/.test(p));
  assert.deepEqual(problems, []);
});
