// The admin console's live charts and rooms view. First the figures
// (web/admin/metrics.js) in Node: Prometheus parsing, rates, the p99 of a
// histogram between two samples, the 10-minute window. Then in Chromium
// against the real broker: with no traffic the message line lies on the
// floor of its chart; while two clients talk in a room it rises (pixels of
// its colour near the top), connections and commit latency get values,
// replica lag says "single node", and the rooms view shows the room's
// members, who is online, its last seq and its messages in the last minute.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, launch, newPage, startServer, connect, ADMIN_KEY, sleep } from './lib.mjs';
import { parseMetrics, quantileBetween, histogram, sample, Series, total } from '../../web/admin/metrics.js';

if (skipReason && process.env.CI) throw new Error(skipReason);

const text = (n, inCount, buckets) => `# TYPE basestation_connections gauge
basestation_connections ${n}
basestation_messages_in_total ${inCount}
basestation_messages_out_total ${inCount * 2}
basestation_drops_total{reason="idle"} 1
basestation_drops_total{reason="protocol"} 2
${buckets.map(([le, c]) => `basestation_db_commit_seconds_bucket{le="${le}"} ${c}`).join('\n')}
basestation_db_commit_seconds_count ${buckets[buckets.length - 1][1]}
`;

test('figures from /metrics: parsing, rates, p99 between samples, the window', () => {
  const m = parseMetrics(text(3, 10, [['0.001', 5], ['0.01', 9], ['+Inf', 10]]));
  assert.equal(total(m, 'basestation_connections'), 3);
  assert.equal(total(m, 'basestation_drops_total'), 3);
  assert.equal(total(m, 'basestation_replica_lag'), undefined);
  assert.deepEqual(histogram(m, 'basestation_db_commit_seconds'), [[0.001, 5], [0.01, 9], [Infinity, 10]]);

  // 100 commits between two samples: 90 under 1 ms, 10 in (1 ms, 10 ms]:
  // p99 is 9 of those 10, i.e. 1 + 9 × 0.9 ms.
  const a = [[0.001, 100], [0.01, 100], [Infinity, 100]];
  const b = [[0.001, 190], [0.01, 200], [Infinity, 200]];
  assert.ok(Math.abs(quantileBetween(0.99, a, b) - 0.0091) < 1e-9, String(quantileBetween(0.99, a, b)));
  assert.ok(Math.abs(quantileBetween(0.5, a, b) - 0.001 * (50 / 90)) < 1e-9);
  assert.equal(quantileBetween(0.99, b, b), null, 'nothing observed');
  assert.equal(quantileBetween(0.99, [[0.01, 0], [Infinity, 0]], [[0.01, 0], [Infinity, 4]]), 0.01, '+Inf bucket: the largest bound');

  const s = new Series(60000);
  const raw = (t, n, c) => sample(parseMetrics(text(n, c, [['0.001', c], ['+Inf', c]])), t);
  assert.equal(s.add(raw(1000, 1, 0)).inRate, null, 'no rate from one sample');
  const p = s.add(raw(3000, 2, 100));
  assert.equal(p.inRate, 50);
  assert.equal(p.outRate, 100);
  assert.equal(p.connections, 2);
  assert.ok(p.p99ms > 0 && p.p99ms <= 1);
  assert.equal(s.add(raw(5000, 2, 10)).inRate, 5, 'a counter that went down (a restart) counts from 0');
  assert.equal(s.has('lag'), false);
  s.add(raw(70000, 0, 10));
  assert.deepEqual(s.points.map((x) => x.t), [70000], 'older than the window are dropped');
  const back = Series.from(JSON.parse(JSON.stringify(s)), 60000, 71000);
  assert.deepEqual(back.points, s.points);
  const lag = sample(parseMetrics('basestation_replica_lag{node="a"} 4\nbasestation_replica_lag{node="b"} 9\n'), 1);
  assert.equal(lag.lag, 9, 'the largest lag of the nodes');
});

let srv, browser, ann, bob;
before(async () => {
  if (skipReason) return;
  srv = await startServer();
  browser = await launch();
});
after(async () => {
  if (ann) await ann.close();
  if (bob) await bob.close();
  if (browser) await browser.close();
  if (srv) await srv.cleanup();
});

// The topmost row of pixels of a colour in a canvas (null: none).
const topOf = (page, id, rgb) => page.$eval(id, (c, rgb) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let y = 0; y < c.height; y++) {
    for (let x = 0; x < c.width; x++) {
      const i = (y * c.width + x) * 4;
      if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) < 40) return { y, height: c.height };
    }
  }
  return { y: null, height: c.height };
}, rgb);
const last = async (page, id) => JSON.parse(await page.locator(id).getAttribute('data-last'));
const BLUE = [0x25, 0x63, 0xeb];
const ORANGE = [0xd9, 0x77, 0x06];
const GREEN = [0x16, 0xa3, 0x4a];

