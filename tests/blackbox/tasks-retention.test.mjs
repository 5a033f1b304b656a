// Finished tasks are kept for --task-retention seconds, then pruned;
// running tasks are never pruned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, api, sleep } from './lib.mjs';

test('finished tasks are pruned after the retention time', async () => {
  const srv = await startServer({ args: ['--task-retention', '1'] });
  try {
    await api(srv, 'POST', '/api/tasks', { id: 'old', title: 'old', total: 1, owner: 'o' });
    await api(srv, 'POST', '/api/tasks/old/progress', { done: 1 });
    await api(srv, 'POST', '/api/tasks', { id: 'live', title: 'live', total: 2, owner: 'o' });
    await api(srv, 'POST', '/api/tasks/live/progress', { done: 1 });
    const deadline = Date.now() + 6000;
    while ((await api(srv, 'GET', '/api/tasks/old')).status === 200 && Date.now() < deadline) await sleep(200);
    assert.equal((await api(srv, 'GET', '/api/tasks/old')).status, 404);
    assert.equal((await api(srv, 'GET', '/api/tasks/live')).status, 200);
  } finally { await srv.cleanup(); }
});
