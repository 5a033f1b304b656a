// Tasks over HTTP: create, read, progress; step transitions validated;
// status derived from steps and counters.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, api } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('create, get, progress through every step', async () => {
  let r = await api(srv, 'POST', '/api/tasks', { id: 'job1', title: 'Import', steps: ['fetch', 'parse', 'save'], owner: 'alice', watchers: ['bob'] });
  assert.equal(r.status, 201);
  const t = r.json;
  assert.equal(t.id, 'job1'); assert.equal(t.title, 'Import'); assert.equal(t.owner, 'alice');
  assert.equal(t.status, 'pending'); assert.equal(t.version, 1);
  assert.deepEqual(t.steps.map((s) => [s.name, s.status, s.duration]), [['fetch', 'pending', null], ['parse', 'pending', null], ['save', 'pending', null]]);
  assert.equal(typeof t.updated_at, 'number');
  r = await api(srv, 'GET', '/api/tasks/job1');
  assert.equal(r.status, 200); assert.equal(r.json.version, 1);

  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'running' });
  assert.equal(r.status, 200);
  assert.equal(r.json.status, 'running'); assert.equal(r.json.version, 2);
  assert.equal(r.json.steps[0].status, 'running');
  assert.equal(typeof r.json.steps[0].started_at, 'number');
  await new Promise((res) => setTimeout(res, 30));
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'finish', note: 'fetched 3 files' });
  const s0 = r.json.steps[0];
  assert.equal(s0.status, 'finish');
  assert.equal(s0.duration, s0.finished_at - s0.started_at);
  assert.ok(s0.duration >= 25);
  assert.equal(r.json.note, 'fetched 3 files');
  // a finished step cannot go back
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'pending' });
  assert.equal(r.status, 400); assert.ok(r.json.error);
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'running' });
  assert.equal(r.status, 400);
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 3, status: 'running' });
  assert.equal(r.status, 400);
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: -1, status: 'running' });
  assert.equal(r.status, 400);
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 1, status: 'sideways' });
  assert.equal(r.status, 400);
  // finishing a pending step stamps both times
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 1, status: 'finish' });
  assert.equal(r.json.steps[1].duration, 0);
  r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 2, status: 'finish' });
  assert.equal(r.json.status, 'done');
  assert.equal(r.json.version, 5);
  r = await api(srv, 'GET', '/api/tasks/job1');
  assert.equal(r.json.version, 5); assert.equal(r.json.status, 'done');
});

test('counters: done reaching total finishes the task', async () => {
  let r = await api(srv, 'POST', '/api/tasks', { title: 'Download images', total: 10, owner: 'alice' });
  assert.equal(r.status, 201);
  const id = r.json.id;
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.equal(r.json.done, 0); assert.equal(r.json.total, 10);
  r = await api(srv, 'POST', `/api/tasks/${id}/progress`, { done: 4 });
  assert.equal(r.json.status, 'running'); assert.equal(r.json.done, 4);
  r = await api(srv, 'POST', `/api/tasks/${id}/progress`, { done: 11 });
  assert.equal(r.status, 400);
  r = await api(srv, 'POST', `/api/tasks/${id}/progress`, { done: 10 });
  assert.equal(r.json.status, 'done');
});

test('a failed step fails the task; explicit cancel', async () => {
  let r = await api(srv, 'POST', '/api/tasks', { title: 'x', steps: ['a', 'b'], owner: 'o' });
  const id = r.json.id;
  r = await api(srv, 'POST', `/api/tasks/${id}/progress`, { step: 0, status: 'failed' });
  assert.equal(r.json.status, 'failed');
  r = await api(srv, 'POST', '/api/tasks', { title: 'y', steps: ['a'], owner: 'o' });
  r = await api(srv, 'POST', `/api/tasks/${r.json.id}/progress`, { status: 'canceled' });
  assert.equal(r.json.status, 'canceled');
});

test('bad input: 400s, 404s, 409, 401', async () => {
  const bad = [
    {}, { title: '' }, { title: 'x' }, { title: 'x', owner: 5 }, { title: 'x', owner: 'o', steps: 'abc' },
    { title: 'x', owner: 'o', steps: [''] }, { title: 'x', owner: 'o', total: -1 }, { title: 'x', owner: 'o', watchers: [1] },
    { title: 'x', owner: 'o', id: 'a/b' }, { title: 'x', owner: 'o', id: 'x'.repeat(129) },
  ];
  for (const b of bad) assert.equal((await api(srv, 'POST', '/api/tasks', b)).status, 400, JSON.stringify(b));
  assert.equal((await api(srv, 'POST', '/api/tasks', '{"title":')).status, 400);
  assert.equal((await api(srv, 'POST', '/api/tasks', '[1]')).status, 400);
  assert.equal((await api(srv, 'POST', '/api/tasks', { id: 'dup', title: 'x', owner: 'o' })).status, 201);
  assert.equal((await api(srv, 'POST', '/api/tasks', { id: 'dup', title: 'x', owner: 'o' })).status, 409);
  assert.equal((await api(srv, 'GET', '/api/tasks/nope')).status, 404);
  assert.equal((await api(srv, 'POST', '/api/tasks/nope/progress', { done: 1 })).status, 404);
  assert.equal((await api(srv, 'POST', '/api/tasks/dup/progress', { done: 'x' })).status, 400);
  assert.equal((await api(srv, 'POST', '/api/tasks/dup/progress', '{')).status, 400);
  assert.equal((await api(srv, 'GET', '/api/tasks/dup', undefined, null)).status, 401);
  assert.equal((await api(srv, 'GET', '/api/tasks/dup', undefined, 'wrong')).status, 401);
});
