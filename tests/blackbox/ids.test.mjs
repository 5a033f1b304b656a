// Contract §6 (v2): an id or uid containing a NUL byte or a control
// character is a 400 / `bad_request`, never truncated. Every id the HTTP
// API and the WebSocket commands take: task ids in paths and bodies, uids
// in tokens, publish `to`/`from`, task `owner`/`watchers`, room names.
// (A \u0000 in JSON is refused by the parser; a %00 in a path is not.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, api, connect } from './lib.mjs';

let srv;
before(async () => {
  srv = await startServer();
  const r = await api(srv, 'POST', '/api/tasks', { id: 'a', title: 'A', owner: 'alice', steps: ['s'] });
  assert.equal(r.status, 201, r.text);
});
after(async () => { await srv.cleanup(); });

// Spellings of "a" followed by something that must not be cut off.
// C1 controls (U+0080..U+009F) too, as for uids.
const BAD = ['\u0000zzz', '\u0000', '\u0001', '\u001f', '\u007f', '\n', '\u0080', '\u009f'];

test('HTTP: a task id in the path with %00 or a control character is 400, not task "a"', async () => {
  assert.equal((await api(srv, 'GET', '/api/tasks/a')).status, 200);
  // C1 controls (UTF-8 C2 80..C2 9F) and bytes that are not UTF-8 too.
  for (const enc of ['%00zzz', '%00', '%01', '%1F', '%7f', '%0A', '%0d%0a', '%C2%80', '%c2%9f', '%FF', '%C2']) {
    let r = await api(srv, 'GET', `/api/tasks/a${enc}`);
    assert.equal(r.status, 400, `GET a${enc}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json?.error, 'string');
    r = await api(srv, 'POST', `/api/tasks/a${enc}/progress`, { step: 0, status: 'running' });
    assert.equal(r.status, 400, `progress a${enc}: ${r.status} ${r.text}`);
  }
  // task "a" was not touched
  const r = await api(srv, 'GET', '/api/tasks/a');
  assert.equal(r.json.steps[0].status, 'pending', r.text);
});

test('HTTP: ids and uids in bodies with a NUL or a control character are 400 and create nothing', async () => {
  for (const bad of BAD) {
    const cases = [
      ['/api/tasks', { id: 'b' + bad, title: 'T', owner: 'alice' }],
      ['/api/tasks', { id: 'b', title: 'T', owner: 'alice' + bad }],
      ['/api/tasks', { id: 'b', title: 'T', owner: 'alice', watchers: ['bob', 'carol' + bad] }],
      ['/api/tokens', { uid: 'alice' + bad }],
      ['/api/publish', { to: 'alice' + bad, data: 1 }],
      ['/api/publish', { room: 'lobby' + bad, data: 1 }],
      ['/api/publish', { to: 'alice', from: 'ops' + bad, data: 1 }],
    ];
    for (const [p, body] of cases) {
      const r = await api(srv, 'POST', p, body);
      assert.equal(r.status, 400, `${p} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.error, 'string');
    }
  }
  // nothing was made under the cut-short names
  assert.equal((await api(srv, 'GET', '/api/tasks/b')).status, 404);
  // the same fields without the bad byte are fine
  const r = await api(srv, 'POST', '/api/tasks', { id: 'b', title: 'T', owner: 'alice', watchers: ['carol'] });
  assert.equal(r.status, 201, r.text);
});

test('WebSocket: ids in commands with a NUL or a control character are bad_request', async () => {
  const prod = await connect(srv, 'worker', { role: 'producer' });
  try {
    let n = 0;
    for (const bad of BAD) {
      for (const frame of [
        { type: 'task.create', id: 'c' + bad, title: 'T', owner: 'alice' },
        { type: 'task.create', id: 'c', title: 'T', owner: 'alice' + bad },
        { type: 'task.create', id: 'c', title: 'T', owner: 'alice', watchers: ['bob' + bad] },
        { type: 'task.update', task: 'a' + bad, step: 0, status: 'running' },
        { type: 'subscribe', task: 'a' + bad },
        { type: 'unsubscribe', task: 'a' + bad },
        { type: 'send', to: 'alice' + bad, data: 1 },
        { type: 'publish', room: 'lobby' + bad, data: 1 },
        { type: 'join', room: 'lobby' + bad },
        { type: 'leave', room: 'lobby' + bad },
        { type: 'presence', room: 'lobby' + bad },
      ]) {
        // one answer per frame, in order (a NUL is refused by the JSON
        // parser already, before the ref is read)
        const ref = 'r' + n++;
        prod.send({ ...frame, ref });
        const e = await prod.next();
        assert.equal(e.type, 'error', `${JSON.stringify(frame)}: ${JSON.stringify(e)}`);
        assert.equal(e.code, 'bad_request', `${JSON.stringify(frame)}: ${JSON.stringify(e)}`);
        if (e.ref !== undefined) assert.equal(e.ref, ref);
      }
    }
  } finally {
    await prod.close();
  }
  // task "a" was not updated, "c" was not created
  assert.equal((await api(srv, 'GET', '/api/tasks/a')).json.steps[0].status, 'pending');
  assert.equal((await api(srv, 'GET', '/api/tasks/c')).status, 404);
});
