// Memory per idle WebSocket connection, as docs/operations.md reports it.
//   node tests/deploy/conn-memory.mjs [N=2000] [more N ...]
// Starts build/basestation (or $BASESTATION_BIN), reads VmRSS from
// /proc/PID/status, opens N idle connections (distinct users, each with its
// connect frame received), waits for the broker to settle, reads VmRSS again
// and prints KiB per connection. Everything stays on 127.0.0.1 and ends by
// itself.
import { startServer, Client, jwt, sleep } from '../blackbox/lib.mjs';
import fs from 'node:fs';

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (!counts.length) counts.push(2000);
const SECRET = 'conn-memory-secret';

const status = (pid) => {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)[1]);
  return { rss: kib('VmRSS'), anon: kib('RssAnon') };
};

for (const n of counts) {
  const srv = await startServer({ args: ['--jwt-secret', SECRET, '--heartbeat', '25', '--idle-timeout', '600', '--max-per-ip', '0'] });
  try {
    await sleep(300);
    const before = status(srv.proc.pid);
    const clients = [];
    for (let i = 0; i < n; i += 200) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 200); j++) {
        const c = new Client(srv.url('?token=' + jwt(SECRET, { sub: 'mem' + j, exp: Math.floor(Date.now() / 1000) + 3600 })));
        batch.push(c.opened.then(() => c.next('connect')));
        clients.push(c);
      }
      await Promise.all(batch);
    }
    await sleep(1000);
    const after = status(srv.proc.pid);
    const per = (after.rss - before.rss) / n;
    console.log(`connections=${n} rss_before_kib=${before.rss} rss_after_kib=${after.rss} ` +
      `anon_before_kib=${before.anon} anon_after_kib=${after.anon} kib_per_connection=${per.toFixed(2)}`);
    for (const c of clients) c.terminate();
  } finally {
    await srv.cleanup();
  }
}
