// permessage-deflate with a real browser: Chromium always offers it; the
// page's sockets negotiate it (ws.extensions) and exchange long room
// messages that the broker inflated and compressed (its counters move),
// with the data intact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withBroker, newPage, demoUrl, waitState, token, metricValue } from './lib.mjs';

const fx = withBroker();

test('a page exchanges compressed messages', { skip: skipReason, timeout: 60000 }, async () => {
  const page = await newPage(fx.browser.ctx);
  await page.goto(demoUrl(fx.srv, 'zpage', token(fx.srv.db, 'zpage')));
  await waitState(page, 'open');
  const inflated0 = await metricValue(fx.srv, 'basestation_inflate_messages_total');
  const deflated0 = await metricValue(fx.srv, 'basestation_deflate_messages_total');
  const url = (uid) => `ws://127.0.0.1:${fx.srv.wsPort}/ws?token=${token(fx.srv.db, uid)}`;
  const r = await page.evaluate(async ({ a, b }) => {
    const open = (u) => new Promise((resolve, reject) => {
      const ws = new WebSocket(u);
      const q = [];
      const waiters = [];
      ws.onmessage = (e) => { const m = JSON.parse(e.data); const w = waiters.findIndex((x) => x.t === m.type); if (w >= 0) waiters.splice(w, 1)[0].r(m); else q.push(m); };
      ws.next = (t) => { const i = q.findIndex((m) => m.type === t); if (i >= 0) return Promise.resolve(q.splice(i, 1)[0]); return new Promise((r) => waiters.push({ t, r })); };
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('socket error'));
    });
    const timeout = (p) => Promise.race([p, new Promise((_, j) => setTimeout(() => j(new Error('timeout')), 5000))]);
    const wa = await open(a), wb = await open(b);
    for (const w of [wa, wb]) { w.send(JSON.stringify({ type: 'join', room: 'zroom' })); await timeout(w.next('joined')); }
    const text = 'compressed in the browser: ' + 'añ€😀 '.repeat(500);
    wa.send(JSON.stringify({ type: 'publish', room: 'zroom', data: { text } }));
    await timeout(wa.next('ack'));
    const m = await timeout(wb.next('message'));
    const out = { ext: [wa.extensions, wb.extensions], same: m.data.text === text };
    wa.close(); wb.close();
    return out;
  }, { a: url('zpage-a'), b: url('zpage-b') });
  for (const e of r.ext) assert.match(e, /^permessage-deflate/, 'negotiated: ' + e);
  for (const e of r.ext) assert.match(e, /server_no_context_takeover/);
  assert.ok(r.same, 'the room message arrived intact');
  assert.ok(await metricValue(fx.srv, 'basestation_inflate_messages_total') > inflated0, 'Chromium sent compressed messages');
  assert.ok(await metricValue(fx.srv, 'basestation_deflate_messages_total') > deflated0, 'the broker compressed the long message');
  assert.deepEqual(page.problems, []);
});
