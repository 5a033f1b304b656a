// Turn bench/run's results into docs/benchmarks.md and the chart data.
//   node bench/report.mjs RESULTS.jsonl MACHINE.txt OUT.md DATADIR
// The profile section comes verbatim from bench/profile.md (written by hand
// from bench/profile runs); everything else is generated.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

const [resultsPath, machinePath, outPath, dataDir] = process.argv.slice(2);
const rows = readFileSync(resultsPath, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const machine = Object.fromEntries(readFileSync(machinePath, 'utf8').trim().split('\n')
  .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
const here = path.dirname(new URL(import.meta.url).pathname);

const SERVERS = ['basestation', 'uws', 'node-ws'];
const NAMES = { basestation: 'basestation', uws: 'uWebSockets.js', 'node-ws': 'Node ws' };
const present = SERVERS.filter((s) => rows.some((r) => r.server === s));

function get(server, scenario) {
  const r = rows.find((x) => x.server === server && x.scenario === scenario);
  return r && r.result && r.result.ok ? r.result : null;
}
function args(server, scenario) {
  const r = rows.find((x) => x.server === server && x.scenario === scenario);
  return r ? r.args : '';
}
const dig = (o, p) => p.split('.').reduce((a, k) => (a == null ? undefined : a[k]), o);

function fmt(v, kind) {
  if (v == null || Number.isNaN(v) || v < 0) return '—';
  switch (kind) {
    case 'rate':
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)} k` : v.toFixed(0);
    case 'us':
      return v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(v < 10 ? 2 : 0)} µs`;
    case 'cpu':
      return `${v.toFixed(2)} µs`;
    case 'kib':
      return `${v.toFixed(2)} KiB`;
    case 'mib':
      return `${(v / 1024).toFixed(1)} MiB`;
    case 'int':
      return String(Math.round(v));
    case 'pct':
      return `${(v * 100).toFixed(0)} %`;
    default:
      return String(v);
  }
}
function ratio(a, b) {
  if (a == null || b == null || a < 0 || b <= 0) return '—';
  const x = a / b;
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}×`;
}

const FAN = rows.map((r) => r.scenario).filter((s) => /^fanout-\d+$/.test(s))
  .map((s) => Number(s.split('-')[1])).filter((v, i, a) => a.indexOf(v) === i).sort((a, b) => a - b);
const FAN_MAIN = FAN.includes(1000) ? 1000 : FAN[Math.floor(FAN.length / 2)];
const fanMain = `fanout-${FAN_MAIN}`;

// metric rows: [label, scenario, path, kind, better ('hi'|'lo'|null)]
const metricRows = [
  [`(1) fan-out, ${FAN_MAIN} subscribers: delivered msgs/s`, fanMain, 'delivered_per_s', 'rate', 'hi'],
  ['(1) fan-out: server CPU per delivered message', fanMain, 'server.cpu_us_per_delivery', 'cpu', 'lo'],
  ['(1) fan-out: server CPU use (1 core = 100 %)', fanMain, 'server.cpu_util', 'pct', null],
  ['(1) fan-out: load generator CPU use', fanMain, 'loadgen.cpu_util', 'pct', null],
  ['(1) fan-out: latency p50 / p99 (64 in flight: queueing)', fanMain, 'latency_us', 'lat', null],
  ['(1) fan-out: server peak RSS', fanMain, 'server.hwm_kib', 'mib', 'lo'],
  ['(2) direct, 100 senders: acked msgs/s', 'direct', 'acked_per_s', 'rate', 'hi'],
  ['(2) direct: server CPU per acked message', 'direct', 'server.cpu_us_per_ack', 'cpu', 'lo'],
  ['(2) direct: ack latency p50 / p99', 'direct', 'ack_latency_us', 'lat', null],
  ['(3) idle: RSS per connection', 'idle', 'server.rss_per_conn_kib', 'kib', 'lo'],
  ['(3) idle: connections held', 'idle', 'ready', 'int', null],
  ['(3) idle: server RSS with all connections', 'idle', 'server.rss_kib', 'mib', 'lo'],
  ['(4) task, 1,000 updates/s: updates acked/s', 'task', 'acked_per_s', 'int', 'hi'],
  ['(4) task: delivered msgs/s', 'task', 'delivered_per_s', 'rate', 'hi'],
  ['(4) task: latency p50 / p99', 'task', 'latency_us', 'lat', null],
  ['(4) task: versions missed (gaps + not delivered by the end)', 'task', 'missed', 'int', 'lo'],
  ['(4) task: server CPU per delivered message', 'task', 'server.cpu_us_per_delivery', 'cpu', 'lo'],
  ['(5) latency at half of own peak: publishes/s', 'latency', 'rate', 'int', null],
  ['(5) latency at half of own peak: delivered msgs/s', 'latency', 'delivered_per_s', 'rate', null],
  ['(5) latency at half of own peak: p50 / p99 / p99.9', 'latency', 'latency_us', 'lat3', null],
];
const SMALL = rows.map((r) => r.scenario).find((x) => /^latency-\d+$/.test(x));
if (SMALL) {
  const n = SMALL.split('-')[1];
  metricRows.push([`(5b) same, ${n} subscribers: publishes/s`, SMALL, 'rate', 'int', null]);
  metricRows.push([`(5b) same, ${n} subscribers: p50 / p99 / p99.9`, SMALL, 'latency_us', 'lat3', null]);
}

function value(r, p) {
  if (!r) return null;
  if (p === 'missed') return (r.versions_missed || 0) + (r.versions_missing_at_end || 0);
  return dig(r, p);
}
function cell(r, p, kind) {
  if (!r) return '—';
  if (kind === 'lat') return `${fmt(dig(r, p + '.p50'), 'us')} / ${fmt(dig(r, p + '.p99'), 'us')}`;
  if (kind === 'lat3') return `${fmt(dig(r, p + '.p50'), 'us')} / ${fmt(dig(r, p + '.p99'), 'us')} / ${fmt(dig(r, p + '.p999'), 'us')}`;
  return fmt(value(r, p), kind);
}

let md = '';
const w = (s = '') => { md += s + '\n'; };

w('# Benchmarks');
w();
w('<!-- Generated by bench/run (bench/report.mjs); the comparisons across changes from bench/history.md, the profile section from bench/profile.md. Edit those, not this file. -->');
w();
w('basestation against two peers that speak the same small protocol subset: a relay on');
w('[uWebSockets.js](https://github.com/uNetworking/uWebSockets.js) and one on Node\'s');
w('[`ws`](https://github.com/websockets/ws) (`bench/peers/`). One load generator (`bench/loadgen.c`,');
w('C on libevent) drives all three the same way; every server is started fresh for every measurement.');
w();
if (machine.quick === '1') w('> **Quick run** (`--quick`): short windows and small N; not the reference numbers.\n');
w('## Machine and versions');
w();
w('| | |');
w('| --- | --- |');
w(`| CPU | ${machine.cpu}, ${machine.nproc} cores (\`nproc\`) |`);
w(`| kernel | ${machine.kernel} |`);
w(`| basestation | ${machine.basestation} (commit ${machine.commit}), libevent ${machine.libevent}, SQLite ${machine.sqlite} |`);
w(`| Node.js | ${machine.node} |`);
w(`| ws | ${machine.ws} (with \`bufferutil\` and \`utf-8-validate\` installed: ws at its fastest) |`);
w(`| uWebSockets.js | ${machine.uws} (npm \`@trufflesuite/uws-js-unofficial\`, native build; the fallback is refused) |`);
w(`| run | ${machine.date}, \`${machine.command}\` |`);
w();
w('The load generator shares the machine with the server; on 2 cores it takes one of them, so');
w('raw msgs/s is capped by the generator as much as by the server. Server CPU time per delivered');
w('message (utime+stime from `/proc/PID/stat` over the window, divided by the deliveries the');
w('generator counted) is the fairer figure; both are shown, with the generator\'s own CPU use.');
w();

