// The command line (contract §1): token issue / revoke, version, help and
// exit codes (0 ok, 1 runtime error, 2 usage error). `sql` is covered in
// admin-sql.test.mjs.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BIN, Client, connect, sleep, startServer, tempDb } from './lib.mjs';

function run(args, env = {}) {
  return new Promise((resolve) => {
    execFile(BIN, args, { encoding: 'utf8', timeout: 20000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.cleanup(); });

test('token issue prints the token alone; it connects; revoke stops it', async () => {
  let r = await run(['token', 'issue', '--uid', 'cli-alice', '--db', srv.db]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\S{20,}\n$/);
  const tok = r.stdout.trim();
  // only the hash is stored, never the token
  const q = await run(['sql', '--json', '--db', srv.db, 'SELECT count(*) FROM tokens WHERE hash = ? OR prefix = ?']);
  assert.equal(q.code, 1); // parameters are not taken on the command line
  r = await run(['sql', '--json', '--db', srv.db, `SELECT count(*) FROM tokens WHERE CAST(hash AS TEXT) LIKE '%${tok.slice(-20)}%' OR prefix LIKE '%${tok.slice(-8)}%'`]);
  assert.deepEqual(JSON.parse(r.stdout).rows, [[0]]);
  const c = await connect(srv, 'cli-alice', { token: tok });
  assert.equal(c.hello.uid, 'cli-alice');
  await c.close();

  r = await run(['token', 'revoke', tok, '--db', srv.db]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  const dead = new Client(srv.url('?token=' + tok));
  await assert.rejects(dead.opened, (e) => e.status === 401);
  // revoking again, or an unknown token: runtime error
  r = await run(['token', 'revoke', tok, '--db', srv.db]);
  assert.equal(r.code, 1);
  r = await run(['token', 'revoke', 'bs_nope', '--db', srv.db]);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.length > 0);
});

test('token issue: role, ttl, BASESTATION_DB', async () => {
  let r = await run(['token', 'issue', '--uid', 'cli-p', '--role', 'producer', '--ttl', '3600'], { BASESTATION_DB: srv.db });
  assert.equal(r.code, 0, r.stderr);
  const c = await connect(srv, 'cli-p', { token: r.stdout.trim() });
  c.send({ type: 'task.create', title: 'from cli', total: 1 });
  assert.equal((await c.next('task')).task.title, 'from cli');
  await c.close();
  r = await run(['sql', '--json', '--db', srv.db, "SELECT role, expires_at IS NOT NULL FROM tokens WHERE uid = 'cli-p'"]);
  assert.deepEqual(JSON.parse(r.stdout).rows, [['producer', 1]]);
});

test('usage errors exit 2 and write to stderr; help and version exit 0', async () => {
  const usage = [
    [], ['nope'], ['token'], ['token', 'nope'], ['token', 'issue'], ['token', 'issue', '--uid'],
    ['token', 'issue', '--uid', ''], ['token', 'issue', '--uid', 'a', '--role', 'root'],
    ['token', 'issue', '--uid', 'a', '--ttl', '-1'], ['token', 'issue', '--uid', 'a', '--ttl', 'x'],
    ['token', 'issue', '--uid', 'a', '--bogus'], ['token', 'revoke'], ['sql'], ['serve', '--bogus'],
    ['serve', '--heartbeat', 'x'],
  ];
  for (const args of usage) {
    const r = await run(args, { BASESTATION_DB: path.join(srv.dir, 'unused.db') });
    assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.code} ${r.stderr}`);
    assert.ok(r.stderr.length > 0, JSON.stringify(args));
  }
  // nothing was created by a refused command
  assert.ok(!existsSync(path.join(srv.dir, 'unused.db')));
  for (const args of [['--help'], ['help'], ['token', '--help'], ['sql', '--help'], ['serve', '--help']]) {
    const r = await run(args);
    assert.equal(r.code, 0, `${JSON.stringify(args)}: ${r.stderr}`);
    assert.match(r.stdout, /usage|--/i);
  }
  const h = await run(['serve', '--help']);
  for (const flag of ['--listen', '--http', '--db', '--api-key', '--admin-key', '--origin', '--heartbeat',
    '--idle-timeout', '--max-message', '--max-outbuf', '--max-http-body']) assert.ok(h.stdout.includes(flag), flag);
  const v = await run(['version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^basestation \d+\.\d+\.\d+/);
});

test('a database that cannot be opened is a runtime error (exit 1)', async () => {
  const { dir } = tempDb();
  const bad = path.join(dir, 'no-such-dir', 'x.db');
  let r = await run(['token', 'issue', '--uid', 'a', '--db', bad]);
  assert.equal(r.code, 1, r.stderr);
  r = await run(['sql', '--db', bad, 'SELECT 1']);
  assert.equal(r.code, 1, r.stderr);
  r = await run(['serve', '--db', bad, '--listen', '127.0.0.1:0', '--http', 'off']);
  assert.equal(r.code, 1, r.stderr);
  rmSync(dir, { recursive: true, force: true });
});

// The CLI is not the event loop: it waits up to 5 s for a write lock that
// the broker (or a backup) holds, where the broker's own connection waits
// 100 ms. Here another process holds the lock for 1.5 s.
test('token issue and revoke wait for a write lock held by another process', async () => {
  // sqlite3 takes the write lock (waiting for the broker's own writes if
  // need be), says so, holds it for 1.5 s, then exits (0 once committed).
  // Resolves once it holds the lock.
  const hold = async (sql) => {
    const p = spawn('sqlite3', ['-bail', srv.db], { stdio: ['pipe', 'pipe', 'inherit'] });
    p.done = new Promise((resolve) => p.on('exit', resolve));
    let out = '';
    const locked = new Promise((resolve, reject) => {
      p.stdout.on('data', (d) => { out += d; if (out.includes('locked')) resolve(); });
      p.on('exit', (code) => reject(new Error(`sqlite3 exited ${code} before it held the lock`)));
    });
    p.stdin.end(`.timeout 5000\nBEGIN IMMEDIATE;\n.print locked\n${sql}\n.shell sleep 1.5\nCOMMIT;\n`);
    holders.push(p);
    await locked;
  };
  const holders = [];
  try {
    await hold("INSERT INTO meta VALUES ('cli-lock', '1');");
    const t0 = Date.now();
    let r = await run(['token', 'issue', '--uid', 'cli-waiter', '--db', srv.db]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 >= 800, 'it waited for the lock');
    assert.equal(await holders[0].done, 0);
    await hold("DELETE FROM meta WHERE key = 'cli-lock';");
    r = await run(['token', 'revoke', r.stdout.trim(), '--db', srv.db]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await holders[1].done, 0);
  } finally { for (const p of holders) p.kill(); }
});
