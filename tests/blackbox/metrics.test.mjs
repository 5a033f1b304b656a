// GET /metrics: valid Prometheus text (every line parses, every family has
// HELP and TYPE, histograms are cumulative) and the numbers move with the
// traffic: connections, messages, bytes, stored, acks, refusals by reason,
// drops by reason, db commits.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  incompressible,
  startServer, api, connect, rawWs, frame, sleep, rawExchange, upgradeRequest, statusOf, token,
} from './lib.mjs';

let srv;
before(async () => { srv = await startServer({ args: ['--max-outbuf', '65536', '--rate', '200', '--burst', '200'] }); });
after(async () => { await srv.cleanup(); });

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABELS = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"(?:,(?=[a-zA-Z_]))?)*\\}`;
const VALUE = '(?:[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][-+]?\\d+)?|[-+]?Inf|NaN)';
const SAMPLE = new RegExp(`^(${NAME})(${LABELS})? (${VALUE})(?: -?\\d+)?$`);
const HELP = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

// Parse the exposition strictly; returns { families, samples: Map(series -> value) }.
function parse(text) {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const families = {};
  const samples = new Map();
  let current = null;
  for (const line of text.slice(0, -1).split('\n')) {
    let m;
    if ((m = HELP.exec(line))) {
      assert.ok(!families[m[1]]?.help, `second HELP for ${m[1]}`);
      assert.ok(!families[m[1]]?.samples, `HELP after samples for ${m[1]}`);
      families[m[1]] = { ...families[m[1]], help: m[2] };
      current = m[1];
    } else if ((m = TYPE.exec(line))) {
      assert.ok(!families[m[1]]?.type, `second TYPE for ${m[1]}`);
      assert.ok(!families[m[1]]?.samples, `TYPE after samples for ${m[1]}`);
      families[m[1]] = { ...families[m[1]], type: m[2] };
      current = m[1];
    } else if (line.startsWith('#')) {
      // a comment: allowed
    } else {
      m = SAMPLE.exec(line);
      assert.ok(m, `line does not parse: ${JSON.stringify(line)}`);
      const [, name, labels = '', value] = m;
      const fam = families[name] ? name : name.replace(/_(bucket|sum|count)$/, '');
      assert.ok(families[fam], `sample of an undeclared family: ${line}`);
      assert.equal(fam, current, `sample outside its family block: ${line}`);
      if (fam !== name) assert.ok(['histogram', 'summary'].includes(families[fam].type), line);
      families[fam].samples = (families[fam].samples || 0) + 1;
      const series = name + labels;
      assert.ok(!samples.has(series), `duplicate series ${series}`);
      samples.set(series, Number(value.replace(/^\+?Inf$/, 'Infinity')));
    }
  }
  for (const [name, f] of Object.entries(families)) {
    assert.ok(f.help && f.help.length > 0, `${name} has no HELP`);
    assert.ok(f.type, `${name} has no TYPE`);
    assert.ok(f.samples > 0, `${name} has no samples`);
    if (f.type === 'counter') {
      for (const [s, v] of samples) if (s === name || s.startsWith(name + '{')) assert.ok(v >= 0 && Number.isFinite(v), s);
    }
  }
  return { families, samples };
}

async function scrape(s = srv) {
  const r = await fetch(s.http + '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parse(await r.text()).samples;
}

// Poll until pred(samples) holds (counters are bumped in the loop turn
// after the traffic that the client saw).
async function until(pred, ms = 3000) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await scrape();
    if (pred(s) || Date.now() > end) return s;
    await sleep(30);
  }
}

const v = (s, k) => {
  assert.ok(s.has(k), `no series ${k}`);
  return s.get(k);
};

