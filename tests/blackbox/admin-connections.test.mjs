// GET /admin/connections: every live WebSocket connection with its conn id,
// uid, remote address, start time, rooms and buffered output; a closed
// connection disappears.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { incompressible, startServer, api, connect, sleep, upgradeRequest, ADMIN_KEY } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

const list = async () => {
  const r = await api(srv, 'GET', '/admin/connections', undefined, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.ok(Array.isArray(r.json.connections));
  return r.json.connections;
};

async function until(pred, ms = 3000) {
  const end = Date.now() + ms;
  for (;;) {
    const l = await list();
    if (pred(l)) return l;
    if (Date.now() > end) return l;
    await sleep(30);
  }
}

test('lists live connections with their fields; closed ones disappear', async () => {
  assert.deepEqual(await list(), []);
  const t0 = Date.now();
  const a = await connect(srv, 'alice');
  const a2 = await connect(srv, 'alice');
  const b = await connect(srv, 'bob', { role: 'producer' });
  a.send({ type: 'join', room: 'r1' }); await a.next('joined');
  a.send({ type: 'join', room: 'r2' }); await a.next('joined');
  let l = await list();
  assert.equal(l.length, 3);
  for (const c of l) {
    for (const k of ['conn', 'uid', 'remote', 'since', 'rooms', 'out_buffered']) assert.ok(k in c, `${k} missing: ${JSON.stringify(c)}`);
    assert.ok(Number.isInteger(c.conn));
    assert.equal(typeof c.uid, 'string');
    assert.match(c.remote, /^127\.0\.0\.1(:\d+)?$/);
    assert.equal(typeof c.since, 'number');
    assert.ok(c.since >= t0 - 1000 && c.since <= Date.now() + 1000, `since ${c.since} (ms since the epoch)`);
    assert.ok(Array.isArray(c.rooms));
    assert.ok(Number.isInteger(c.out_buffered) && c.out_buffered >= 0);
  }
  // conn ids are the ones the clients were told in their connect frame
  const byConn = Object.fromEntries(l.map((c) => [c.conn, c]));
  assert.equal(byConn[a.hello.conn].uid, 'alice');
  assert.equal(byConn[a2.hello.conn].uid, 'alice');
  assert.equal(byConn[b.hello.conn].uid, 'bob');
  assert.deepEqual([...byConn[a.hello.conn].rooms].sort(), ['r1', 'r2']);
  assert.equal(new Set(l.map((c) => c.conn)).size, 3);

  // leave a room: the list follows
  a.send({ type: 'leave', room: 'r1' }); await a.next('left');
  l = await list();
  assert.deepEqual(l.find((c) => c.conn === a.hello.conn).rooms, ['r2']);

  // a clean close and an abrupt one both disappear
  await a2.close();
  b.terminate();
  l = await until((x) => x.length === 1);
  assert.deepEqual(l.map((c) => c.conn), [a.hello.conn]);
  await a.close();
  assert.deepEqual(await until((x) => x.length === 0), []);
});

test('a socket still in its handshake is not listed; a refused upgrade never is', async () => {
  const s = net.connect(srv.wsPort, '127.0.0.1');
  await new Promise((r) => s.on('connect', r));
  s.write('GET /ws HTTP/1.1\r\nHost: x\r\n'); // headers not finished
  const c = await connect(srv, 'carol');
  await sleep(50);
  const l = await list();
  assert.deepEqual(l.map((x) => x.uid), ['carol']);
  s.destroy();
  // a 401 upgrade
  const bad = net.connect(srv.wsPort, '127.0.0.1');
  await new Promise((r) => bad.on('connect', r));
  bad.write(upgradeRequest(srv.wsPort, { query: '?token=nope' }));
  bad.resume(); // read the 401, or 'close' never comes
  await new Promise((r) => bad.on('close', r));
  assert.deepEqual((await list()).map((x) => x.uid), ['carol']);
  await c.close();
});

test('out_buffered shows output waiting for a reader that does not read', async () => {
  const slow = await connect(srv, 'slow');
  slow.ws._socket.pause(); // stop reading: the server's output queues up
  const sender = await connect(srv, 'sender');
  const data = incompressible(32000); // permessage-deflate would shrink 'xxx…'
  // Send until the kernel buffers are full and the broker holds output
  // (well below --max-outbuf, 1 MiB, where it would cut the reader).
  let row;
  for (let i = 0; i < 400; i++) {
    sender.send({ type: 'send', to: 'slow', data });
    await sender.next('ack');
    if (i % 4 !== 3) continue;
    row = (await list()).find((c) => c.uid === 'slow');
    if (!row || row.out_buffered > 0) break;
  }
  assert.ok(row, 'the slow reader was closed');
  assert.ok(row.out_buffered > 0 && row.out_buffered < 1048576, JSON.stringify(row));
  slow.ws._socket.resume();
  slow.terminate();
  await sender.close();
});