test('the charts move when traffic flows; the rooms view', { skip: skipReason, timeout: 90000 }, async () => {
  const page = await newPage(browser.ctx);
  await page.goto(`${srv.http}/admin`);
  await page.fill('#admin-key', ADMIN_KEY);
  await page.click('#key-save');
  await page.locator('#key-state[data-state="open"]').waitFor();
  // Quiet: two samples, so rates exist, all zero.
  await page.waitForFunction(() => JSON.parse(document.querySelector('#chart-msgs').dataset.last || '[null]')[0] !== null, null, { timeout: 10000 });
  assert.deepEqual(await last(page, '#chart-msgs'), [0, 0]);
  assert.deepEqual(await last(page, '#chart-conns'), [0, 0]);
  for (const colour of [BLUE, ORANGE]) {
    const quiet = await topOf(page, '#chart-msgs', colour);
    assert.ok(quiet.y === null || quiet.y > quiet.height - 30, `the quiet lines lie on the floor: ${JSON.stringify(quiet)}`);
  }
  const quiet = await topOf(page, '#chart-msgs', BLUE);
  assert.equal(await page.locator('#chart-lag').getAttribute('data-mode'), 'single');
  assert.equal(await page.locator('#chart-lag').getAttribute('data-points'), '0');

  // Traffic: two members of "ops", ann publishes 150 messages over ~3 s.
  ann = await connect(srv, 'ann');
  bob = await connect(srv, 'bob');
  for (const c of [ann, bob]) { c.send({ type: 'join', room: 'ops', ref: 'j' }); await c.next('joined'); }
  let seq = 0;
  for (let i = 0; i < 150; i++) {
    ann.send({ type: 'publish', room: 'ops', data: { i }, ref: 'p' + i });
    seq = (await ann.next('ack')).seq;
    if (i % 10 === 9) await sleep(200);
  }
  await page.waitForFunction(() => JSON.parse(document.querySelector('#chart-msgs').dataset.last)[0] > 0, null, { timeout: 10000 });
  await sleep(2500); // one more sample
  // The busiest line reaches the upper half (the scale is at most twice its
  // peak); "in" (about half of "out": acks and deliveries) is off the floor.
  const busyOut = await topOf(page, '#chart-msgs', ORANGE);
  assert.ok(busyOut.y !== null && busyOut.y < busyOut.height / 2, `out rose: ${JSON.stringify(busyOut)}`);
  const busy = await topOf(page, '#chart-msgs', BLUE);
  assert.ok(busy.y !== null && busy.y < busy.height - 45, `in rose: quiet ${JSON.stringify(quiet)} busy ${JSON.stringify(busy)}`);
  const conns = await last(page, '#chart-conns');
  assert.ok(conns[0] >= 2 && conns[1] >= 2, JSON.stringify(conns));
  // connections and users online (drawn over it when equal): off the floor.
  const connsTop = await topOf(page, '#chart-conns', GREEN);
  assert.ok(connsTop.y !== null && connsTop.y < connsTop.height / 2, JSON.stringify(connsTop));
  assert.ok(Number(await page.locator('#chart-commit').getAttribute('data-points')) > 0, 'commit latency has values');
  assert.ok((await last(page, '#chart-commit'))[0] > 0);
  assert.match(await page.locator('#chart-msgs-legend').textContent(), /in \d/);
  assert.equal(await page.locator('#chart-lag').getAttribute('data-mode'), 'single');

  // Rooms: members, online, last seq, messages in the last minute.
  await bob.close();
  bob = null;
  await page.click('#rooms-refresh');
  const row = page.locator('#rooms tbody tr[data-room="ops"]');
  await page.waitForFunction(() => {
    const r = document.querySelector('#rooms tbody tr[data-room="ops"] .col-online');
    return r && r.textContent === '1';
  }, null, { timeout: 10000 });
  assert.equal(await row.locator('.col-members').textContent(), '2');
  assert.equal(await row.locator('.col-last-seq').textContent(), String(seq));
  assert.equal(await row.locator('.col-per-minute').textContent(), '150');
  await page.screenshot({ path: '/tmp/basestation-admin-charts.png', fullPage: true });

  // The window is kept across a reload (this tab's sessionStorage).
  const points = Number(await page.locator('#chart-msgs').getAttribute('data-points'));
  await page.reload();
  await page.locator('#chart-msgs[data-points]').waitFor({ state: 'attached' });
  assert.ok(Number(await page.locator('#chart-msgs').getAttribute('data-points')) >= points - 2);
  assert.deepEqual(page.problems, []);
});
