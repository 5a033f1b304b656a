// Turn bench/run's results into docs/benchmarks.md and the chart data.
//   node bench/report.mjs RESULTS.jsonl MACHINE.txt OUT.md DATADIR
//   node bench/report.mjs --sections RESULTS.jsonl MACHINE.txt OUT.md DATADIR
// The profile section comes verbatim from bench/profile.md (written by hand
// from bench/profile runs), the end of the open-loop section from
// bench/open-profile.md (by hand, from bench/open-profile and the group's
// runs); everything else is generated. --sections (a run
// without the core scenarios) rewrites only the sections of the groups that
// have results in RESULTS (TLS/deflate/cluster; open loop) inside OUT.md
// (between their begin/end markers, or before "## Comparisons across
// changes" when it has none), and the part that comes from bench/history.md,
// and leaves the main table and the other sections as they were.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const sectionsOnly = argv[0] === '--sections';
if (sectionsOnly) argv.shift();
const [resultsPath, machinePath, outPath, dataDir] = argv;
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
  return `${x >= 10 ? x.toFixed(0) : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)}×`;
}

// a section's targets: rows [scenario, target, measured, verdict]; '' if none
function targetTable(title, measured, t) {
  if (!t.length) return '';
  return [title, '', `| scenario | target | ${measured} | verdict |`, '| --- | --- | --- | --- |',
    ...t.map((r) => `| ${r.join(' | ')} |`), ''].join('\n');
}