w('## Results');
w();
w(`| measurement | ${present.map((s) => NAMES[s]).join(' | ')} | basestation ÷ uWS | basestation ÷ ws |`);
w(`| --- | ${present.map(() => '---:').join(' | ')} | ---: | ---: |`);
for (const [label, sc, p, kind, better] of metricRows) {
  const vals = present.map((s) => get(s, sc));
  const cells = vals.map((r) => cell(r, p, kind));
  const bs = value(get('basestation', sc), p);
  const rat = better ? [ratio(bs, value(get('uws', sc), p)), ratio(bs, value(get('node-ws', sc), p))] : ['', ''];
  w(`| ${label} | ${cells.join(' | ')} | ${rat.join(' | ')} |`);
}
w();
w('Ratios: basestation\'s figure divided by the peer\'s (for msgs/s higher is better, for CPU and');
w('memory lower is better). Latencies are from the publisher\'s send to the subscriber\'s read, both');
w('in the generator (CLOCK_MONOTONIC), including both kernels\' socket paths.');
w();
const notes = [];
for (const s of present) {
  for (const sc of [...new Set(rows.filter((x) => x.server === s).map((x) => x.scenario))]) {
    const r = rows.find((x) => x.server === s && x.scenario === sc);
    if (!r) continue;
    const res = r.result || {};
    if (!res.ok) notes.push(`${NAMES[s]} ${sc}: no result (setup failed or the server died; see the raw log)`);
    else if (res.errors || res.conn_failures || res.closed)
      notes.push(`${NAMES[s]} ${sc}: ${res.errors} error frames, ${res.conn_failures} failed connections, ${res.closed} closed by the server`);
  }
}
if (notes.length) {
  w('Incidents during the run:');
  w();
  for (const n of notes) w(`- ${n}`);
  w();
}

