// Server-Sent Events (contract §9): GET /sse on the WebSocket listener,
// read by a raw HTTP client: message and task events, resume by
// Last-Event-ID and since= (the header wins) without gap or duplicate,
// refusals, CORS, heartbeats, the slow-reader cut, presence and the inbox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, token, connect, api, sleep } from './lib.mjs';

// A raw SSE reader: the response head, then events and comment lines.
class Sse {
  constructor(port, query, headers = {}) {
    this.events = [];
    this.comments = 0;
    this.waiters = [];
    this.buf = '';
    this.head = null;
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setEncoding('utf8');
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    this.sock.write(`GET /sse?${query} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n${extra}\r\n`);
    this.ended = new Promise((resolve) => this.sock.on('close', resolve));
    this.sock.on('error', () => {});
    this.sock.on('data', (d) => { this.buf += d; this.parse(); });
    this.opened = this.wait(() => this.head !== null, 5000);
  }
  parse() {
    if (this.head === null) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const lines = this.buf.slice(0, i).split('\r\n');
      this.status = Number(lines[0].split(' ')[1]);
      this.headers = {};
      for (const l of lines.slice(1)) {
        const k = l.indexOf(':');
        this.headers[l.slice(0, k).toLowerCase()] = l.slice(k + 1).trim();
      }
      this.head = lines;
      this.buf = this.buf.slice(i + 4);
      if (this.status !== 200) { this.body = this.buf; this.buf = ''; }
    }
    if (this.status !== 200) { this.body += this.buf; this.buf = ''; this.poke(); return; }
    let i;
    while ((i = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      const ev = { data: [] };
      for (const l of block.split('\n')) {
        if (l.startsWith(':')) { this.comments++; continue; }
        const k = l.indexOf(':');
        const f = l.slice(0, k), v = l.slice(k + 1).replace(/^ /, '');
        if (f === 'data') ev.data.push(v); else ev[f] = v;
      }
      if (ev.event) {
        ev.data = ev.data.join('\n');
        ev.json = JSON.parse(ev.data);
        this.events.push(ev);
      }
    }
    this.poke();
  }
  poke() {
    for (const w of [...this.waiters]) if (w.pred()) { this.waiters.splice(this.waiters.indexOf(w), 1); clearTimeout(w.timer); w.resolve(); }
  }
  wait(pred, ms = 5000) {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => { this.waiters.splice(this.waiters.indexOf(w), 1); reject(new Error('timeout; events=' + JSON.stringify(this.events).slice(-600) + ' head=' + JSON.stringify(this.head) + ' body=' + this.body)); }, ms);
      this.waiters.push(w);
    });
  }
  messages() { return this.events.filter((e) => e.event === 'message'); }
  close() { this.sock.destroy(); return this.ended; }
}

async function refusal(srv, query, headers) {
  const s = new Sse(srv.wsPort, query, headers);
  try {
    await s.opened;
    return s.status;
  } finally { await s.close(); }
}

test('message events: direct and listed rooms, id = seq, data as on WebSocket', async () => {
  const srv = await startServer();
  const clients = [];
  let s;
  try {
    const bob = await connect(srv, 'bob'); clients.push(bob);
    const alice = await connect(srv, 'alice'); clients.push(alice);
    for (const r of ['r1', 'r2']) { bob.send({ type: 'join', room: r }); await bob.next('joined'); alice.send({ type: 'join', room: r }); await alice.next('joined'); }
    s = new Sse(srv.wsPort, `token=${token(srv.db, 'bob')}&uid=bob&room=r1`);
    await s.opened;
    assert.equal(s.status, 200);
    assert.match(s.headers['content-type'], /^text\/event-stream/);
    assert.equal(s.headers['access-control-allow-origin'], undefined);
    alice.send({ type: 'send', to: 'bob', data: { hi: 'line\nbreak' } });
    const a1 = await alice.next('ack');
    alice.send({ type: 'publish', room: 'r2', data: 'not listed' });
    await alice.next('ack');
    alice.send({ type: 'publish', room: 'r1', data: [1, 2] });
    const a3 = await alice.next('ack');
    await s.wait(() => s.messages().length >= 2);
    const ws1 = await bob.next((m) => m.type === 'message' && m.seq === a1.seq);
    const [e1, e2] = s.messages();
    assert.equal(e1.id, String(a1.seq));
    assert.deepEqual(e1.json, ws1);
    assert.equal(e2.id, String(a3.seq));
    assert.equal(e2.json.room, 'r1');
    assert.deepEqual(e2.json.data, [1, 2]);
    await sleep(200);
    assert.equal(s.messages().length, 2, 'r2 was not listed');
    assert.ok(!s.events.some((e) => e.event !== 'message'), 'no connect or other frames');
  } finally {
    if (s) await s.close();
    for (const c of clients) await c.close();
    await srv.cleanup();
  }
});

