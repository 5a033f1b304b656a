// Tokens after the upgrade and after the answer:
//   - POST /api/tokens answers 201 only once the token is committed
//     (contract v2 §6): a commit that fails is an error, never a 201 for a
//     token that does not exist;
//   - a revoked or expired token's open connections are closed with 4001
//     "token revoked" / "token expired" within 1 s (contract §10).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import crypto from 'node:crypto';
import { rmSync } from 'node:fs';
import {
  BIN, API_KEY, startServer, tempDb, token, connect, openRawWs, frame, needTool, sleep, jwt,
} from './lib.mjs';

const noPrlimit = needTool('prlimit', 'util-linux: makes the database unwritable under a running broker');

// One HTTP/1.1 request on a kept-alive socket; resolves with the status
// and the parsed body of the answer.
function httpOn(sock, method, p, body) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => { sock.off('data', onData); reject(new Error('no HTTP answer: ' + buf)); }, 10000);
    const onData = (d) => {
      buf += d.toString('latin1');
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, i))?.[1] ?? 0);
      if (buf.length < i + 4 + len) return;
      clearTimeout(t);
      sock.off('data', onData);
      const text = buf.slice(i + 4, i + 4 + len);
      let json = null;
      try { json = JSON.parse(text); } catch {}
      resolve({ status: Number(buf.slice(9, 12)), json, text });
    };
    sock.on('data', onData);
    sock.write(requestText(method, p, body));
  });
}

