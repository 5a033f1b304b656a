// Bookkeeping rows nothing needs are deleted, a few at a time, once a
// second: tokens a day past their expiry, token changes the broker has
// read, and inbox cursors (users rows) of uids in no room, with no token,
// not seen for --retention-age and whose messages retention has deleted.
// What is still needed stays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { startServer, sleep, tempDb } from './lib.mjs';

const sqlite = (db, sql) => execFileSync('sqlite3', [db], { input: sql, encoding: 'utf8' }).trim();

test('expired tokens, read token changes and unneeded inbox cursors are swept', async () => {
  const { db, dir } = tempDb();
  let s = await startServer({ db, args: ['--retention-age', '60'] });
  try {
    await s.stop();
    const now = Date.now(), old = now - 2 * 86400 * 1000;
    const tok = (uid, exp) => `(randomblob(32), 'aaaaaaaa', '${uid}', 'user', ${old}, ${exp})`;
    sqlite(db, `
      INSERT INTO tokens (hash, prefix, uid, role, created_at, expires_at) VALUES
        ${tok('expired-long', old + 1000)}, ${tok('expired-now', now - 60000)}, ${tok('keeper', 'NULL')};
      INSERT INTO token_changes (hash) VALUES (randomblob(32)), (randomblob(32));
      INSERT INTO users (uid, cursor, last_seen) VALUES ('gone', 0, ${old}), ('expired-long', 0, ${old}),
        ('member', 0, ${old}), ('keeper', 0, ${old}), ('recent', 0, ${now}), ('unpruned', 5, ${old});
      INSERT INTO members (room, uid, joined_seq, joined_at) VALUES ('r', 'member', 0, ${old});
    `);
    s = await startServer({ db, args: ['--retention-age', '60'] });
    const state = () => [
      sqlite(db, 'SELECT group_concat(uid) FROM (SELECT uid FROM tokens ORDER BY uid);'),
      sqlite(db, 'SELECT count(*) FROM token_changes;'),
      sqlite(db, 'SELECT group_concat(uid) FROM (SELECT uid FROM users ORDER BY uid);'),
    ];
    const want = ['expired-now,keeper', '0', 'keeper,member,recent,unpruned'];
    const deadline = Date.now() + 6000;
    let got;
    while (JSON.stringify(got = state()) !== JSON.stringify(want) && Date.now() < deadline) await sleep(200);
    assert.deepEqual(got, want);
    assert.match(s.logs, /event=store\.sweep deleted=\d+/);
  } finally { await s.cleanup(); rmSync(dir, { recursive: true, force: true }); }
});