// ---- the store during the durable scenarios ----
const durable = rows.filter((r) => r.server === 'basestation' && r.result && r.result.ok && r.result.watch &&
  r.result.total && r.result.total.acked > 0);
if (durable.length) {
  const mb = (b) => (b == null || b < 0 ? '—' : `${(b / 1048576).toFixed(1)} MiB`);
  w('### basestation\'s store during the durable scenarios');
  w();
  w('Every publish, direct message and task update is committed to SQLite before its ack. The');
  w('generator watched the database\'s `-wal` file (its size every 50 ms from the start of the run,');
  w('at the end of the window, and after the drain); the database file is measured after the run.');
  w('The checkpoint thread resets the log once it holds 16 MiB and empties it when idle');
  w('(docs/operations.md, section 8, *The WAL*).');
  w();
  w('| scenario | acked/s | `-wal` peak | `-wal` at the end of the window | `-wal` at the end | database |');
  w('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of durable) {
    const x = r.result;
    w(`| ${r.scenario} | ${fmt(x.acked_per_s, 'rate')} | ${mb(x.watch.peak_bytes)} | ${mb(x.watch.window_end_bytes)} | ${mb(x.watch.end_bytes)} | ${mb(r.db_bytes)} |`);
  }
  w();
}

w('### Fan-out against the number of subscribers');
w();
w('One room, one publisher with 64 publishes in flight, 128-byte payloads.');
w();
w('![delivered msgs/s](benchmarks-fanout-rate.png) ![server CPU per delivery](benchmarks-fanout-cpu.png)');
w();
w(`| subscribers | ${present.map((s) => `${NAMES[s]} msgs/s`).join(' | ')} | ${present.map((s) => `${NAMES[s]} µs/delivery`).join(' | ')} |`);
w(`| ---: | ${present.map(() => '---:').join(' | ')} | ${present.map(() => '---:').join(' | ')} |`);
let dat = '# subscribers ' + present.join(' ') + ' (rate) ' + present.join(' ') + ' (cpu us)\n';
for (const n of FAN) {
  const rs = present.map((s) => get(s, `fanout-${n}`));
  w(`| ${n} | ${rs.map((r) => fmt(r && r.delivered_per_s, 'rate')).join(' | ')} | ${rs.map((r) => fmt(r && r.server.cpu_us_per_delivery, 'cpu')).join(' | ')} |`);
  const num = (v) => (v == null || v < 0 ? 'NaN' : String(v));
  dat += `${n} ${rs.map((r) => num(r && r.delivered_per_s)).join(' ')} ${rs.map((r) => num(r && r.server.cpu_us_per_delivery)).join(' ')}\n`;
}
w();
writeFileSync(path.join(dataDir, 'fanout.dat'), dat);
writeFileSync(path.join(dataDir, 'servers.txt'), present.map((s) => NAMES[s]).join('\n') + '\n');

