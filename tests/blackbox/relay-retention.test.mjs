// Retention by count and age: pruned messages are counted in /metrics and
// make a resume that needed them report complete:false.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, sleep } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--retention-count', '5'] }); });
after(async () => { await srv.cleanup(); });

async function metric(name) {
  const t = await (await fetch(srv.http + '/metrics')).text();
  const m = new RegExp('^' + name.replace(/[{}"]/g, '\\$&') + ' (\\d+)', 'm').exec(t);
  return m ? Number(m[1]) : null;
}

test('keeps the newest N, counts the rest, reports complete:false', async () => {
  const a = await connect(srv, 'alice');
  const seqs = [];
  for (let i = 0; i < 20; i++) { a.send({ type: 'send', to: 'bob', data: i }); seqs.push((await a.next('ack')).seq); }
  // The pruner runs once a second in small steps.
  const deadline = Date.now() + 8000;
  while ((await metric('basestation_drops_total{reason="retention"}')) < 15 && Date.now() < deadline) await sleep(200);
  assert.equal(await metric('basestation_drops_total{reason="retention"}'), 15);
  const b = await connect(srv, 'bob', { query: { since: '0' } });
  const got = [];
  for (let i = 0; i < 5; i++) got.push(await b.next('message'));
  assert.deepEqual(got.map((m) => m.data), [15, 16, 17, 18, 19]);
  const res = await b.next('resumed');
  assert.equal(res.complete, false);
  // Resuming after the pruned range is complete.
  const b2 = await connect(srv, 'bob', { query: { since: String(seqs[16]) } });
  assert.equal((await b2.next('message')).data, 17);
  assert.equal((await b2.next('resumed')).complete, true);
  await Promise.all([a.close(), b.close(), b2.close()]);
});

test('age retention', async () => {
  const s2 = await startServer({ args: ['--retention-age', '1'] });
  try {
    const a = await connect(s2, 'alice');
    a.send({ type: 'send', to: 'zed', data: 'old' }); await a.next('ack');
    await sleep(2600);
    const z = await connect(s2, 'zed', { query: { since: '0' } });
    const res = await z.next('resumed');
    assert.equal(res.complete, false);
    assert.equal(z.all.filter((m) => m.type === 'message').length, 0);
    await a.close(); await z.close();
  } finally { await s2.cleanup(); }
});