function requestText(method, p, body) {
  const b = body === undefined ? '' : JSON.stringify(body);
  return `${method} ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
}

// Rows of the tokens table for tok, read by `basestation sql` (its own
// read-only connection: what is committed, nothing else).
function tokenRows(db, tok) {
  const prefix = crypto.createHash('sha256').update(tok).digest('hex').slice(0, 8);
  const out = execFileSync(BIN, ['sql', '--json', '--db', db,
    `SELECT count(*) FROM tokens WHERE prefix = '${prefix}'`], { encoding: 'utf8' });
  return JSON.parse(out).rows[0][0];
}

// A POST /api/tokens handled in the same loop turn as a message, while the
// database cannot be written: the turn's COMMIT fails. The broker is
// stopped (SIGSTOP) while both requests are written, so that it reads them
// in one turn, the message first: the token's INSERT then runs inside the
// turn's open transaction. The answer must be an error, not a 201.
test('POST /api/tokens: no 201 when the commit fails', { skip: noPrlimit, timeout: 60000 }, async () => {
  const { dir, db } = tempDb();
  token(db, 'alice'); // creates the database; the broker then writes nothing at start
  // SIGXFSZ ignored (kept across exec): a write past the file size limit
  // fails with EFBIG instead of killing the broker.
  const srv = await startServer({ db, wrap: ['sh', '-c', 'trap "" XFSZ; exec "$0" "$@"'] });
  const pid = srv.proc.pid;
  const limit = (v) => execFileSync('prlimit', ['--pid', String(pid), `--fsize=${v}:`]);
  const http = net.connect(srv.httpPort, '127.0.0.1');
  let a;
  try {
    await new Promise((r) => http.on('connect', r));
    a = await connect(srv, 'alice');
    assert.equal((await httpOn(http, 'GET', '/healthz')).status, 200);

    limit(0); // no file may grow: the WAL cannot take a commit
    const hz = await httpOn(http, 'GET', '/healthz');
    assert.equal(hz.status, 503, 'the database should be unwritable now: ' + hz.text);

    for (let round = 0; round < 3; round++) {
      let answer;
      srv.proc.kill('SIGSTOP');
      try {
        a.send({ type: 'send', to: 'bob', data: { round }, ref: 'r' + round });
        await sleep(100);
        answer = httpOn(http, 'POST', '/api/tokens', { uid: 'late' + round }).catch((e) => e);
        await sleep(100);
      } finally { srv.proc.kill('SIGCONT'); }
      const r = await answer;
      assert.ok(!(r instanceof Error), String(r));
      if (r.status === 201) {
        // Only acceptable if the token really exists.
        assert.equal(tokenRows(db, r.json.token), 1,
          `round ${round}: 201 for a token that was never committed: ${r.text}`);
      } else {
        assert.ok(r.status >= 500, `round ${round}: ${r.status} ${r.text}`);
      }
      const err = await a.next((m) => m.ref === 'r' + round);
      assert.equal(err.type, 'error', 'the message should have failed too: ' + JSON.stringify(err));
    }

    limit('unlimited');
    // Writable again: a 201 names a token already in the database.
    const r = await httpOn(http, 'POST', '/api/tokens', { uid: 'fine' });
    assert.equal(r.status, 201, r.text);
    assert.equal(tokenRows(db, r.json.token), 1);
  } finally {
    try { limit('unlimited'); } catch {}
    srv.proc.kill('SIGCONT');
    http.destroy();
    if (a) a.terminate();
    await srv.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- revoked and expired tokens close their open connections (§10) ----

const noSqlite = needTool('sqlite3', 'Debian package sqlite3: changes the tokens table by hand');

// The close frame of ws within ms: { code, reason, after } (after: ms
// since t0), or null when none came.
async function closeOf(ws, t0, ms = 4000) {
  const f = await ws.waitFor((x) => x.opcode === 8, ms);
  return f ? { code: f.code, reason: f.reason, after: Date.now() - t0 } : null;
}

async function stillOpen(ws) {
  ws.write(frame(1, JSON.stringify({ type: 'ping', ref: 'alive' })));
  return !!(await ws.json((j) => j.type === 'pong' && j.ref === 'alive', 3000));
}

test('`basestation token revoke` closes that token\'s open connections with 4001 within 1 s', async () => {
  const srv = await startServer();
  const open = [];
  try {
    const t1 = token(srv.db, 'rev');
    const t2 = token(srv.db, 'rev');
    const a = await openRawWs(srv.wsPort, t1); open.push(a);
    const b = await openRawWs(srv.wsPort, t1); open.push(b);
    const other = await openRawWs(srv.wsPort, t2); open.push(other);
    execFileSync(BIN, ['token', 'revoke', t1, '--db', srv.db], { stdio: 'ignore' });
    const t0 = Date.now();
    for (const ws of [a, b]) {
      const c = await closeOf(ws, t0);
      assert.ok(c, 'no close frame after the revocation');
      assert.deepEqual([c.code, c.reason], [4001, 'token revoked']);
      // 1 s is the contract; the slack is for a loaded test machine.
      assert.ok(c.after < 2500, `closed ${c.after} ms after the revocation`);
    }
    // The same user's connection with another token is not touched.
    assert.ok(await stillOpen(other));
    await assert.rejects(openRawWs(srv.wsPort, t1), /401/);
  } finally {
    for (const ws of open) ws.destroy();
    await srv.cleanup();
  }
});

test('an opaque token\'s connection is closed with 4001 "token expired" at its expiry', async () => {
  const srv = await startServer();
  let ws;
  try {
    const t = token(srv.db, 'ttl', 'user', 2);
    const t0 = Date.now();
    ws = await openRawWs(srv.wsPort, t);
    const c = await closeOf(ws, t0, 6000);
    assert.ok(c, 'still open after the token expired');
    assert.deepEqual([c.code, c.reason], [4001, 'token expired']);
    assert.ok(c.after >= 1500, `closed after ${c.after} ms, before the expiry`);
  } finally {
    if (ws) ws.destroy();
    await srv.cleanup();
  }
});

test('a JWT\'s connection is closed with 4001 "token expired" at its exp', async () => {
  const secret = 'jwt-secret-for-expiry-test';
  const srv = await startServer({ args: ['--jwt-secret', secret] });
  let ws, keep;
  try {
    const now = Math.floor(Date.now() / 1000);
    const t0 = Date.now();
    ws = await openRawWs(srv.wsPort, jwt(secret, { sub: 'jwt-user', exp: now + 2 }));
    keep = await openRawWs(srv.wsPort, jwt(secret, { sub: 'jwt-user', exp: now + 3600 }));
    const c = await closeOf(ws, t0, 6000);
    assert.ok(c, 'still open after exp');
    assert.deepEqual([c.code, c.reason], [4001, 'token expired']);
    assert.ok(c.after >= 500, `closed after ${c.after} ms, before exp`);
    assert.ok(await stillOpen(keep));
  } finally {
    if (ws) ws.destroy();
    if (keep) keep.destroy();
    await srv.cleanup();
  }
});

test('a token deleted or cut short by hand in the database closes its connections too', { skip: noSqlite }, async () => {
  const srv = await startServer();
  const open = [];
  const sql = (q) => execFileSync('sqlite3', ['-cmd', '.timeout 5000', srv.db, q]);
  const prefix = (t) => crypto.createHash('sha256').update(t).digest('hex').slice(0, 8);
  try {
    const gone = token(srv.db, 'byhand');
    const short = token(srv.db, 'byhand');
    const longer = token(srv.db, 'byhand', 'user', 3);
    const a = await openRawWs(srv.wsPort, gone); open.push(a);
    const b = await openRawWs(srv.wsPort, short); open.push(b);
    const c = await openRawWs(srv.wsPort, longer); open.push(c);
    sql(`DELETE FROM tokens WHERE prefix = '${prefix(gone)}'`);
    let t0 = Date.now();
    assert.deepEqual(await closeOf(a, t0).then((x) => x && [x.code, x.reason]), [4001, 'token revoked']);
    sql(`UPDATE tokens SET expires_at = ${Date.now() - 1000} WHERE prefix = '${prefix(short)}'`);
    t0 = Date.now();
    assert.deepEqual(await closeOf(b, t0).then((x) => x && [x.code, x.reason]), [4001, 'token expired']);
    // An expiry moved later is honoured: not closed at the old one.
    sql(`UPDATE tokens SET expires_at = NULL WHERE prefix = '${prefix(longer)}'`);
    await sleep(4000);
    assert.ok(await stillOpen(c), 'closed at the expiry the token no longer has');
  } finally {
    for (const ws of open) ws.destroy();
    await srv.cleanup();
  }
});