test('the exposition is valid Prometheus text', async () => {
  const r = await fetch(srv.http + '/metrics');
  const { families, samples } = parse(await r.text());
  for (const f of ['basestation_connections', 'basestation_connections_opened_total', 'basestation_connections_closed_total',
    'basestation_connections_refused_total', 'basestation_messages_in_total', 'basestation_messages_out_total',
    'basestation_bytes_in_total', 'basestation_bytes_out_total', 'basestation_messages_stored_total', 'basestation_acks_total',
    'basestation_drops_total', 'basestation_db_commit_seconds']) assert.ok(families[f], `${f} missing`);
  assert.equal(families.basestation_connections.type, 'gauge');
  assert.equal(families.basestation_messages_in_total.type, 'counter');
  assert.equal(families.basestation_db_commit_seconds.type, 'histogram');
  // histogram: buckets cumulative, le ascending, +Inf equals _count
  const buckets = [...samples].filter(([k]) => k.startsWith('basestation_db_commit_seconds_bucket'))
    .map(([k, x]) => [Number(/le="([^"]+)"/.exec(k)[1].replace('+Inf', 'Infinity')), x]);
  assert.ok(buckets.length >= 2);
  assert.equal(buckets[buckets.length - 1][0], Infinity);
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i][0] > buckets[i - 1][0], 'le ascending');
    assert.ok(buckets[i][1] >= buckets[i - 1][1], 'cumulative');
  }
  assert.equal(buckets[buckets.length - 1][1], samples.get('basestation_db_commit_seconds_count'));
  assert.ok(samples.has('basestation_db_commit_seconds_sum'));
  // HEAD works; other methods do not
  assert.equal((await fetch(srv.http + '/metrics', { method: 'HEAD' })).status, 200);
  assert.equal((await fetch(srv.http + '/metrics', { method: 'POST' })).status, 405);
});

test('connection, message, byte, store, ack and commit counters move with traffic', async () => {
  const s0 = await scrape();
  const a = await connect(srv, 'm-alice');
  const b = await connect(srv, 'm-bob');
  let s1 = await until((s) => v(s, 'basestation_connections') === v(s0, 'basestation_connections') + 2);
  assert.equal(v(s1, 'basestation_connections'), v(s0, 'basestation_connections') + 2);
  assert.equal(v(s1, 'basestation_users_online'), v(s0, 'basestation_users_online') + 2);
  assert.equal(v(s1, 'basestation_connections_opened_total'), v(s0, 'basestation_connections_opened_total') + 2);

  for (let i = 0; i < 3; i++) { a.send({ type: 'send', to: 'm-bob', data: { i } }); await a.next('ack'); }
  for (let i = 0; i < 3; i++) await b.next('message');
  a.send({ type: 'join', room: 'm-room' }); await a.next('joined');
  const s2 = await until((s) => v(s, 'basestation_acks_total') >= v(s0, 'basestation_acks_total') + 3);
  const d = (k) => v(s2, k) - v(s1, k);
  assert.ok(d('basestation_messages_in_total') >= 4, 'messages in');
  assert.ok(d('basestation_messages_out_total') >= 7, 'messages out (3 acks, 3 messages, joined)');
  assert.ok(d('basestation_bytes_in_total') >= 4 * 20, 'bytes in');
  assert.ok(d('basestation_bytes_out_total') >= 7 * 20, 'bytes out');
  assert.equal(d('basestation_messages_stored_total'), 3);
  assert.equal(d('basestation_acks_total'), 3);
  assert.equal(d('basestation_last_seq'), 3);
  assert.ok(d('basestation_db_commit_seconds_count') >= 1, 'commits');
  assert.ok(d('basestation_db_commit_seconds_sum') > 0, 'commit time');
  assert.equal(d('basestation_rooms'), 1);

  // an error frame
  a.send('not json');
  await a.next('error');
  // HTTP: a publish is stored and counted, requests are counted
  const r = await api(srv, 'POST', '/api/publish', { to: 'm-offline', data: 1 });
  assert.equal(r.status, 200);
  const t = await api(srv, 'POST', '/api/tasks', { title: 'm', owner: 'm-alice', total: 2 });
  assert.equal(t.status, 201);
  let s3 = await until((s) => v(s, 'basestation_messages_stored_total') === v(s2, 'basestation_messages_stored_total') + 1);
  assert.equal(v(s3, 'basestation_messages_stored_total'), v(s2, 'basestation_messages_stored_total') + 1);
  assert.ok(v(s3, 'basestation_errors_sent_total') > v(s2, 'basestation_errors_sent_total'));
  assert.ok(v(s3, 'basestation_http_requests_total') > v(s2, 'basestation_http_requests_total'));
  assert.equal(v(s3, 'basestation_tasks'), v(s2, 'basestation_tasks') + 1);
  assert.ok(v(s3, 'basestation_task_updates_total') >= v(s2, 'basestation_task_updates_total') + 1);
  // the offline inbox is counted as replayed
  const off = await connect(srv, 'm-offline');
  await off.next('message');
  s3 = await until((s) => v(s, 'basestation_replayed_total') > v(s2, 'basestation_replayed_total'));
  assert.ok(v(s3, 'basestation_replayed_total') > v(s2, 'basestation_replayed_total'));

  // closing: the gauge goes down, the closed counter up
  await a.close(); await b.close(); await off.close();
  const s4 = await until((s) => v(s, 'basestation_connections') === v(s0, 'basestation_connections'));
  assert.equal(v(s4, 'basestation_connections'), v(s0, 'basestation_connections'));
  assert.equal(v(s4, 'basestation_users_online'), v(s0, 'basestation_users_online'));
  assert.equal(v(s4, 'basestation_connections_closed_total'), v(s0, 'basestation_connections_closed_total') + 3);
});