// ---- TLS, permessage-deflate and the cluster (bench/run groups tls,
// deflate, cluster): one section, with its own run line, so that a run of
// only these groups can replace it in place (--sections). ----
const BEGIN = '<!-- begin: tls, deflate and cluster (bench/report.mjs) -->';
const END = '<!-- end: tls, deflate and cluster -->';
function row(server, scenario) {
  const r = rows.find((x) => x.server === server && x.scenario === scenario);
  return r && r.result && r.result.ok !== false && !r.result.error ? r.result : null;
}
function extraSection() {
  const X = ['idle-tls', 'idle-deflate', 'idle-plain', 'fanout4k', 'fanout4k-deflate', 'cluster-direct',
    'cluster-fanout', 'cluster-fanout-single', 'cluster-recovery'];
  if (!rows.some((r) => X.includes(r.scenario))) return '';
  let o = '';
  const p = (t = '') => { o += t + '\n'; };
  const td = ['basestation', 'uws'].filter((s) => rows.some((r) => r.server === s && X.includes(r.scenario)));
  const cols = td.map((s) => NAMES[s]);
  const rat = (a, b) => (td.includes('uws') ? ` | ${ratio(a, b)}` : '');
  const ratHead = td.includes('uws') ? ' | basestation ÷ uWS' : '';
  const ratSep = td.includes('uws') ? ' | ---:' : '';
  const head = (first) => {
    p(`| ${first} | ${cols.join(' | ')}${ratHead} |`);
    p(`| --- | ${td.map(() => '---:').join(' | ')}${ratSep} |`);
  };
  p(BEGIN);
  p('## TLS, permessage-deflate and the cluster');
  p();
  p(`Run ${machine.date}, \`${machine.command}\`${machine.quick === '1' ? ' (**quick**: short windows, small N)' : ''};` +
    ` load average ${machine.loadavg || '?'} at the end of the run. **The machine was shared** with other work while it ran,`);
  p('so absolute figures are low and noisy; each comparison is between servers measured one after the other in the');
  p(`same run. OpenSSL ${machine.openssl || '?'} (basestation and the generator), BoringSSL inside uWebSockets.js;` +
    ` nats-server ${machine.nats || '?'}, redis-server ${machine.redis || '?'}, Socket.IO ${machine.socketio || '?'} with` +
    ` \`@socket.io/redis-streams-adapter\` ${machine.adapter || '?'}.`);
  p();
  const idle = ['idle-plain', 'idle-deflate', 'idle-tls'].filter((sc) => td.some((s) => row(s, sc)));
  if (idle.length) {
    p('### Idle connections: plain, with permessage-deflate negotiated, with TLS');
    p();
    p(`RSS per connection as in scenario (3). TLS: an ECDSA P-256 certificate made by \`openssl req\` in the run,`);
    p('TLS 1.3, the generator\'s OpenSSL client (non-blocking handshake); uWebSockets.js runs `SSLApp`. Deflate: the');
    p('generator offers `permessage-deflate; client_max_window_bits` as browsers do; uWebSockets.js runs');
    p('`SHARED_COMPRESSOR`; "negotiated" counts the 101 answers that accepted it.');
    p();
    head('connections');
    const lab = { 'idle-plain': 'plain', 'idle-deflate': 'deflate negotiated', 'idle-tls': 'TLS' };
    for (const sc of idle) {
      const rs = td.map((s) => row(s, sc));
      const cell = (r) => (r ? `${fmt(r.server.rss_per_conn_kib, 'kib')} (${r.ready}${sc === 'idle-deflate' ? `, ${r.deflate_negotiated} negotiated` : ''})` : '—');
      p(`| ${lab[sc]}: RSS per connection (connections held) | ${rs.map(cell).join(' | ')}${rat(dig(rs[0], 'server.rss_per_conn_kib'), dig(rs[1], 'server.rss_per_conn_kib'))} |`);
    }
    p();
  }
  const fan = ['fanout4k', 'fanout4k-deflate'].filter((sc) => td.some((s) => row(s, sc)));
  if (fan.length) {
    const any = td.map((s) => row(s, fan[0])).find(Boolean);
    p(`### 4 KiB JSON to ${any ? any.conns : '?'} members, without and with permessage-deflate`);
    p();
    p('Scenario (1) with `--payload 4096 --payload-json` (records of ids, names, numbers and short texts, about as');
    p('compressible as an API response) and 16 publishes in flight. With deflate the generator inflates every 8th');
    p('compressed message (a check that it is valid deflate and the right message; the others are counted unread, its');
    p('own CPU would otherwise be the limit). Bytes per delivery: what the generator read per delivered message,');
    p('WebSocket framing included. basestation: `--compression on --compression-min 256`, one compressed frame per');
    p('message shared by every member; uWebSockets.js: `SHARED_COMPRESSOR`, `publish(..., compress = true)`.');
    p();
    head('measurement');
    const line = (label, sc, path, kind) => {
      const rs = td.map((s) => row(s, sc));
      p(`| ${label} | ${rs.map((r) => fmt(dig(r, path), kind)).join(' | ')}${rat(dig(rs[0], path), dig(rs[1], path))} |`);
    };
    for (const [sc, name] of [['fanout4k', 'no deflate'], ['fanout4k-deflate', 'deflate']]) {
      if (!fan.includes(sc)) continue;
      line(`${name}: delivered msgs/s`, sc, 'delivered_per_s', 'rate');
      line(`${name}: server CPU per delivery`, sc, 'server.cpu_us_per_delivery', 'cpu');
      line(`${name}: bytes on the wire per delivery`, sc, 'bytes_in_per_delivery', 'int');
    }
    if (fan.length === 2) {
      const f = td.map((s) => {
        const a = row(s, 'fanout4k-deflate'), b = row(s, 'fanout4k');
        return a && b ? a.server.cpu_us_per_delivery / b.server.cpu_us_per_delivery : null;
      });
      p(`| server CPU per delivery, deflate ÷ none | ${f.map((x) => (x == null ? '—' : `${x.toFixed(2)}×`)).join(' | ')}${td.includes('uws') ? ' | ' : ''} |`);
    }
    p();
  }
  const cd = row('basestation-cluster', 'cluster-direct'), cf = row('basestation-cluster', 'cluster-fanout');
  const cs = row('basestation', 'cluster-fanout-single');
  const sf = row('socketio-cluster', 'cluster-fanout');
  const br = row('basestation-cluster', 'cluster-recovery'), sr = row('socketio-cluster', 'cluster-recovery');
  if (cd || cf || sf || br || sr) {
    p('### Two nodes: basestation on JetStream (R3) and Socket.IO on Redis Streams');
    p();
    p('basestation: three `nats-server` processes with JetStream (one stream, 3 replicas, as `tests/cluster/nats.mjs`');
    p('starts them) and two basestation nodes, started by `bench/cluster.mjs`; senders and the publisher on node A,');
    p('receivers and room members on node B, so every delivery crosses the cluster. Node B is "the server" of the');
    p('CPU figures (the receiving node). Socket.IO: `bench/peers/socketio-cluster.mjs`, Socket.IO 4 on two Node');
    p('processes with `@socket.io/redis-streams-adapter` over one `redis-server`, publisher on A, receivers on B.');
    p('Recovery: 100 receivers on node B, a publisher on node A at 200 messages/s; after 2 s node B gets `kill -9`;');
    p('the receivers reconnect to node A (basestation: `?since=<last seq>&epoch=`, what the JavaScript client does;');
    p('Socket.IO: its connection state recovery) and publishing goes on for 6 s; "lost" counts published (acked)');
    p('messages a receiver never got. In the fan-out, node A acknowledges a publish once it is stored (basestation:');
    p('in JetStream; Socket.IO: at once), before node B delivers it, so when node B falls behind the generator keeps');
    p('publishing and the latency grows over the window: deliveries/s on node B is the figure; publishes acked × members');
    p('above it is the backlog. CPU per delivery is the node\'s CPU over the window ÷ its deliveries; a node that waits');
    p('(Socket.IO\'s node B used a fraction of a core) gets a high figure.');
    p();
    p('| measurement | basestation (2 nodes) | Socket.IO (2 nodes) | basestation ÷ Socket.IO |');
    p('| --- | ---: | ---: | ---: |');
    if (cd) {
      p(`| durable direct messages, ${cd.senders} senders on A → receivers on B: acked msgs/s | ${fmt(cd.acked_per_s, 'rate')} | — | |`);
      p(`| same: CPU per acked message, node A / node B | ${fmt(dig(cd, 'server2.cpu_us_per_ack'), 'cpu')} / ${fmt(dig(cd, 'server.cpu_us_per_ack'), 'cpu')} | — | |`);
      p(`| same: ack latency p50 / p99 | ${fmt(dig(cd, 'ack_latency_us.p50'), 'us')} / ${fmt(dig(cd, 'ack_latency_us.p99'), 'us')} | — | |`);
    }
    if (cf || sf) {
      const n = (cf && cf.conns) || (sf && sf.receivers);
      p(`| cross-node fan-out to ${n} members: publishes acked/s by node A | ${fmt(cf && cf.acked_per_s, 'rate')} | ${fmt(sf && sf.published_per_s, 'rate')} | |`);
      p(`| same: deliveries/s on node B | ${fmt(cf && cf.delivered_per_s, 'rate')} | ${fmt(sf && sf.delivered_per_s, 'rate')} | ${ratio(cf && cf.delivered_per_s, sf && sf.delivered_per_s)} |`);
      const sfCpu = sf && sf.delivered ? (sf.server.cpu_s.node_b * 1e6) / sf.delivered : null;
      p(`| same: receiving node's CPU per delivery | ${fmt(dig(cf, 'server.cpu_us_per_delivery'), 'cpu')} | ${fmt(sfCpu, 'cpu')} | ${ratio(dig(cf, 'server.cpu_us_per_delivery'), sfCpu)} |`);
      if (cs) {
        const x = dig(cf, 'server.cpu_us_per_delivery') / cs.server.cpu_us_per_delivery;
        p(`| same: single basestation node, same load: CPU per delivery (receiving node ÷ single) | ${fmt(cs.server.cpu_us_per_delivery, 'cpu')} (${Number.isFinite(x) ? x.toFixed(2) + '×' : '—'}) | | |`);
      }
      p(`| same: latency p50 / p99 | ${fmt(dig(cf, 'latency_us.p50'), 'us')} / ${fmt(dig(cf, 'latency_us.p99'), 'us')} | ${fmt(dig(sf, 'latency_us.p50'), 'us')} / ${fmt(dig(sf, 'latency_us.p99'), 'us')} | |`);
    }
    if (br || sr) {
      const lost = (r) => (r ? `${r.lost_per_receiver.mean} (min ${r.lost_per_receiver.min}, max ${r.lost_per_receiver.max}; ${r.lost_total} in all)` : '—');
      p(`| after \`kill -9\` of node B: messages lost per receiver, mean | ${lost(br)} | ${lost(sr)} | |`);
      p(`| same: receivers back on node A / resumed complete (basestation) or recovered (Socket.IO) | ${br ? `${br.reconnected} / ${br.recovered}` : '—'} | ${sr ? `${sr.reconnected} / ${sr.recovered}` : '—'} | |`);
      p(`| same: duplicates | ${br ? br.duplicates : '—'} | ${sr ? sr.duplicates : '—'} | |`);
      p(`| same: time to reconnect p50 / max | ${br ? `${br.reconnect_ms.p50} / ${br.reconnect_ms.max} ms` : '—'} | ${sr ? `${sr.reconnect_ms.p50} / ${sr.reconnect_ms.max} ms` : '—'} | |`);
    }
    p();
  }
  // targets of shared/spec/targets.md for these scenarios
  const t = [];
  const bt = row('basestation', 'idle-tls'), ut = row('uws', 'idle-tls');
  if (bt) {
    const v = bt.server.rss_per_conn_kib, u = ut && ut.server.rss_per_conn_kib;
    t.push(['idle connections, TLS', `≤ 6 KiB per connection, and ≤ uWebSockets.js \`SSLApp\` (${fmt(u, 'kib')})`, fmt(v, 'kib'),
      v <= 6 && (u == null || v <= u) ? '**met**' : `missed: ${(v / 6).toFixed(1)}× the 6 KiB${u != null ? `, ${(v / u).toFixed(1)}× uWS` : ''}`]);
  }
  const bd = row('basestation', 'idle-deflate'), bp = row('basestation', 'idle-plain');
  if (bd && bp) {
    const v = bd.server.rss_per_conn_kib, q = bp.server.rss_per_conn_kib;
    t.push(['idle connections, permessage-deflate negotiated', `same as plain (${fmt(q, 'kib')})`, `${fmt(v, 'kib')} (${bd.deflate_negotiated} negotiated)`,
      bd.deflate_negotiated === bd.ready && v <= q * 1.1 + 0.05 ? '**met** (within 10 %)' : 'missed']);
  }
  const b4 = row('basestation', 'fanout4k'), b4d = row('basestation', 'fanout4k-deflate'), u4d = row('uws', 'fanout4k-deflate');
  if (b4 && b4d) {
    const x = b4d.server.cpu_us_per_delivery, y = b4.server.cpu_us_per_delivery, u = u4d && u4d.server.cpu_us_per_delivery;
    t.push(['compression: 4 KiB JSON, deflate on', `CPU per delivery ≤ 2× uncompressed (${fmt(y, 'cpu')}), ≤ uWS \`SHARED_COMPRESSOR\` (${fmt(u, 'cpu')})`,
      `${fmt(x, 'cpu')} (${(x / y).toFixed(2)}×)`, x <= 2 * y && (u == null || x <= u) ? '**met**' : 'missed']);
  }
  if (cd) t.push(['cluster: durable acked msgs/s', '≥ 40,000', fmt(cd.acked_per_s, 'rate'), cd.acked_per_s >= 40000 ? '**met**' : `missed: ${((1 - cd.acked_per_s / 40000) * 100).toFixed(0)} % short`]);
  if (cf && cs) {
    const x = cf.server.cpu_us_per_delivery / cs.server.cpu_us_per_delivery;
    t.push(['cluster: receiving node\'s CPU per delivery', '≤ 1.5× single-node', `${x.toFixed(2)}×`, x <= 1.5 ? '**met**' : 'missed']);
  }
  if (cf && sf) {
    const x = cf.delivered_per_s / sf.delivered_per_s;
    t.push(['cluster: cross-node deliveries/s', '≥ 10× Socket.IO + Redis Streams', `${x.toFixed(1)}×`, x >= 10 ? '**met**' : 'missed']);
  }
  if (br) t.push(['cluster: after `kill -9` of a node', '0 messages lost for resuming clients (Socket.IO\'s losses reported)',
    `${br.lost_total} lost${sr ? ` (Socket.IO: ${sr.lost_per_receiver.mean} per client)` : ''}`, br.lost_total === 0 && br.reconnected === br.receivers ? '**met**' : 'missed']);
  p(targetTable('### Targets of these scenarios', 'measured', t));
  p(END);
  p();
  return o;
}

