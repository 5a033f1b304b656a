// Issue 11 item 5: what producers can make the broker hold in tasks is
// bounded: --max-tasks tasks, --max-steps steps each, titles of 256 bytes,
// notes of 4 KiB (past them: HTTP 400 with code too_large, WebSocket error
// too_large); tasks nobody updates go after --task-idle-retention; and a
// step costs little memory (VmRSS; on a sanitizer build with its
// quarantine off, see MEMORY_ENV).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, api, sleep, frame, rssBytes, metricValue, MEMORY_ENV } from './lib.mjs';

const MiB = 1024 * 1024;

const steps = (n, len = 8) => Array.from({ length: n }, (_, i) => `s${i}-`.padEnd(len, 'x'));

function tooLarge(r, what) {
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal(r.json.code, 'too_large', what);
  assert.equal(typeof r.json.error, 'string');
}

test('limits on one task: steps, title, step names, note, watchers', async () => {
  const srv = await startServer({ args: ['--max-steps', '5'] });
  let prod;
  try {
    const ok = (b) => api(srv, 'POST', '/api/tasks', { owner: 'o', ...b });
    assert.equal((await ok({ id: 'five', title: 'x', steps: steps(5) })).status, 201);
    tooLarge(await ok({ id: 'six', title: 'x', steps: steps(6) }), '6 steps over --max-steps 5');
    assert.equal((await ok({ id: 't256', title: 'é'.repeat(128) })).status, 201);
    tooLarge(await ok({ id: 't257', title: 'x'.repeat(257) }), 'title of 257 bytes');
    tooLarge(await ok({ id: 'n257', title: 'x', steps: ['y'.repeat(257)] }), 'step name of 257 bytes');
    tooLarge(await ok({ id: 'w257', title: 'x', watchers: Array.from({ length: 257 }, (_, i) => 'w' + i) }), '257 watchers');
    for (const id of ['six', 't257', 'n257', 'w257']) assert.equal((await api(srv, 'GET', '/api/tasks/' + id)).status, 404, id);
    // Bad fields stay bad_request / plain 400.
    const bad = await ok({ id: 'empty', title: '' });
    assert.equal(bad.status, 400); assert.equal(bad.json.code, undefined);

    assert.equal((await api(srv, 'POST', '/api/tasks/five/progress', { note: 'n'.repeat(4096) })).status, 200);
    tooLarge(await api(srv, 'POST', '/api/tasks/five/progress', { note: 'n'.repeat(4097) }), 'note of 4097 bytes');
    assert.equal((await api(srv, 'GET', '/api/tasks/five')).json.note.length, 4096);

    prod = await connect(srv, 'p', { role: 'producer' });
    prod.send({ type: 'task.create', id: 'ws6', title: 'x', steps: steps(6), ref: 1 });
    let e = await prod.next('error');
    assert.equal(e.code, 'too_large'); assert.equal(e.ref, 1);
    prod.send({ type: 'task.update', task: 'five', note: 'n'.repeat(4097), ref: 2 });
    e = await prod.next('error');
    assert.equal(e.code, 'too_large'); assert.equal(e.ref, 2);
    prod.send({ type: 'task.create', id: 'ws5', title: 'x', steps: steps(5), ref: 3 });
    assert.equal((await prod.next('task')).task.steps.length, 5);
  } finally {
    if (prod) await prod.close();
    await srv.cleanup();
  }
});

test('--max-tasks: unfinished tasks are refused past it, the oldest finished one makes room', async () => {
  const srv = await startServer({ args: ['--max-tasks', '20'] });
  let prod;
  try {
    for (let i = 0; i < 20; i++) {
      assert.equal((await api(srv, 'POST', '/api/tasks', { id: 'k' + i, title: 't', total: 1, owner: 'o' })).status, 201);
    }
    tooLarge(await api(srv, 'POST', '/api/tasks', { id: 'k20', title: 't', owner: 'o' }), 'task 21 of 20');
    prod = await connect(srv, 'p', { role: 'producer' });
    prod.send({ type: 'task.create', id: 'k20', title: 't', ref: 'x' });
    assert.equal((await prod.next('error')).code, 'too_large');
    assert.equal(await metricValue(srv, 'basestation_tasks'), 20);

    // Finish two: the one finished first is evicted by the next create.
    await api(srv, 'POST', '/api/tasks/k7/progress', { done: 1 });
    await sleep(5);
    await api(srv, 'POST', '/api/tasks/k3/progress', { done: 1 });
    assert.equal((await api(srv, 'POST', '/api/tasks', { id: 'k20', title: 't', owner: 'o' })).status, 201);
    assert.equal((await api(srv, 'GET', '/api/tasks/k7')).status, 404);
    assert.equal((await api(srv, 'GET', '/api/tasks/k3')).status, 200);
    assert.equal(await metricValue(srv, 'basestation_tasks'), 20);
    prod.send({ type: 'task.create', id: 'k21', title: 't', ref: 'y' });
    assert.equal((await prod.next('task')).task.id, 'k21');
    assert.equal((await api(srv, 'GET', '/api/tasks/k3')).status, 404);
    tooLarge(await api(srv, 'POST', '/api/tasks', { id: 'k22', title: 't', owner: 'o' }), 'none finished');
  } finally {
    if (prod) await prod.close();
    await srv.cleanup();
  }
});

