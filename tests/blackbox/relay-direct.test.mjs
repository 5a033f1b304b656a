// Direct messages: stored, acked with a seq, delivered to every tab.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('send is acked with a seq and delivered once to each tab', async () => {
  const a = await connect(srv, 'alice');
  const tabs = [await connect(srv, 'bob'), await connect(srv, 'bob'), await connect(srv, 'bob')];
  a.send({ type: 'send', to: 'bob', data: { text: 'hi', n: [1, 2] }, ref: 'm1' });
  const ack = await a.next('ack');
  assert.equal(ack.ref, 'm1');
  assert.equal(typeof ack.seq, 'number');
  for (const t of tabs) {
    const m = await t.next('message');
    assert.equal(m.seq, ack.seq);
    assert.equal(m.from, 'alice');
    assert.equal(m.to, 'bob');
    assert.deepEqual(m.data, { text: 'hi', n: [1, 2] });
    assert.ok(Math.abs(m.ts - Date.now()) < 5000);
    assert.ok(await t.none('message', 200), 'delivered twice');
  }
  // The sender is not the recipient.
  assert.ok(await a.none('message', 100));
  await Promise.all([a, ...tabs].map((c) => c.close()));
});

test('seqs grow and order is kept', async () => {
  const a = await connect(srv, 'carol');
  const b = await connect(srv, 'dan');
  for (let i = 0; i < 50; i++) a.send({ type: 'send', to: 'dan', data: i, ref: i });
  const acks = [];
  for (let i = 0; i < 50; i++) acks.push(await a.next('ack'));
  assert.deepEqual(acks.map((x) => x.ref), [...Array(50).keys()]);
  for (let i = 1; i < 50; i++) assert.ok(acks[i].seq > acks[i - 1].seq);
  const got = [];
  for (let i = 0; i < 50; i++) got.push(await b.next('message'));
  assert.deepEqual(got.map((m) => m.data), [...Array(50).keys()]);
  assert.deepEqual(got.map((m) => m.seq), acks.map((x) => x.seq));
  await a.close(); await b.close();
});

test('bad fields get error frames and the connection stays open', async () => {
  const a = await connect(srv, 'erin');
  a.send({ type: 'send', data: 1, ref: 'x1' });
  let e = await a.next('error');
  assert.equal(e.code, 'bad_request'); assert.equal(e.ref, 'x1');
  a.send({ type: 'send', to: 'bob', ref: 'x2' });
  e = await a.next('error');
  assert.equal(e.code, 'bad_request'); assert.equal(e.ref, 'x2');
  a.send({ type: 'send', to: 5, data: 1 });
  assert.equal((await a.next('error')).code, 'bad_request');
  a.send({ type: 'send', to: 'bob', data: 1, ref: 'r'.repeat(65) });
  assert.equal((await a.next('error')).code, 'bad_request');
  a.send({ type: 'send', to: 'bob', data: 1, ref: { x: 1 } });
  assert.equal((await a.next('error')).code, 'bad_request');
  a.send({ type: 'nope', ref: 7 });
  e = await a.next('error');
  assert.equal(e.code, 'unknown_type'); assert.equal(e.ref, 7);
  a.send('not json');
  assert.equal((await a.next('error')).code, 'bad_request');
  a.send('[1,2]');
  assert.equal((await a.next('error')).code, 'bad_request');
  a.send({ type: 'ping' });
  await a.next('pong');
  await a.close();
});

test('data is relayed as the sender wrote it (whitespace, nesting, escapes)', async () => {
  const a = await connect(srv, 'raw-a');
  const b = await connect(srv, 'raw-b');
  a.send('{ "type" : "send" , "to" : "raw-b" , "data" : { "s" : "}]\\"{[\\u00e9" , "n" : [ 1 , 2.5e3 , null , true ] } , "ref" : 9 }');
  const ack = await a.next('ack');
  assert.equal(ack.ref, 9);
  const m = await b.next('message');
  assert.deepEqual(m.data, { s: '}]"{[é', n: [1, 2500, null, true] });
  // an escaped key is still the data field
  a.send('{"type":"send","to":"raw-b","d\\u0061ta":[1]}');
  await a.next('ack');
  assert.deepEqual((await b.next('message')).data, [1]);
  await a.close(); await b.close();
});
