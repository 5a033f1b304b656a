// The happy path: token in the query, the connect frame, ping/pong, and the
// three ways of presenting a token.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, Client } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('connect frame carries uid, conn, heartbeat, seq and epoch', async () => {
  const c = await connect(srv, 'alice');
  assert.equal(c.hello.uid, 'alice');
  assert.equal(typeof c.hello.conn, 'number');
  assert.equal(c.hello.heartbeat, 25);
  assert.equal(c.hello.seq, 0);
  assert.match(c.hello.epoch, /^[0-9a-f]{32}$/);
  c.send({ type: 'ping', ref: 'p1' });
  assert.deepEqual(await c.next('pong'), { type: 'pong', ref: 'p1' });
  await c.close();
});

test('token as Authorization: Bearer', async () => {
  const tok = token(srv.db, 'bob');
  const c = new Client(srv.url(), { headers: { Authorization: 'Bearer ' + tok } });
  await c.opened;
  assert.equal((await c.next('connect')).uid, 'bob');
  await c.close();
});

test('token as the only subprotocol is echoed (browsers need it)', async () => {
  const tok = token(srv.db, 'carol');
  const c = new Client(srv.url('?id=carol'), { protocols: [tok] });
  await c.opened;
  assert.equal(c.ws.protocol, tok);
  assert.equal((await c.next('connect')).uid, 'carol');
  await c.close();
});

test('basestation.v1 is chosen when offered with a token', async () => {
  const tok = token(srv.db, 'dave');
  const c = new Client(srv.url(), { protocols: ['basestation.v1', tok] });
  await c.opened;
  assert.equal(c.ws.protocol, 'basestation.v1');
  await c.close();
});

test('seed shapes: test, keepalive, headerBeat', async () => {
  const c = await connect(srv, 'erin');
  c.send({ test: '1' });
  assert.deepEqual(await c.next((m) => 'test' in m), { test: 'ok' });
  c.send({ keepalive: 'live' });
  await c.next('pong');
  c.send({ type: 'headerBeat', msg: 'test' });
  await c.next('pong');
  await c.close();
});