// ---- targets ----
w('## Targets (shared/spec/targets.md) for basestation');
w();
w('| scenario | target | measured | verdict |');
w('| --- | --- | --- | --- |');
const bsF = get('basestation', fanMain), uwF = get('uws', fanMain);
const bsD = get('basestation', 'direct'), bsI = get('basestation', 'idle');
const bsL = get('basestation', 'latency'), bsT = get('basestation', 'task');
function verdict(ok, miss) {
  if (ok == null) return 'not measured';
  return ok ? '**met**' : `missed: ${miss}`;
}
{
  const v = bsF && bsF.server.cpu_us_per_delivery;
  w(`| fan-out, server CPU per delivery | ≤ 1.0 µs | ${fmt(v, 'cpu')} | ${verdict(v == null ? null : v <= 1.0, `${(v / 1.0).toFixed(2)}× the target`)} |`);
  const a = bsF && bsF.delivered_per_s, b = uwF && uwF.delivered_per_s;
  w(`| fan-out, delivered msgs/s | ≥ uWebSockets.js (${fmt(b, 'rate')}) | ${fmt(a, 'rate')} | ${verdict(a == null || b == null ? null : a >= b, `${((1 - a / b) * 100).toFixed(0)} % short`)} |`);
  const i = bsI && bsI.server.rss_per_conn_kib;
  w(`| idle connections (${bsI ? bsI.ready : '—'}) | ≤ 1.0 KiB RSS per connection | ${fmt(i, 'kib')} | ${verdict(i == null ? null : i <= 1.0, `${(i / 1.0).toFixed(2)}× the target`)} |`);
  const d = bsD && bsD.acked_per_s;
  w(`| durable direct messages (ack after commit), 100 senders | ≥ 50,000 acked msgs/s | ${fmt(d, 'rate')} | ${verdict(d == null ? null : d >= 50000, `${((1 - d / 50000) * 100).toFixed(0)} % short`)} |`);
  const l = bsL && bsL.latency_us.p99;
  w(`| latency at half of own peak (${bsL ? bsL.rate : '—'} publishes/s × ${FAN_MAIN}) | p99 ≤ 2 ms | ${fmt(l, 'us')} | ${verdict(l == null ? null : l <= 2000, `${(l / 2000).toFixed(1)}× the target`)} |`);
  const tp = bsT && bsT.latency_us.p99, miss = bsT && value(bsT, 'missed');
  const slow = bsT && bsT.acked_per_s < 0.98 * bsT.rate;
  const tok = bsT == null ? null : miss === 0 && tp <= 5000 && !slow;
  w(`| task: 1 task, ${bsT ? bsT.conns : '—'} subscribers, 1,000 updates/s | every version delivered, p99 ≤ 5 ms | ${bsT ? `${miss} missed, p99 ${fmt(tp, 'us')}` : '—'} | ${verdict(tok, `${miss ? `${miss} versions missed` : ''}${miss && tp > 5000 ? ', ' : ''}${tp > 5000 ? `p99 ${(tp / 5000).toFixed(1)}× the target` : ''}${slow ? ` (only ${Math.round(bsT.acked_per_s)} updates/s acked)` : ''}`)} |`);
}
w();