test('refused upgrades are counted by reason', async () => {
  const key = (reason, status) => `basestation_connections_refused_total{reason="${reason}",status="${status}"}`;
  const s0 = await scrape();
  const tok = token(srv.db, 'm-ref');
  const cases = [
    [{ query: '?token=wrong' }, 401, 'unauthorized'],
    [{ query: '' }, 401, 'unauthorized'],
    [{ query: `?token=${tok}&uid=someone-else` }, 403, 'forbidden'],
    [{ query: `?token=${tok}`, headers: { Origin: 'http://evil.example' } }, 403, 'forbidden'],
    [{ path: '/nope', query: `?token=${tok}` }, 404, 'not_found'],
    [{ query: `?token=${tok}`, headers: { 'Sec-WebSocket-Version': '8' } }, 426, 'version'],
    [{ query: `?token=${tok}`, omit: ['Sec-WebSocket-Key'] }, 400, 'bad_request'],
  ];
  const want = {};
  for (const [opts, status, reason] of cases) {
    const res = await rawExchange(srv.wsPort, upgradeRequest(srv.wsPort, opts), 2000);
    assert.equal(statusOf(res), status, `${JSON.stringify(opts)}: ${res.toString().slice(0, 80)}`);
    want[key(reason, status)] = (want[key(reason, status)] || 0) + 1;
  }
  const s1 = await until((s) => Object.entries(want).every(([k, n]) => v(s, k) - v(s0, k) === n));
  for (const [k, n] of Object.entries(want)) assert.equal(v(s1, k) - v(s0, k), n, k);
  // nothing was opened by any of them
  assert.equal(v(s1, 'basestation_connections_opened_total'), v(s0, 'basestation_connections_opened_total'));
});

test('drops are counted by reason: protocol, slow consumer, rate limit', async () => {
  const s0 = await scrape();
  // protocol: an unmasked frame gets 1002
  const raw = await rawWs(srv, 'm-proto');
  raw.write(frame(1, '{"type":"ping"}', { mask: false }));
  assert.equal(await raw.closeCode(), 1002);
  raw.destroy();
  // slow consumer: a reader that stops reading past --max-outbuf (64 KiB)
  const slow = await connect(srv, 'm-slow');
  slow.ws._socket.pause();
  const pub = await connect(srv, 'm-pub');
  // incompressible: the client offers permessage-deflate, and 'yyy…'
  // would shrink to a few bytes and never fill the buffer
  const data = incompressible(16000);
  let acked = 0;
  for (let i = 0; i < 400; i++) {
    pub.send({ type: 'send', to: 'm-slow', data });
    // This server limits frames to 200/s: slow down when told to.
    const r = await pub.next((m) => m.type === 'ack' || m.type === 'error');
    if (r.type === 'error') { assert.equal(r.code, 'rate_limited'); await sleep(50); continue; }
    acked++;
    if (i % 10 === 9) {
      const s = await scrape();
      if (v(s, 'basestation_drops_total{reason="slow_consumer"}') > v(s0, 'basestation_drops_total{reason="slow_consumer"}')) break;
    }
  }
  slow.ws._socket.resume();
  slow.terminate();
  // rate limit: a flood past the bucket (200) is answered rate_limited
  const flood = await connect(srv, 'm-flood');
  for (let i = 0; i < 260; i++) flood.send({ type: 'ping' });
  await flood.next((m) => m.type === 'error' && m.code === 'rate_limited');
  const s1 = await until((s) => v(s, 'basestation_drops_total{reason="slow_consumer"}') > v(s0, 'basestation_drops_total{reason="slow_consumer"}'));
  const d = (k) => v(s1, k) - v(s0, k);
  assert.equal(d('basestation_drops_total{reason="protocol"}'), 1);
  assert.equal(d('basestation_drops_total{reason="slow_consumer"}'), 1, `after ${acked} sends`);
  assert.ok(d('basestation_rate_limited_total') >= 1);
  flood.terminate();
  await pub.close();
});
