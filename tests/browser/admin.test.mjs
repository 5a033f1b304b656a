// (e) The admin console: the key, live connections, tables with row counts,
// a SELECT rendered as a table, a write refused with a visible error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, launch, newPage, startServer, connect, ADMIN_KEY } from './lib.mjs';

let srv, browser, zed;
before(async () => {
  if (skipReason) return;
  srv = await startServer();
  browser = await launch();
  zed = await connect(srv, 'zed');
  zed.send({ type: 'join', room: 'ops', ref: 1 });
  await zed.next('joined');
  zed.send({ type: 'send', to: 'yan', data: { text: 'for the console' }, ref: 2 });
  await zed.next('ack');
});
after(async () => {
  if (zed) await zed.close();
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
});

test('the admin console', { skip: skipReason, timeout: 60000 }, async () => {
  const page = await newPage(browser.ctx);
  await page.goto(`${srv.http}/admin`);
  assert.equal(await page.title(), 'basestation admin');

  // A wrong key is refused, visibly.
  await page.fill('#admin-key', 'not-the-key');
  await page.click('#key-save');
  await page.locator('#error:not([hidden])', { hasText: /wrong admin key/ }).waitFor();
  assert.equal(await page.locator('#key-state').getAttribute('data-state'), 'failed');

  await page.fill('#admin-key', ADMIN_KEY);
  await page.click('#key-save');
  await page.locator('#key-state[data-state="open"]').waitFor();
  assert.ok(await page.locator('#error').isHidden());

  // Live connections.
  const row = page.locator('#conns tbody tr[data-uid="zed"]');
  await row.waitFor();
  assert.equal(await row.locator('td.col-rooms').textContent(), 'ops');
  assert.match(await page.locator('#conns-count').textContent(), /1 open/);
  const other = await connect(srv, 'yan');
  await page.click('#conns-refresh');
  await page.locator('#conns tbody tr[data-uid="yan"]').waitFor();
  await other.close();

  // Nodes: this one alone (GET /admin/nodes), with its connections.
  const node = page.locator('#nodes tbody tr');
  await node.first().waitFor();
  assert.equal(await node.count(), 1);
  assert.match(await node.locator('td.node').textContent(), /-0$/); // <hostname>-<ws port as given>
  assert.equal(await page.locator('#nodes-count').textContent(), 'single node');

  // Tables with row counts.
  const msgs = page.locator('#tables tbody tr[data-table="messages"] td');
  await msgs.first().waitFor();
  assert.equal(await msgs.nth(1).textContent(), '1');
  assert.equal(await page.locator('#tables tbody tr[data-table="members"] td').nth(1).textContent(), '1');

  // A SELECT renders as a table.
  await page.fill('#sql', "SELECT sender, to_uid, data FROM messages WHERE sender = 'zed'");
  await page.click('#sql-run');
  await page.locator('#sql-meta[data-rows="1"]').waitFor();
  assert.deepEqual(await page.$$eval('#sql-result thead th', (ths) => ths.map((t) => t.textContent)), ['sender', 'to_uid', 'data']);
  assert.deepEqual(await page.$$eval('#sql-result tbody td', (tds) => tds.map((t) => t.textContent)), ['zed', 'yan', '{"text":"for the console"}']);
  assert.match(await page.locator('#sql-meta').textContent(), /1 row · \d+ ms/);

  // The row limit shows as truncated.
  await page.fill('#sql', 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 5000) SELECT i FROM n');
  await page.click('#sql-run');
  await page.locator('#sql-meta[data-truncated="true"]').waitFor();
  assert.match(await page.locator('#sql-meta').textContent(), /truncated/);

  // A write is refused and the error is shown; the table stays as it was.
  await page.fill('#sql', 'DELETE FROM messages');
  await page.press('#sql', 'Control+Enter');
  const err = page.locator('#sql-error:not([hidden])');
  await err.waitFor();
  assert.match(await err.textContent(), /not authorized|read-only|readonly/i);
  assert.ok(await page.locator('#sql-scroll').isHidden());
  await page.click('#tables-refresh');
  await page.waitForTimeout(300);
  assert.equal(await msgs.nth(1).textContent(), '1');
  await page.screenshot({ path: '/tmp/basestation-admin.png', fullPage: true });

  // The key is kept for this tab's session (not in localStorage).
  await page.reload();
  await page.locator('#conns tbody tr[data-uid="zed"]').waitFor();
  assert.equal(await page.evaluate(() => Object.keys(localStorage).length), 0);
  await page.click('#key-forget');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('basestation.adminKey')), null);
  // The refused key (401s) and the refused DELETE (one 400) and nothing else.
  assert.deepEqual(page.problems.filter((p) => !/^HTTP 401 /.test(p)), [`HTTP 400 ${srv.http}/admin/sql`]);
});
