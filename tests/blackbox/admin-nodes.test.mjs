// GET /admin/nodes on one node (protocol §7): the admin key as the other
// /admin endpoints; the list holds this node alone, with its name (--node),
// open connections, the newest seq, lag 0, the version `basestation
// version` prints, and its start time.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BIN, startServer, connect, api, ADMIN_KEY } from './lib.mjs';

let srv, t0;
before(async () => { t0 = Date.now(); srv = await startServer({ args: ['--node', 'solo-1', '--rate', '0'] }); });
after(async () => { await srv.cleanup(); });

test('one node lists itself; the admin key is needed', async () => {
  assert.equal((await api(srv, 'GET', '/admin/nodes', undefined, null)).status, 401);
  assert.equal((await api(srv, 'GET', '/admin/nodes', undefined, 'wrong')).status, 401);
  assert.equal((await api(srv, 'POST', '/admin/nodes', {}, ADMIN_KEY)).status, 405);

  const a = await connect(srv, 'nodes-alice');
  const b = await connect(srv, 'nodes-bob');
  try {
    a.send({ type: 'send', to: 'nodes-bob', data: 'hi' });
    const seq = (await a.next('ack')).seq;
    const r = await api(srv, 'GET', '/admin/nodes', undefined, ADMIN_KEY);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.nodes.length, 1, r.text);
    const n = r.json.nodes[0];
    const version = execFileSync(BIN, ['version'], { encoding: 'utf8' }).trim().replace(/^basestation /, '');
    assert.equal(n.node, 'solo-1');
    assert.equal(n.connections, 2);
    assert.equal(n.applied_seq, seq);
    assert.equal(n.lag, 0);
    assert.equal(n.version, version);
    assert.ok(n.since >= t0 - 1000 && n.since <= Date.now(), `since ${n.since}`);
    await b.close();
    // the connection count follows (the close is seen within a moment)
    let c;
    for (let i = 0; i < 50; i++) {
      c = (await api(srv, 'GET', '/admin/nodes', undefined, ADMIN_KEY)).json.nodes[0].connections;
      if (c === 1) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(c, 1);
  } finally { await a.close(); await b.close(); }
});

test('without --node the name is <hostname>-<ws port>', async () => {
  const other = await startServer();
  try {
    const r = await api(other, 'GET', '/admin/nodes', undefined, ADMIN_KEY);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.nodes.length, 1);
    // --listen 127.0.0.1:0: the port as given
    assert.match(r.json.nodes[0].node, /^.+-0$/);
  } finally { await other.cleanup(); }
});
