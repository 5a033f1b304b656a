// Per-connection token bucket: frames over the rate get rate_limited; a
// client that keeps flooding is closed with 1008.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, sleep } from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--rate', '10', '--burst', '5'] }); });
after(async () => { await srv.cleanup(); });

test('over the rate: rate_limited, then recovery', async () => {
  const a = await connect(srv, 'alice');
  for (let i = 0; i < 8; i++) a.send({ type: 'ping', ref: i });
  const replies = [];
  for (let i = 0; i < 8; i++) replies.push(await a.next((m) => m.type === 'pong' || m.type === 'error'));
  assert.equal(replies.filter((m) => m.type === 'pong').length, 5);
  const errs = replies.filter((m) => m.type === 'error');
  assert.equal(errs.length, 3);
  assert.ok(errs.every((e) => e.code === 'rate_limited'));
  await sleep(600);
  a.send({ type: 'ping' });
  await a.next('pong');
  await a.close();
});

test('a client that keeps flooding is closed 1008', async () => {
  const a = await connect(srv, 'flooder');
  const other = await connect(srv, 'calm');
  for (let i = 0; i < 200; i++) a.send({ type: 'ping' });
  const c = await a.closed;
  assert.equal(c.code, 1008);
  other.send({ type: 'ping' });
  await other.next('pong');
  const metrics = await (await fetch(srv.http + '/metrics')).text();
  assert.match(metrics, /basestation_drops_total\{reason="rate_limit"\} 1/);
  assert.match(metrics, /basestation_rate_limited_total [1-9]/);
  await other.close();
});