test('--task-idle-retention: unfinished tasks nobody updates are removed', async () => {
  const srv = await startServer({ args: ['--task-idle-retention', '1'] });
  try {
    await api(srv, 'POST', '/api/tasks', { id: 'stale', title: 't', total: 5, owner: 'o' });
    await api(srv, 'POST', '/api/tasks', { id: 'busy', title: 't', total: 50, owner: 'o' });
    let done = 0;
    const deadline = Date.now() + 8000;
    while ((await api(srv, 'GET', '/api/tasks/stale')).status === 200 && Date.now() < deadline) {
      await api(srv, 'POST', '/api/tasks/busy/progress', { done: ++done });
      await sleep(200);
    }
    assert.equal((await api(srv, 'GET', '/api/tasks/stale')).status, 404);
    assert.equal((await api(srv, 'GET', '/api/tasks/busy')).status, 200);
    assert.equal(await metricValue(srv, 'basestation_tasks'), 1);
  } finally { await srv.cleanup(); }
});

// Pipelined task.create frames, batch by batch; returns the replies.
async function creates(prod, tag, n, nsteps, nameLen) {
  const out = [];
  for (let i = 0; i < n; i += 100) {
    const k = Math.min(100, n - i);
    for (let j = 0; j < k; j++) {
      prod.send({ type: 'task.create', id: `${tag}-${i + j}`, title: 'memory', steps: steps(nsteps, nameLen), owner: 'o' });
    }
    for (let j = 0; j < k; j++) out.push(await prod.next((m) => m.type === 'task' || m.type === 'error', 20000));
    prod.all.length = 0;
  }
  return out;
}

test('2,000 creates of 256 steps are refused; 2,000 of 100 steps grow RSS by less than 100 MB', async () => {
  const srv = await startServer({ args: ['--rate', '0', '--max-tasks-per-producer', '0'], env: MEMORY_ENV });
  let prod;
  try {
    prod = await connect(srv, 'p', { role: 'producer' });
    await creates(prod, 'warm', 50, 100, 64);
    const before = rssBytes(srv);
    const refused = await creates(prod, 'big', 2000, 256, 64);
    assert.ok(refused.every((m) => m.type === 'error' && m.code === 'too_large'));
    const made = await creates(prod, 'ok', 2000, 100, 64);
    assert.ok(made.every((m) => m.type === 'task' && m.task.steps.length === 100));
    const grew = rssBytes(srv) - before;
    assert.equal(await metricValue(srv, 'basestation_tasks'), 2050);
    assert.ok(grew < 100 * MiB, `RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
    // Still whole: a subscriber gets the full snapshot of one of them.
    const r = await api(srv, 'GET', '/api/tasks/ok-1999');
    assert.equal(r.json.steps.length, 100);
    assert.equal(r.json.steps[99].name, steps(100, 64)[99]);
  } finally {
    if (prod) await prod.close();
    await srv.cleanup();
  }
});

test('snapshots are built when sent: a subscribe racing an update sees each version once', async () => {
  const srv = await startServer({ args: ['--rate', '0'] });
  let prod;
  try {
    prod = await connect(srv, 'p', { role: 'producer' });
    prod.send({ type: 'task.create', id: 'race', title: 'r', steps: steps(3), ref: 'c' });
    assert.equal((await prod.next('task')).task.version, 1);
    // Both frames in one TCP write: one read, one loop turn, so the update
    // is not committed yet when the subscribe is handled. The subscriber's
    // first snapshot is version 2 all the same, sent once, after the commit.
    prod.ws._socket.write(Buffer.concat([
      frame(1, JSON.stringify({ type: 'task.update', task: 'race', step: 0, status: 'running' })),
      frame(1, JSON.stringify({ type: 'subscribe', task: 'race', ref: 's' })),
    ]));
    await prod.next('ack');
    for (let i = 1; i < 3; i++) {
      prod.send({ type: 'task.update', task: 'race', step: i, status: 'running' });
      await prod.next('ack');
    }
    const deadline = Date.now() + 5000;
    const seen = () => prod.all.filter((m) => m.type === 'task' && m.ref !== 'c').map((m) => m.task.version);
    while (seen().at(-1) !== 4 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(seen(), [2, 3, 4]);
    const snaps = prod.all.filter((m) => m.type === 'task');
    assert.equal(snaps.find((m) => m.ref === 's').task.version, 2);
    // Not before version 2 is committed: after the update's ack.
    const ack = prod.all.findIndex((m) => m.type === 'ack' && m.version === 2);
    assert.ok(ack >= 0 && ack < prod.all.findIndex((m) => m.ref === 's'), 'snapshot before the commit');
    assert.deepEqual(snaps.at(-1).task.steps.map((s) => s.status), ['running', 'running', 'running']);
  } finally {
    if (prod) await prod.close();
    await srv.cleanup();
  }
});
