// A task change whose commit fails (the database cannot be written) is not
// kept in memory either: the producer gets an error, GET and a new
// subscriber see the stored state, the next change after the store is
// writable again takes the next version (no gap for subscribers), and the
// failed change's content never reaches anyone. Without the roll-back the
// broker's memory ran one version ahead of its store: GET answered a state
// that a restart would lose, and the next version skipped one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { startServer, tempDb, token, connect, api, needTool, sleep, BIN } from './lib.mjs';

const noPrlimit = needTool('prlimit', 'util-linux: makes the database unwritable under a running broker');

test('a task change that fails to commit is rolled back in memory', { skip: noPrlimit, timeout: 60000 }, async () => {
  const { dir, db } = tempDb();
  token(db, 'alice'); // creates the database
  // SIGXFSZ ignored (kept across exec): a write past the file size limit
  // fails with EFBIG instead of killing the broker.
  const srv = await startServer({ db, wrap: ['sh', '-c', 'trap "" XFSZ; exec "$0" "$@"'] });
  const limit = (v) => execFileSync('prlimit', ['--pid', String(srv.proc.pid), `--fsize=${v}:`]);
  let w;
  try {
    let r = await api(srv, 'POST', '/api/tasks', { id: 'cf1', title: 'Import', steps: ['fetch', 'save'], owner: 'alice' });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.version, 1);
    w = await connect(srv, 'alice');
    w.send({ type: 'subscribe', task: 'cf1', ref: 's' });
    assert.equal((await w.next('task')).task.version, 1);

    limit(0); // no file may grow: the WAL cannot take a commit
    // the checkpointer empties the WAL when idle: wait until a write fails
    let hz = 200;
    for (let i = 0; i < 50 && hz !== 503; i++) {
      hz = (await fetch(srv.http + '/healthz')).status;
      if (hz !== 503) await sleep(100);
    }
    assert.equal(hz, 503, 'the database should be unwritable now');

    r = await api(srv, 'POST', '/api/tasks/cf1/progress', { step: 0, status: 'running', note: 'never stored' });
    assert.ok(r.status >= 500, `a change that was not stored answered ${r.status} ${r.text}`);
    // the memory is the store's again
    r = await api(srv, 'GET', '/api/tasks/cf1');
    assert.equal(r.status, 200);
    assert.equal(r.json.version, 1, 'GET answers a version that was never stored: ' + r.text);
    assert.equal(r.json.steps[0].status, 'pending');
    assert.notEqual(r.json.note, 'never stored');

    limit('unlimited');
    for (let i = 0; i < 50 && (await fetch(srv.http + '/healthz')).status !== 200; i++) await sleep(100);
    r = await api(srv, 'POST', '/api/tasks/cf1/progress', { step: 0, status: 'running', note: 'stored' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.version, 2, 'the version after the failed one skipped one');
    // the subscriber: version 2 next, the failed change never seen
    const m = await w.next('task');
    assert.equal(m.task.version, 2);
    assert.equal(m.task.note, 'stored');
    // and the store agrees
    const row = JSON.parse(execFileSync(BIN, ['sql', '--json', '--db', db,
      "SELECT version FROM tasks WHERE id = 'cf1'"], { encoding: 'utf8' })).rows[0][0];
    assert.equal(row, 2);
  } finally {
    try { limit('unlimited'); } catch {}
    if (w) w.terminate();
    await srv.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Refused before the commit: another process holds the database's write
// lock (the broker waits 100 ms for it, not longer: the loop must not
// block), so the turn's transaction cannot begin and the change is refused
// at once. The memory must not keep it either.
test('a task change refused before its commit (the write lock held elsewhere) is not kept in memory', { skip: needTool('sqlite3', 'holds the write lock'), timeout: 60000 }, async () => {
  const srv = await startServer();
  let holder;
  try {
    let r = await api(srv, 'POST', '/api/tasks', { id: 'lk1', title: 'Import', steps: ['fetch', 'save'], owner: 'alice' });
    assert.equal(r.status, 201, r.text);
    holder = spawn('sqlite3', ['-bail', srv.db], { stdio: ['pipe', 'pipe', 'inherit'] });
    const done = new Promise((resolve) => holder.on('exit', resolve));
    let out = '';
    const locked = new Promise((resolve, reject) => {
      holder.stdout.on('data', (d) => { out += d; if (out.includes('locked')) resolve(); });
      holder.on('exit', (code) => reject(new Error(`sqlite3 exited ${code} before it held the lock`)));
    });
    holder.stdin.end(".timeout 5000\nBEGIN IMMEDIATE;\nINSERT INTO meta VALUES ('task-lock', '1');\n.print locked\n.shell sleep 2\nCOMMIT;\n");
    await locked;
    r = await api(srv, 'POST', '/api/tasks/lk1/progress', { step: 0, status: 'running', note: 'never stored' });
    assert.ok(r.status >= 500, `a change that was not stored answered ${r.status} ${r.text}`);
    r = await api(srv, 'GET', '/api/tasks/lk1');
    assert.equal(r.json.version, 1, 'GET answers a version that was never stored: ' + r.text);
    assert.equal(r.json.steps[0].status, 'pending');
    assert.equal(await done, 0);
    r = await api(srv, 'POST', '/api/tasks/lk1/progress', { step: 0, status: 'running', note: 'stored' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.version, 2, 'the version after the refused one skipped one');
  } finally {
    if (holder) holder.kill();
    await srv.cleanup();
  }
});
