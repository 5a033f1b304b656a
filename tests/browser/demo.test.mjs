// `serve --demo`: the printed links open the page signed in; the page finds
// and follows the demo's running job and shows the seed's finished task "1".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, launch, newPage, waitState, startServer, timeline } from './lib.mjs';

let srv, browser;
before(async () => {
  if (skipReason) return;
  srv = await startServer({ args: ['--demo'] });
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
});

test('the demo links: following demo jobs, task 1 finished, bob as a watcher', { skip: skipReason, timeout: 60000 }, async () => {
  const links = Object.fromEntries([...srv.stdout.matchAll(/^\s+(alice|bob)\s+(http\S+)/gm)].map((m) => [m[1], m[2]]));
  assert.ok(links.alice && links.bob, srv.stdout);
  assert.match(links.alice, new RegExp(`^http://127\\.0\\.0\\.1:${srv.httpPort}/\\?uid=alice&token=\\S+&ws=${srv.wsPort}$`));

  const alice = await newPage(browser.ctx);
  await alice.goto(links.alice);
  await waitState(alice, 'open');
  // The seed page's task 1: finished.
  const one = alice.locator('#tasks li[data-task="1"]');
  await one.locator('.task-item-meta', { hasText: 'done · 3/3' }).waitFor({ timeout: 5000 });
  // demo-1 is created on the first tick (2.5 s) and found by probing (every 3 s).
  await alice.locator('#timeline[data-task="demo-1"]').waitFor({ timeout: 10000 });
  assert.match(await alice.locator('#task-title').textContent(), /Demo job #1/);
  await alice.locator('#timeline .step[data-status="running"], #timeline .step[data-status="finish"]').first().waitFor({ timeout: 8000 });
  const steps = await timeline(alice);
  assert.equal(steps.length, 4);

  // Clicking task 1 shows its finished steps.
  await one.click();
  await alice.locator('#timeline[data-task="1"]').waitFor();
  assert.deepEqual((await timeline(alice)).map((s) => s[1]), ['finish', 'finish', 'finish']);
  assert.match((await timeline(alice))[0][2], /完成/);

  // bob watches the same job.
  const bob = await newPage(browser.ctx);
  await bob.goto(links.bob);
  await bob.locator('#timeline[data-task="demo-1"]').waitFor({ timeout: 10000 });
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});