test('task events: the current snapshot first, then each change', async () => {
  const srv = await startServer();
  let s;
  try {
    let r = await api(srv, 'POST', '/api/tasks', { id: 'job1', title: 'Import', steps: ['a', 'b'], owner: 'alice', watchers: ['bob'] });
    assert.equal(r.status, 201);
    r = await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'running' });
    assert.equal(r.status, 200);
    const now = await api(srv, 'GET', '/api/tasks/job1');
    s = new Sse(srv.wsPort, `token=${token(srv.db, 'bob')}&task=job1`);
    await s.opened;
    assert.equal(s.status, 200);
    await s.wait(() => s.events.length >= 1);
    assert.equal(s.events[0].event, 'task');
    assert.equal(s.events[0].id, undefined);
    // A running step's duration grows while it runs: compared without it.
    const still = (t) => ({ ...t, steps: t.steps.map((x) => ({ ...x, duration: 0 })) });
    assert.deepEqual(still(s.events[0].json), still(now.json));
    await api(srv, 'POST', '/api/tasks/job1/progress', { step: 0, status: 'finish' });
    await s.wait(() => s.events.length >= 2);
    assert.equal(s.events[1].json.id, 'job1');
    assert.equal(s.events[1].json.version, now.json.version + 1);
    assert.equal(s.events[1].json.steps[0].status, 'finish');
  } finally {
    if (s) await s.close();
    await srv.cleanup();
  }
});

test('refusals: 401 and 403 as for /ws, a room not joined, a task not watchable', async () => {
  const srv = await startServer();
  try {
    const bob = await connect(srv, 'bob');
    bob.send({ type: 'join', room: 'mine' }); await bob.next('joined');
    await bob.close();
    await api(srv, 'POST', '/api/tasks', { id: 'secret', title: 'x', total: 1, owner: 'alice' });
    const t = token(srv.db, 'bob');
    assert.equal(await refusal(srv, ''), 401);
    assert.equal(await refusal(srv, 'token=nope'), 401);
    assert.equal(await refusal(srv, `token=${t}&uid=carol`), 403);
    assert.equal(await refusal(srv, `token=${t}`, { Origin: 'https://evil.example' }), 403);
    assert.equal(await refusal(srv, `token=${t}&room=mine&room=other`), 403);
    assert.equal(await refusal(srv, `token=${t}&task=secret`), 403);
    assert.equal(await refusal(srv, `token=${t}&task=nosuch`), 403);
    assert.equal(await refusal(srv, `token=${t}&room=mine`), 200);
    assert.equal(await refusal(srv, '', { Authorization: 'Bearer ' + t }), 200);
    const admin = token(srv.db, 'root', 'admin');
    assert.equal(await refusal(srv, `token=${admin}&task=secret`), 200);
  } finally {
    await srv.cleanup();
  }
});

test('an SSE stream counts against --max-connections like a WebSocket: 503 past it, a freed slot usable again', async () => {
  const srv = await startServer({ args: ['--max-connections', '2'] });
  const open = [];
  try {
    open.push(await connect(srv, 'ws1'));
    const s1 = new Sse(srv.wsPort, `token=${token(srv.db, 'sse1')}`);
    open.push(s1);
    await s1.opened;
    assert.equal(s1.status, 200);
    // a third, either kind: the connection limit's 503
    assert.equal(await refusal(srv, `token=${token(srv.db, 'sse2')}`), 503);
    await s1.close();
    let st = 0;
    for (let i = 0; i < 40 && st !== 200; i++) {
      st = await refusal(srv, `token=${token(srv.db, 'sse3')}`);
      if (st !== 200) await sleep(50);
    }
    assert.equal(st, 200, 'the slot of the closed stream is free again');
  } finally {
    for (const c of open) await c.close();
    await srv.cleanup();
  }
});

test('CORS: an allowed Origin is echoed with Vary: Origin', async () => {
  const srv = await startServer({ args: ['--origin', 'https://app.example'] });
  let s;
  try {
    s = new Sse(srv.wsPort, `token=${token(srv.db, 'bob')}`, { Origin: 'https://app.example' });
    await s.opened;
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(s.headers.vary, 'Origin');
  } finally {
    if (s) await s.close();
    await srv.cleanup();
  }
});