w('## Scenarios and method');
w();
w('| # | scenario | load generator arguments (plus `--port --server-pid --label`, and `--jwt-secret` for basestation) |');
w('| --- | --- | --- |');
const sc = (s) => args('basestation', s) || args('uws', s) || args('node-ws', s);
w(`| 1 | fan-out (and the chart: ${FAN.join(', ')} subscribers) | \`${sc(fanMain)}\` |`);
w(`| 2 | direct messages with durable acks | \`${sc('direct')}\` |`);
w(`| 3 | idle connections | \`${sc('idle')}\` |`);
w(`| 4 | task progress | \`${sc('task')}\` |`);
w(`| 5 | latency at half of the server's own peak (rate = peak deliveries/s ÷ 2 ÷ subscribers, per server) | \`${sc('latency')}\` (basestation's rate shown) |`);
w();
w('- **basestation** runs as in production, with its SQLite store (a fresh temp database per');
w('  measurement, WAL, `synchronous=NORMAL`): every publish and direct message is stored and');
w('  acknowledged after its commit. Flags: `--rate 0 --max-outbuf 67108864 --log-level warn`');
w('  `--http off --jwt-secret S`; the generator mints HS256 JWTs (task subscribers carry');
w('  `"role":"admin"`, the producer `"role":"producer"` and creates the task with `task.create`).');
w('- **The peers store nothing**: they acknowledge at once and keep no history, no resume, no');
w('  auth, no rate limit. They are what a relay costs without durability; basestation does more');
w('  work per message (a SQLite insert per publish, per-connection seq filter) and still competes.');
w('- **Fan-out** (1): the publisher is a member of the room and gets no copy of its own message.');
w('  Closed loop: a new publish for every ack, 64 outstanding; latency in this mode is mostly');
w('  queueing (64 × subscribers messages in the pipes) and is not the latency figure — that is (5).');
w('- **Direct** (2): sender *i* sends to receiver *i*, 8 messages in flight per sender.');
w('- **Idle** (3): RSS per connection = (VmRSS after all connected − VmRSS of the freshly started');
w('  server) ÷ connections. The generator binds its sockets to 127.0.0.1–127.0.0.64 (past the');
w('  per-address port range) and raises its own fd limit to the hard limit (20,000 here).');
w('- **Task** (4): open loop at 1,000 `task.update`/s with the send time in `note`; every subscriber');
w('  checks that versions arrive one by one; the run waits (≤ 2 s) after the window for the last');
w('  version to reach everyone, then counts what never arrived.');
w('- **Latency** (5): open loop, publishes spread evenly over each millisecond tick.');
w('- Each figure is one run of 5 s after 1 s of warm-up. Repeated runs of the same fan-out');
w('  measurement on this 2-core VM spread by up to ±20 % in msgs/s; CPU per delivery is steadier.');
w('- shared/spec/targets.md quotes the peers at 0.36–0.41 M msgs/s, 2.2–2.8 µs (uWebSockets.js) and');
w('  0.06 M, 16.6–17.1 µs (ws), measured with another generator; the targets compare against the');
w('  peers *in the same run*, i.e. the columns above. This ws peer sends one pre-encoded Buffer');
w('  per recipient, which makes it faster than the seeds\' code.');
w();

const hist = path.join(here, 'history.md');
if (existsSync(hist)) {
  w(readFileSync(hist, 'utf8').trim());
  w();
}
const prof = path.join(here, 'profile.md');
if (existsSync(prof)) {
  w(readFileSync(prof, 'utf8').trim());
  w();
}
w('## Reproduce');
w();
w('```sh');
w('scripts/setup --bench              # build and test deps, gnuplot, perf, the peers\' npm packages');
w('npm ci --prefix bench              # the peers (bench/package-lock.json)');
w('bench/run                          # ~5 min: all scenarios, all servers, rewrites this file');
w('bench/profile                      # perf profile of basestation under scenario 1');
w('```');
w();
w('Raw results of a run: `bench/results/latest.jsonl` on the machine that ran it (one loadgen JSON line per measurement; not committed).');
writeFileSync(outPath, md);
