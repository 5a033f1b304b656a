// Upgrades: a database made by an older schema is migrated at start
// (PRAGMA user_version), its data and epoch kept; a database newer than the
// binary is refused rather than misread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startServer, connect, tempDb, BIN } from './lib.mjs';

const SRC = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
// The newest schema version: one migration per schema/NNN_*.sql file.
const LATEST = readdirSync(path.join(SRC, 'schema')).filter((f) => /^\d{3}_.*\.sql$/.test(f)).length;
const sqlite = (db, sql) => execFileSync('sqlite3', [db], { input: sql, encoding: 'utf8' });

test('a version-1 database is migrated, history and epoch kept', async () => {
  const { db, dir } = tempDb();
  sqlite(db, readFileSync(path.join(SRC, 'schema/001_init.sql'), 'utf8') + `
    PRAGMA user_version = 1;
    INSERT INTO meta VALUES ('epoch', '00112233445566778899aabbccddeeff');
    INSERT INTO messages (seq, ts, sender, to_uid, data) VALUES (7, ${Date.now()}, 'old', 'bob', '"from v1"');
  `);
  const srv = await startServer({ db });
  try {
    for (let v = 2; v <= LATEST; v++) assert.match(srv.logs, new RegExp(`event=store\\.migrate version=${v}\\b`));
    assert.doesNotMatch(srv.logs, /event=store\.migrate version=1\b/);
    assert.equal(sqlite(db, 'PRAGMA user_version;').trim(), String(LATEST));
    assert.equal(sqlite(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_ts';").trim(), '0');
    const b = await connect(srv, 'bob', { query: { since: '0', epoch: '00112233445566778899aabbccddeeff' } });
    assert.equal(b.hello.epoch, '00112233445566778899aabbccddeeff');
    const m = await b.next('message');
    assert.equal(m.seq, 7); assert.equal(m.data, 'from v1');
    assert.equal((await b.next('resumed')).complete, true);
    // New seqs continue after the old ones.
    b.send({ type: 'send', to: 'bob', data: 'new' });
    assert.equal((await b.next('ack')).seq, 8);
    await b.close();
  } finally { await srv.cleanup(); rmSync(dir, { recursive: true, force: true }); }
});

test('a database from a newer version is refused', () => {
  const { db, dir } = tempDb();
  sqlite(db, 'CREATE TABLE x(y); PRAGMA user_version = 99;');
  const r = spawnSync(BIN, ['serve', '--db', db, '--listen', '127.0.0.1:0', '--http', 'off'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /newer than this binary/);
  assert.equal(sqlite(db, 'PRAGMA user_version;').trim(), '99');
  rmSync(dir, { recursive: true, force: true });
});

// Schema 004 keys idempotency rows by seq with a hash of (sender, ref): a
// resend made before the upgrade is still acked with its original seq.
test('a version-3 database keeps its idempotency keys', async () => {
  const { db, dir } = tempDb();
  const now = Date.now();
  const schema = ['001_init.sql', '002_drop_messages_ts.sql', '003_token_changes.sql']
    .map((f) => readFileSync(path.join(SRC, 'schema', f), 'utf8')).join('\n');
  sqlite(db, schema + `
    PRAGMA user_version = 3;
    INSERT INTO meta VALUES ('epoch', '00112233445566778899aabbccddeeff');
    INSERT INTO messages (seq, ts, sender, to_uid, data) VALUES (5, ${now}, 'alice', 'bob', '"x"');
    INSERT INTO idem (sender, ref, seq, ts) VALUES ('alice', '"k1"', 5, ${now});
  `);
  const srv = await startServer({ db });
  try {
    assert.match(srv.logs, /event=store\.migrate version=4\b/);
    assert.equal(sqlite(db, 'SELECT group_concat(name) FROM pragma_table_info(\'idem\');').trim(), 'seq,ts,hash');
    assert.equal(sqlite(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'idem_ts';").trim(), '0');
    const a = await connect(srv, 'alice');
    a.send({ type: 'send', to: 'bob', data: 'x', ref: 'k1' });
    assert.equal((await a.next('ack')).seq, 5);
    a.send({ type: 'send', to: 'bob', data: 'y', ref: 'k2' });
    assert.equal((await a.next('ack')).seq, 6);
    a.send({ type: 'send', to: 'bob', data: 'y', ref: 'k2' });
    assert.equal((await a.next('ack')).seq, 6);
    await a.close();
  } finally { await srv.cleanup(); rmSync(dir, { recursive: true, force: true }); }
});