test('resume: Last-Event-ID wins over since=, no gap and no duplicate under a flood', async () => {
  const srv = await startServer();
  const clients = [];
  const streams = [];
  try {
    const alice = await connect(srv, 'alice'); clients.push(alice);
    const t = token(srv.db, 'bob');
    const s1 = new Sse(srv.wsPort, `token=${t}&since=0`); streams.push(s1);
    await s1.opened;
    const N = 400;
    const acks = [];
    let sent = 0;
    const flood = (async () => {
      for (; sent < N; sent++) {
        alice.send({ type: 'send', to: 'bob', data: sent });
        if (sent % 20 === 19) await sleep(5);
      }
      for (let i = 0; i < N; i++) acks.push((await alice.next('ack', 15000)).seq);
    })();
    await s1.wait(() => s1.messages().length >= 50, 10000);
    await s1.close();
    const got = s1.messages().map((e) => Number(e.id));
    const last = got[got.length - 1];
    // since=0 would replay everything again: the header must win.
    const s2 = new Sse(srv.wsPort, `token=${t}&since=0`, { 'Last-Event-ID': String(last) }); streams.push(s2);
    await s2.opened;
    await flood;
    await s2.wait(() => s2.messages().length > 0 && Number(s2.messages().at(-1).id) >= acks.at(-1), 15000);
    const all = [...got, ...s2.messages().map((e) => Number(e.id))];
    assert.deepEqual(all, [...acks].sort((a, b) => a - b), 'every seq once, in order');
    for (const e of [...s1.messages(), ...s2.messages()]) assert.equal(e.json.seq, Number(e.id));
    // since= alone resumes from its seq.
    const s3 = new Sse(srv.wsPort, `token=${t}&since=${acks[N - 3]}`); streams.push(s3);
    await s3.opened;
    await s3.wait(() => s3.messages().length >= 2);
    await sleep(200);
    assert.deepEqual(s3.messages().map((e) => Number(e.id)), acks.slice(N - 2));
  } finally {
    for (const s of streams) await s.close();
    for (const c of clients) await c.close();
    await srv.cleanup();
  }
});

test('heartbeat comments every --heartbeat; no idle timeout for a silent stream', async () => {
  const srv = await startServer({ args: ['--heartbeat', '1', '--idle-timeout', '2'] });
  let s;
  try {
    s = new Sse(srv.wsPort, `token=${token(srv.db, 'bob')}`);
    await s.opened;
    await s.wait(() => s.comments >= 3, 8000);
    assert.ok(!s.sock.destroyed, 'still open past --idle-timeout');
  } finally {
    if (s) await s.close();
    await srv.cleanup();
  }
});

test('a reader that does not read is cut at --max-outbuf', async () => {
  const srv = await startServer({ args: ['--max-outbuf', '65536'] });
  const clients = [];
  let s;
  try {
    const alice = await connect(srv, 'alice'); clients.push(alice);
    s = new Sse(srv.wsPort, `token=${token(srv.db, 'bob')}`);
    await s.opened;
    s.sock.pause();
    const big = 'x'.repeat(16000);
    let ended = false;
    s.ended.then(() => { ended = true; });
    for (let i = 0; i < 400 && !ended; i++) {
      alice.send({ type: 'send', to: 'bob', data: big });
      await alice.next('ack');
    }
    s.sock.resume();
    await Promise.race([s.ended, sleep(10000).then(() => { throw new Error('not cut'); })]);
    const m = await (await fetch(srv.http + '/metrics')).text();
    assert.match(m, /basestation_drops_total\{reason="slow_consumer"\} [1-9]/);
  } finally {
    if (s) await s.close();
    for (const c of clients) await c.close();
    await srv.cleanup();
  }
});

test('an SSE stream counts as online: presence and the offline inbox', async () => {
  const srv = await startServer();
  const clients = [];
  const streams = [];
  try {
    const bob = await connect(srv, 'bob');
    bob.send({ type: 'join', room: 'lobby' }); await bob.next('joined');
    await bob.close();
    const alice = await connect(srv, 'alice'); clients.push(alice);
    alice.send({ type: 'join', room: 'lobby' }); await alice.next('joined');
    // Stored while bob is offline: the stream without since gets it (the inbox).
    alice.send({ type: 'send', to: 'bob', data: 'while away' });
    const a1 = await alice.next('ack');
    const t = token(srv.db, 'bob');
    const s = new Sse(srv.wsPort, `token=${t}&room=lobby`); streams.push(s);
    await s.opened;
    await s.wait(() => s.messages().length >= 1);
    assert.equal(Number(s.messages()[0].id), a1.seq);
    alice.send({ type: 'presence', room: 'lobby' });
    const p = await alice.next('presence');
    assert.ok(p.online.includes('bob'), JSON.stringify(p));
    // Delivered on the stream: not in bob's inbox later.
    alice.send({ type: 'send', to: 'bob', data: 'live' });
    const a2 = await alice.next('ack');
    await s.wait(() => s.messages().some((e) => Number(e.id) === a2.seq));
    await s.close();
    await sleep(200);
    alice.send({ type: 'presence', room: 'lobby' });
    assert.ok(!(await alice.next('presence')).online.includes('bob'));
    const bob2 = await connect(srv, 'bob'); clients.push(bob2);
    assert.ok(await bob2.none((m) => m.type === 'message', 500), 'nothing left in the inbox');
  } finally {
    for (const s of streams) await s.close();
    for (const c of clients) await c.close();
    await srv.cleanup();
  }
});
