// The packed tarball in a page: `npm pack` of clients/js installed into a
// scratch project that the broker serves (--web-root), and a page with no
// build step that imports 'basestation' and 'basestation/vue' from
// node_modules through an import map (Vue's own browser build): it
// connects, sends, and shows a task through useTask.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { skipReason, launch, newPage, startServer, token, api } from './lib.mjs';
import { packAndInstall, ROOT } from '../client/pack.mjs';

if (skipReason && process.env.CI) throw new Error(skipReason);

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tarball</title><link rel="icon" href="data:,">
<script type="importmap">{"imports": {
  "vue": "./vue.esm-browser.prod.js",
  "basestation": "./node_modules/basestation/basestation.js",
  "basestation/vue": "./node_modules/basestation/vue.js"
}}</script>
<script type="module">
import { BasestationClient } from 'basestation';
import { createApp, h } from 'vue';
import { useBasestation, useTask } from 'basestation/vue';
const q = new URLSearchParams(location.search);
createApp({
  setup() {
    const { client, state } = useBasestation({ url: 'ws://' + location.hostname + ':' + q.get('ws') + '/ws', uid: q.get('uid'), token: q.get('token') });
    const { steps } = useTask('t1');
    window.client = client;
    window.isClient = client instanceof BasestationClient;
    return () => h('div', [
      h('p', { id: 'state', 'data-state': state.value }, state.value),
      h('ol', { id: 'steps' }, steps.value.map((s) => h('li', s.name + ':' + s.status))),
    ]);
  },
}).mount('#app');
</script></head><body><div id="app"></div></body></html>
`;

let pkg, srv, browser;
before(async () => {
  if (skipReason) return;
  pkg = packAndInstall();
  copyFileSync(path.join(ROOT, 'node_modules/vue/dist/vue.esm-browser.prod.js'), path.join(pkg.dir, 'vue.esm-browser.prod.js'));
  writeFileSync(path.join(pkg.dir, 'index.html'), PAGE);
  srv = await startServer({ args: ['--web-root', pkg.dir] });
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
  if (pkg) pkg.cleanup();
});

test('the installed tarball imports and works in a page', { skip: skipReason, timeout: 60000 }, async () => {
  const r = await api(srv, 'POST', '/api/tasks', { id: 't1', title: 'T', owner: 'pia', steps: ['one', 'two'] });
  assert.equal(r.status, 201, r.text);
  const page = await newPage(browser.ctx);
  await page.goto(`${srv.http}/?uid=pia&token=${encodeURIComponent(token(srv.db, 'pia'))}&ws=${srv.wsPort}`);
  await page.locator('#state[data-state="open"]').waitFor();
  assert.equal(await page.evaluate(() => window.isClient), true);
  const ack = await page.evaluate(() => window.client.send('rio', { text: 'from a page' }));
  assert.equal(ack.type, 'ack');
  assert.ok(Number.isInteger(ack.seq) && ack.seq > 0);
  await page.locator('#steps li', { hasText: 'one:pending' }).waitFor();
  await api(srv, 'POST', '/api/tasks/t1/progress', { step: 0, status: 'running' });
  await page.locator('#steps li', { hasText: 'one:running' }).waitFor({ timeout: 5000 });
  assert.deepEqual(page.problems, []);
});
