// The latest snapshot of every task is the truth after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, connect, api, tempDb } from './lib.mjs';

test('restart between updates keeps the snapshot and the version', async () => {
  const { db, dir } = tempDb();
  let srv, w;
  try {
    srv = await startServer({ db });
    await api(srv, 'POST', '/api/tasks', { id: 'r1', title: 'R', steps: ['a', 'b'], total: 5, owner: 'o', watchers: ['w'] });
    await api(srv, 'POST', '/api/tasks/r1/progress', { step: 0, status: 'finish', done: 2, note: 'half' });
    assert.equal((await srv.stop()).code, 0);
    srv = await startServer({ db });
    let r = await api(srv, 'GET', '/api/tasks/r1');
    assert.equal(r.json.version, 2);
    assert.equal(r.json.done, 2); assert.equal(r.json.note, 'half');
    assert.deepEqual(r.json.watchers, ['w']);
    assert.equal(r.json.steps[0].status, 'finish');
    w = await connect(srv, 'w');
    w.send({ type: 'subscribe', task: 'r1' });
    assert.equal((await w.next('task')).task.version, 2);
    r = await api(srv, 'POST', '/api/tasks/r1/progress', { step: 1, status: 'finish' });
    assert.equal(r.json.version, 3);
    assert.equal((await w.next('task')).task.version, 3);
    await w.close();
    await srv.cleanup(); // checks the exit status
  } finally {
    // Also when an assertion failed: nothing may keep running.
    if (w) w.terminate();
    if (srv) await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
