// The seed page's shape: {"id":X} without a type answers undone/finish
// with a list of {name,status,duration}, then keeps pushing until done.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, api } from './lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('seed 000 page protocol works unchanged', async () => {
  await api(srv, 'POST', '/api/tasks', { id: '2', title: '流程2', steps: ['准备', '执行', '完成'], owner: 'u1' });
  const c = await connect(srv, 'u1');
  c.send({ id: 2 });
  const first = await c.next('undone');
  assert.equal(first.message, '未完成');
  assert.deepEqual(first.list.map((x) => [x.name, x.status]), [['准备', 'unfinish'], ['执行', 'unfinish'], ['完成', 'unfinish']]);
  for (let i = 0; i < 3; i++) {
    await api(srv, 'POST', '/api/tasks/2/progress', { step: i, status: 'running' });
    await api(srv, 'POST', '/api/tasks/2/progress', { step: i, status: 'finish' });
  }
  const pushes = [];
  for (;;) {
    const m = await c.next((x) => x.type === 'undone' || x.type === 'finish');
    pushes.push(m);
    if (m.type === 'finish') break;
  }
  const last = pushes.at(-1);
  assert.equal(last.projectStatus, 'done');
  assert.equal(last.message, '已完成');
  assert.ok(last.list.every((x) => x.status === 'finish' && typeof x.duration === 'number'));
  assert.ok(pushes.slice(0, -1).every((m) => m.projectStatus === 'undone'));
  // Done: no more pushes in that shape.
  await api(srv, 'POST', '/api/tasks/2/progress', { note: 'after' });
  assert.ok(await c.none((x) => x.type === 'undone' || x.type === 'finish', 300));
  // A finished task answers finish at once.
  c.send({ id: '2' });
  const f = await c.next('finish');
  assert.equal(f.list.length, 3);
  c.send({ id: 99 });
  assert.equal((await c.next('error')).code, 'not_found');
  await c.close();
});