// ---- open loop at equal offered load (bench/run group open, issue 17):
// its own section between markers, rewritten in place by --sections; the
// hand-written part on where the time goes comes from bench/open-profile.md ----
const OBEGIN = '<!-- begin: open loop (bench/report.mjs) -->';
const OEND = '<!-- end: open loop -->';
const OPEN_RE = /^open-/;
function openSection() {
  if (!rows.some((r) => OPEN_RE.test(r.scenario))) return '';
  let o = '';
  const p = (t = '') => { o += t + '\n'; };
  const srv = SERVERS.filter((s) => rows.some((r) => r.server === s && OPEN_RE.test(r.scenario)));
  const hasU = srv.includes('uws');
  const ratHead = hasU && srv.includes('basestation') ? ' | basestation ÷ uWS' : '';
  const ratSep = ratHead ? ' | ---:' : '';
  const rat = (a, b) => (ratHead ? ` | ${ratio(a, b)}` : '');
  const sa = (sc) => args('basestation', sc) || args('uws', sc) || args('node-ws', sc);
  const rateOf = (sc) => { const m = / --rate (\d+)/.exec(' ' + sa(sc)); return m ? Number(m[1]) : null; };
  const connsOf = (sc) => { const m = / --conns (\d+)/.exec(' ' + sa(sc)); return m ? Number(m[1]) : null; };
  p(OBEGIN);
  p('## Open loop at equal offered load');
  p();
  p(`Run ${machine.date}, \`${machine.command}\`${machine.quick === '1' ? ' (**quick**: short windows)' : ''};` +
    ` load average ${machine.loadavg || '?'} at the end of the run. **The machine was shared** with other work while it ran`);
  p('(2 cores, several sessions building and testing): latencies include waiting for a CPU, and the servers were');
  p('measured one after the other in the same run, each started fresh, so drift affects them alike.');
  p();
  p('`build/bench/loadgen --mode fanout --rate R --payload 128`: one room, one publisher sending R publishes/s spread');
  p('evenly over each millisecond tick whatever the server does (open loop), every other connection a member; latency');
  p('from the publisher\'s send to a member\'s read. Every server gets the same offered load, so the columns compare');
  p('directly. basestation runs with its default `--io uring` unless the row says epoll. Server CPU per delivery is');
  p('utime + stime of the server over the window ÷ the deliveries counted. "Deliveries/s" below the offered rate × members');
  p('means the server fell behind (its latency then grows over the window).');
  p();
  const loads = [...new Set(rows.map((r) => r.scenario).filter((x) => /^open-\d+x\d+$/.test(x) || x === 'open-uwshalf'))];
  const line = (label, sc, path, kind, server = null) => {
    const rs = srv.map((s) => (server && s !== server ? null : row(s, sc)));
    p(`| ${label} | ${rs.map((r) => (kind === 'lat3' ? (r ? `${fmt(dig(r, path + '.p50'), 'us')} / ${fmt(dig(r, path + '.p99'), 'us')} / ${fmt(dig(r, path + '.p999'), 'us')}` : '—') : fmt(dig(r, path), kind))).join(' | ')}` +
      `${kind === 'lat3' ? rat(dig(rs[0], path + '.p99'), dig(rs[1], path + '.p99')) : rat(dig(rs[0], path), dig(rs[1], path))} |`);
  };
  const desc = (sc) => {
    const n = connsOf(sc), r = rateOf(sc);
    const what = sc === 'open-uwshalf' ? ' (half of uWebSockets.js\'s closed-loop peak at 1,000 members)' : '';
    return `${n != null ? n.toLocaleString('en') : '?'} members × ${r != null ? r.toLocaleString('en') : '?'} publishes/s${what}`;
  };
  if (loads.length) {
    p(`| measurement | ${srv.map((s) => NAMES[s]).join(' | ')}${ratHead} |`);
    p(`| --- | ${srv.map(() => '---:').join(' | ')}${ratSep} |`);
    for (const sc of loads) {
      const n = connsOf(sc), r = rateOf(sc);
      const rs = srv.map((s) => row(s, sc));
      const dl = (x) => (x ? `${fmt(x.delivered_per_s, 'rate')}${x.delivered_per_s < 0.95 * n * r ? ' (fell behind)' : ''}` : '—');
      p(`| **${desc(sc)}**: deliveries/s (offered ${fmt(n * r, 'rate')}) | ${rs.map(dl).join(' | ')}${rat(dig(rs[0], 'delivered_per_s'), dig(rs[1], 'delivered_per_s'))} |`);
      line('same: server CPU per delivery', sc, 'server.cpu_us_per_delivery', 'cpu');
      line('same: server CPU use (1 core = 100 %)', sc, 'server.cpu_util', 'pct');
      line('same: latency p50 / p99 / p99.9 (ratio: p99)', sc, 'latency_us', 'lat3');
      if (row('basestation', `${sc}-epoll`)) {
        const e = row('basestation', `${sc}-epoll`);
        const cells = srv.map((s) => (s === 'basestation' ? fmt(e.server.cpu_us_per_delivery, 'cpu') : ''));
        p(`| same, basestation \`--io epoll\`: server CPU per delivery | ${cells.join(' | ')}${ratHead ? ' | ' : ''} |`);
        const lc = srv.map((s) => (s === 'basestation' ? `${fmt(e.latency_us.p50, 'us')} / ${fmt(e.latency_us.p99, 'us')} / ${fmt(e.latency_us.p999, 'us')} (${fmt(e.delivered_per_s, 'rate')} deliveries/s)` : ''));
        p(`| same, basestation \`--io epoll\`: latency p50 / p99 / p99.9 | ${lc.join(' | ')}${ratHead ? ' | ' : ''} |`);
      }
    }
    const own = row('basestation', 'open-ownhalf');
    if (own) {
      const cells = (f) => srv.map((s) => (s === 'basestation' ? f : '—')).join(' | ');
      p(`| **basestation at half of its own peak: ${desc('open-ownhalf')}**: deliveries/s (offered ${fmt(connsOf('open-ownhalf') * rateOf('open-ownhalf'), 'rate')}) | ${cells(fmt(own.delivered_per_s, 'rate'))}${ratHead ? ' | ' : ''} |`);
      p(`| same: server CPU per delivery / CPU use | ${cells(`${fmt(own.server.cpu_us_per_delivery, 'cpu')} / ${fmt(own.server.cpu_util, 'pct')}`)}${ratHead ? ' | ' : ''} |`);
      p(`| same: latency p50 / p99 / p99.9 | ${cells(`${fmt(own.latency_us.p50, 'us')} / ${fmt(own.latency_us.p99, 'us')} / ${fmt(own.latency_us.p999, 'us')}`)}${ratHead ? ' | ' : ''} |`);
    }
    if (srv.some((s) => row(s, 'open-task'))) {
      const t0 = srv.map((s) => row(s, 'open-task')).find(Boolean);
      const ack = (x) => (x ? `${fmt(x.acked_per_s, 'int')}${x.acked_per_s < 0.95 * x.rate ? ' (fell behind)' : ''}` : '—');
      p(`| **task: 1 task, ${t0.conns.toLocaleString('en')} subscribers, ${t0.rate.toLocaleString('en')} updates/s**: updates acked/s | ${srv.map((s) => ack(row(s, 'open-task'))).join(' | ')}${ratHead ? ' | ' : ''} |`);
      line('same: deliveries/s', 'open-task', 'delivered_per_s', 'rate');
      line('same: server CPU per delivery', 'open-task', 'server.cpu_us_per_delivery', 'cpu');
      line('same: latency p50 / p99 / p99.9 (ratio: p99)', 'open-task', 'latency_us', 'lat3');
      line('same: load generator CPU use', 'open-task', 'loadgen.cpu_util', 'pct');
      const missed = (r) => (r ? `${(r.versions_missed || 0).toLocaleString('en')} / ${(r.versions_missing_at_end || 0).toLocaleString('en')} (last version ${r.last_version})` : '—');
      p(`| same: versions missed: gaps / acked but not delivered by the end of the drain (a backlog), over all subscribers | ${srv.map((s) => missed(row(s, 'open-task'))).join(' | ')}${ratHead ? ' | ' : ''} |`);
    }
    p();
  }
  const peaks = ['uws', 'basestation'].map((s) => [s, row(s, 'fanout-1000') ? 'fanout-1000' : 'open-peak-1000'])
    .filter(([s, sc]) => row(s, sc));
  if (peaks.length) {
    p(`Closed-loop peaks the half-peak loads come from (scenario 1, 1,000 members, 64 in flight${peaks.some(([, sc]) => sc === 'open-peak-1000') ? '; measured in this group, the core group did not run' : ''}): ` +
      peaks.map(([s, sc]) => `${NAMES[s]} ${fmt(row(s, sc).delivered_per_s, 'rate')} deliveries/s`).join(', ') + '.');
    p();
  }
  // targets: shared/spec/targets.md v2, latency rows; issue 17
  const t = [];
  const bsU = (sc) => [row('basestation', sc), row('uws', sc)];
  for (const sc of loads) {
    const [b, u] = bsU(sc);
    if (!b || !u) continue;
    // a server that did not carry the offered load is named: its figures
    // are those of a saturated (or starved) server, not of the load
    const off = connsOf(sc) * rateOf(sc);
    const behind = [[b, 'basestation'], [u, 'uWebSockets.js']].filter(([r]) => r.delivered_per_s < 0.95 * off)
      .map(([r, n]) => `${n} fell behind: ${fmt(r.delivered_per_s, 'rate')} of ${fmt(off, 'rate')} deliveries/s`);
    const note = behind.length ? ` (${behind.join('; ')})` : '';
    const x = b.server.cpu_us_per_delivery / u.server.cpu_us_per_delivery;
    t.push([`${desc(sc)}: server CPU per delivery`, `≤ 0.5× uWebSockets.js's (${fmt(u.server.cpu_us_per_delivery, 'cpu')})`,
      `${fmt(b.server.cpu_us_per_delivery, 'cpu')} (${x.toFixed(2)}×)`, (x <= 0.5 ? `**met** (${((1 - x / 0.5) * 100).toFixed(0)} % below the bound)` : `missed: ${(x / 0.5).toFixed(2)}× the bound`) + note]);
    const y = b.latency_us.p99 / u.latency_us.p99;
    t.push([`${desc(sc)}: latency p99`, `≤ 0.7× uWebSockets.js's (${fmt(u.latency_us.p99, 'us')})`,
      `${fmt(b.latency_us.p99, 'us')} (${y.toFixed(2)}×)`, (y <= 0.7 ? `**met** (${((1 - y / 0.7) * 100).toFixed(0)} % below the bound)` : `missed: ${(y / 0.7).toFixed(2)}× the bound`) + note]);
  }
  const own = row('basestation', 'open-ownhalf');
  if (own) {
    const l = own.latency_us.p99, n = connsOf('open-ownhalf'), r = rateOf('open-ownhalf');
    const behind = own.delivered_per_s < 0.95 * n * r;
    t.push([`half of basestation's own peak (${desc('open-ownhalf')})`, 'p99 ≤ 10 ms', `${fmt(l, 'us')}${behind ? ` (fell behind: ${fmt(own.delivered_per_s, 'rate')} of ${fmt(n * r, 'rate')} deliveries/s)` : ''}`,
      l <= 10000 && !behind ? `**met** (${((1 - l / 10000) * 100).toFixed(0)} % below)` : `missed: ${(l / 10000).toFixed(1)}× the bound`]);
  }
  const bt = row('basestation', 'open-task'), ut = row('uws', 'open-task');
  if (bt) {
    const miss = (bt.versions_missed || 0) + (bt.versions_missing_at_end || 0), tp = bt.latency_us.p99;
    const slow = bt.acked_per_s < 0.95 * bt.rate;
    const why = [bt.versions_missed ? `${bt.versions_missed.toLocaleString('en')} versions skipped (gaps)` : '',
      bt.versions_missing_at_end ? `${bt.versions_missing_at_end.toLocaleString('en')} acked versions not delivered by the end of the drain` : '', tp > 5000 ? `p99 ${(tp / 5000).toFixed(1)}× the bound` : '', slow ? `only ${Math.round(bt.acked_per_s)} updates/s acked` : ''].filter(Boolean).join(', ');
    t.push([`task: 1 task, ${bt.conns.toLocaleString('en')} subscribers, ${bt.rate.toLocaleString('en')} updates/s`, 'every version delivered, p99 ≤ 5 ms',
      `${(bt.versions_missed || 0).toLocaleString('en')} gaps, ${(bt.versions_missing_at_end || 0).toLocaleString('en')} not delivered by the end (last version ${bt.last_version}), p99 ${fmt(tp, 'us')}${ut ? ` (uWebSockets.js ${fmt(ut.latency_us.p99, 'us')})` : ''}`,
      miss === 0 && tp <= 5000 && !slow ? `**met** (${((1 - tp / 5000) * 100).toFixed(0)} % below)` : `missed: ${why}`]);
  }
  p(targetTable('### Targets of these scenarios (shared/spec/targets.md v2, issue 17)', 'basestation', t));
  const op = path.join(here, 'open-profile.md');
  if (existsSync(op)) {
    p(readFileSync(op, 'utf8').trim());
    p();
  }
  p(OEND);
  p();
  return o;
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
w('<!-- Generated by bench/run (bench/report.mjs); the comparisons across changes from bench/history.md, the profile section from bench/profile.md, the end of the open-loop section from bench/open-profile.md. Edit those, not this file. -->');
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
w('## Targets (shared/spec/targets.md v2) for basestation');
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
  w(`| fan-out, server CPU per delivery | ≤ 0.25 µs | ${fmt(v, 'cpu')} | ${verdict(v == null ? null : v <= 0.25, `${(v / 0.25).toFixed(2)}× the target`)} |`);
  const a = bsF && bsF.delivered_per_s, b = uwF && uwF.delivered_per_s;
  const x = a != null && b ? `${(a / b).toFixed(1)}×` : '—';
  w(`| fan-out, delivered msgs/s | ≥ 10× uWebSockets.js (${fmt(b, 'rate')}) | ${fmt(a, 'rate')} (${x}) | ${verdict(a == null || b == null ? null : a >= 10 * b, `${x} uWebSockets.js`)} |`);
  const i = bsI && bsI.server.rss_per_conn_kib;
  w(`| idle connections (${bsI ? bsI.ready : '—'}) | ≤ 1.0 KiB RSS per connection | ${fmt(i, 'kib')} | ${verdict(i == null ? null : i <= 1.0, `${(i / 1.0).toFixed(2)}× the target`)} |`);
  const d = bsD && bsD.acked_per_s;
  w(`| durable direct messages (ack after commit), 100 senders | ≥ 80,000 acked msgs/s, WAL checkpoints running, WAL bounded | ${fmt(d, 'rate')} | ${verdict(d == null ? null : d >= 80000, `${((1 - d / 80000) * 100).toFixed(0)} % short`)} |`);
  const l = bsL && bsL.latency_us.p99;
  w(`| latency at half of own peak (${bsL ? bsL.rate : '—'} publishes/s × ${FAN_MAIN}) | p99 ≤ 10 ms | ${fmt(l, 'us')} | ${verdict(l == null ? null : l <= 10000, `${(l / 10000).toFixed(1)}× the target`)} |`);
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

md += extraSection();
md += openSection();
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
if (sectionsOnly) {
  let out = readFileSync(outPath, 'utf8');
  // replace a group's section in place (or put it before the comparisons
  // across changes); a group without rows in this run keeps its section
  const put = (text, begin, end) => {
    if (!text) return;
    const b = out.indexOf(begin), e = out.indexOf(end);
    if (b >= 0 && e > b) out = out.slice(0, b) + text.trimEnd() + '\n' + out.slice(e + end.length).replace(/^\n?/, '\n');
    else {
      const at = out.indexOf('## Comparisons across changes');
      out = at >= 0 ? out.slice(0, at) + text + out.slice(at) : out.trimEnd() + '\n\n' + text;
    }
  };
  put(extraSection(), BEGIN, END);
  put(openSection(), OBEGIN, OEND);
  // bench/history.md (written by hand) is refreshed in place too
  if (existsSync(hist) && existsSync(prof)) {
    const h0 = out.indexOf('## Comparisons across changes');
    const h1 = out.indexOf(readFileSync(prof, 'utf8').split('\n')[0]);
    if (h0 >= 0 && h1 > h0) out = out.slice(0, h0) + readFileSync(hist, 'utf8').trim() + '\n\n' + out.slice(h1);
  }
  writeFileSync(outPath, out);
} else {
  writeFileSync(outPath, md);
}
