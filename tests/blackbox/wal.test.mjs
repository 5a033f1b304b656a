// The WAL stays bounded under a write flood: > 100 MB of stored messages
// sent as fast as the broker takes them keep the -wal file under 64 MiB,
// the main database file grows (checkpoints copy the log into it),
// /metrics counts checkpoints that copied frames, and once the flood is
// over the -wal file is emptied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { startServer, connect, sleep } from './lib.mjs';

const MiB = 1024 * 1024;
const PAYLOAD = 10 * 1024; // bytes of `data` per message
const TOTAL = 10240; // messages: 100 MiB of payload
const SENDERS = 2;
const INFLIGHT = 64; // per sender

const size = (f) => { try { return statSync(f).size; } catch { return 0; } };

async function metrics(srv) {
  const r = await fetch(srv.http + '/metrics');
  const m = new Map();
  for (const line of (await r.text()).split('\n')) {
    const x = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (x) m.set(x[1], Number(x[2]));
  }
  return m;
}

test('a 100 MiB flood keeps the WAL under 64 MiB and fills the database', async () => {
  const srv = await startServer({ args: ['--rate', '0'] });
  const clients = [];
  let sampler;
  try {
    const wal = srv.db + '-wal';
    let walMax = 0, samples = 0;
    sampler = setInterval(() => { walMax = Math.max(walMax, size(wal)); samples++; }, 10);
    // One frame, sent again and again: nothing to build per message.
    const frame = JSON.stringify({ type: 'send', to: 'wal-sink', data: 'x'.repeat(PAYLOAD - 2) });
    let sent = 0, acked = 0, finish, fail;
    const done = new Promise((resolve, reject) => { finish = resolve; fail = reject; });
    for (let i = 0; i < SENDERS; i++) clients.push(await connect(srv, 'wal-src' + i));
    const t0 = Date.now();
    for (const c of clients) {
      const more = () => { if (sent < TOTAL) { sent++; c.ws.send(frame); } };
      c.ws.on('message', (d) => {
        const m = JSON.parse(d);
        if (m.type !== 'ack') return fail(new Error('unexpected ' + d.toString().slice(0, 200)));
        if (++acked === TOTAL) finish();
        more();
      });
      c.ws.on('close', () => fail(new Error('sender closed')));
      for (let k = 0; k < INFLIGHT; k++) more();
    }
    await done;
    const secs = (Date.now() - t0) / 1000;
    walMax = Math.max(walMax, size(wal));
    const m = await metrics(srv);
    const db = size(srv.db);
    console.log(`# ${TOTAL} x ${PAYLOAD} B in ${secs.toFixed(1)} s; wal max ${(walMax / MiB).toFixed(1)} MiB ` +
      `(${samples} samples), db ${(db / MiB).toFixed(1)} MiB; ` +
      [...m].filter(([k]) => k.startsWith('basestation_wal')).map(([k, v]) => `${k}=${v}`).join(' '));
    assert.equal(acked, TOTAL);
    assert.ok(samples >= 10, `only ${samples} samples of the WAL size`);
    assert.ok(walMax < 64 * MiB, `WAL reached ${walMax} bytes`);
    // The log was copied into the database, not kept beside it.
    assert.ok(db > 50 * MiB, `database file is ${db} bytes after ${TOTAL * PAYLOAD} bytes stored`);
    const copied = m.get('basestation_wal_checkpointed_frames_total');
    assert.ok(copied * 4096 > 50 * MiB, `checkpoints copied ${copied} frames`);
    // Once nothing is written, the log is emptied (TRUNCATE when idle).
    const idleEnd = Date.now() + 10000;
    while (size(wal) > 0 && Date.now() < idleEnd) await sleep(50);
    assert.equal(size(wal), 0, 'the -wal file is not emptied when idle');
  } finally {
    clearInterval(sampler);
    for (const c of clients) c.terminate();
    await sleep(50);
    await srv.cleanup();
  }
});
