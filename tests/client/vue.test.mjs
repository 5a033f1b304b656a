// The Vue composables (clients/js/vue.js) in real Vue components, mounted in
// Node by Vue's own custom-renderer API on a tiny in-memory tree, against the
// real broker: one client per app, state as a ref, useTask's snapshot and
// live elapsed, unsubscribe on unmount (seen on the server) and a current
// snapshot on remount, useRoom's messages with ack state across a restart,
// usePresence, and no listener or subscription left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createRenderer, defineComponent, h, nextTick, ref, KeepAlive } from 'vue';
import {
  useBasestation, useTask, useRoom, usePresence, storeStats, createBasestation,
} from '../../clients/js/vue.js';
import {
  BasestationClient, WebSocket, memoryStorage, startBroker, stopBroker, token, tempDb, api, sleep, until,
} from './lib.mjs';

// ---- a renderer that keeps nodes as plain objects ----
const nodeOps = {
  createElement: (tag) => ({ tag, children: [], props: {}, parent: null }),
  createText: (text) => ({ text, parent: null }),
  createComment: (text) => ({ comment: text, parent: null }),
  setText: (n, text) => { n.text = text; },
  setElementText: (el, text) => { el.children = [{ text, parent: el }]; },
  insert(child, parent, anchor) {
    if (child.parent) nodeOps.remove(child);
    const i = anchor ? parent.children.indexOf(anchor) : -1;
    if (i >= 0) parent.children.splice(i, 0, child); else parent.children.push(child);
    child.parent = parent;
  },
  remove(child) {
    const p = child.parent;
    if (!p) return;
    const i = p.children.indexOf(child);
    if (i >= 0) p.children.splice(i, 1);
    child.parent = null;
  },
  parentNode: (n) => n.parent,
  nextSibling: (n) => (n.parent ? n.parent.children[n.parent.children.indexOf(n) + 1] || null : null),
  patchProp: (el, key, prev, next) => { el.props[key] = next; },
};
const { createApp } = createRenderer(nodeOps);
const textOf = (n) => (n.text !== undefined ? n.text : (n.children || []).map(textOf).join(''));
const root = () => ({ tag: 'root', children: [], props: {}, parent: null });

let srv, dir;
before(async () => {
  const t = tempDb();
  dir = t.dir;
  srv = await startBroker(t.db);
});
after(async () => {
  if (srv) await stopBroker(srv);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const clientOptions = (uid, extra = {}) => ({
  url: srv.url(), uid, token: token(srv.db, uid), WebSocket, storage: memoryStorage(), minDelay: 100, maxDelay: 500, ...extra,
});
const listeners = (c) => [...c._listeners.values()].reduce((n, l) => n + l.length, 0);
async function serverTasks(uid) {
  const r = await api(srv, 'GET', '/admin/connections', undefined, 'test-admin-key');
  return r.json.connections.filter((c) => c.uid === uid).map((c) => c.tasks);
}
const progress = async (id, body) => {
  const r = await api(srv, 'POST', `/api/tasks/${id}/progress`, body);
  assert.equal(r.status, 200, r.text);
};

test('useBasestation: one client per app, state as a ref', async () => {
  let a, b, inner;
  const Child = defineComponent({ setup() { inner = useBasestation(); return () => h('span', inner.state.value); } });
  const App = defineComponent({
    setup() {
      a = useBasestation(clientOptions('ann'), { history: null });
      b = useBasestation(); // the same client
      return () => h('div', [h('b', a.state.value), h(Child)]);
    },
  });
  const el = root();
  const app = createApp(App);
  app.mount(el);
  try {
    assert.equal(a.client, b.client);
    assert.equal(inner.client, a.client);
    assert.ok(a.client instanceof BasestationClient);
    await until(() => a.state.value === 'open', 5000, 'open');
    await nextTick();
    assert.equal(textOf(el), 'openopen');
    assert.equal(a.connected.value, true);
    assert.equal(a.session.value.uid, 'ann');
    // Another app gets its own client.
    let other;
    const app2 = createApp(defineComponent({ setup() { other = useBasestation(clientOptions('ann'), { history: null }); return () => null; } }));
    app2.mount(root());
    assert.notEqual(other.client, a.client);
    app2.unmount();
    assert.equal(other.client.state, 'closed', 'the app closes the client it made');
    // An app without a client yet: a clear error.
    const bare = createApp(defineComponent({ setup() { useBasestation(); return () => null; } }));
    bare.config.warnHandler = () => {};
    assert.throws(() => bare.mount(root()), /no client yet/);
  } finally {
    app.unmount();
  }
  assert.equal(a.client.state, 'closed');
});

test('useTask: the snapshot, a live elapsed, unsubscribe on unmount, current on remount', async () => {
  let r = await api(srv, 'POST', '/api/tasks', { id: '2', title: '流程2', owner: 'alice', steps: ['准备', '执行', '完成'] });
  assert.equal(r.status, 201, r.text);
  r = await api(srv, 'POST', '/api/tasks', { id: '1', title: '流程1', owner: 'alice', steps: ['准备'] });
  assert.equal(r.status, 201, r.text);
  await progress('1', { step: 0, status: 'finish' });
  await progress('2', { step: 0, status: 'running' });

  const plugin = createBasestation(clientOptions('alice'), { history: null });
  const client = plugin.client;
  const show = ref(true);
  const which = ref(2);
  let t;
  const Timeline = defineComponent({
    setup() {
      t = useTask(which, { tick: 50 });
      return () => h('ol', t.steps.value.map((s) => h('li', `${s.name}:${s.status === 'finish' ? '完成' : '执行中'} ${(s.elapsed / 1000).toFixed(2)}秒`)));
    },
  });
  const App = defineComponent({ setup: () => () => h('main', show.value ? [h(Timeline)] : []) });
  const el = root();
  const app = createApp(App).use(plugin);
  app.mount(el);
  try {
    await until(() => t.fresh.value && t.task.value && t.task.value.id === '2', 5000, 'task 2');
    assert.equal(t.loading.value, false);
    assert.deepEqual(t.steps.value.map((s) => s.status), ['running', 'pending', 'pending']);
    assert.equal(t.running.value.name, '准备');
    assert.deepEqual(await serverTasks('alice'), [1]);
    const e1 = t.elapsed.value;
    await sleep(300);
    const e2 = t.elapsed.value;
    assert.ok(e2 >= e1 + 200, `elapsed counts while the step runs: ${e1} -> ${e2}`);
    await nextTick();
    assert.match(textOf(el), /^准备:执行中 \d+\.\d\d秒执行:执行中 0\.00秒完成:执行中 0\.00秒$/);

    // Switch tasks (the seed page's 查询流程1 / 查询流程2).
    which.value = 1;
    await until(() => t.fresh.value && t.task.value.id === '1', 5000, 'task 1');
    assert.equal(t.running.value, null);
    assert.equal(t.elapsed.value, 0);
    await until(async () => (await serverTasks('alice'))[0] === 1, 3000, 'task 2 unsubscribed');
    which.value = 2;
    await until(() => t.fresh.value && t.task.value.id === '2', 5000, 'task 2 again');

    // Unmount: the task is unsubscribed on the server.
    show.value = false;
    await nextTick();
    await until(async () => (await serverTasks('alice'))[0] === 0, 3000, 'unsubscribed on unmount');
    assert.deepEqual(storeStats(client).tasks, {});
    // Meanwhile the task moves on.
    await progress('2', { step: 0, status: 'finish' });
    await progress('2', { step: 1, status: 'running' });
    // Remount: the last known snapshot at once, the current one within a round trip.
    show.value = true;
    await nextTick();
    assert.ok(t.task.value && t.task.value.id === '2', 'the kept snapshot shows at once');
    assert.equal(t.fresh.value, false);
    await until(() => t.fresh.value, 2000, 'current snapshot after remount');
    assert.deepEqual(t.steps.value.map((s) => s.status), ['finish', 'running', 'pending']);
    assert.ok(t.steps.value[0].elapsed > 0 && t.steps.value[0].elapsed === t.steps.value[0].duration);
    assert.deepEqual(await serverTasks('alice'), [1]);

    // A finished task stops counting.
    await progress('2', { step: 1, status: 'finish' });
    await progress('2', { step: 2, status: 'finish' });
    await until(() => t.task.value.status === 'done', 3000, 'done');
    const d1 = t.steps.value.map((s) => s.elapsed);
    await sleep(150);
    assert.deepEqual(t.steps.value.map((s) => s.elapsed), d1);

    // A task that does not exist yet: not_found, then found once created.
    which.value = 'later';
    await until(() => t.error.value && t.error.value.code === 'not_found', 3000, 'not_found');
    r = await api(srv, 'POST', '/api/tasks', { id: 'later', title: 'Later', owner: 'alice', steps: ['x'] });
    assert.equal(r.status, 201);
    await until(() => t.task.value && t.task.value.id === 'later', 5000, 'found on retry');
    assert.equal(t.error.value, null);

    // Mount and unmount many times: no listener and no subscription left.
    const before = listeners(client);
    for (let i = 0; i < 20; i++) { show.value = !show.value; await nextTick(); }
    await until(async () => (await serverTasks('alice'))[0] === 1, 3000, 'one subscription');
    assert.equal(listeners(client), before);
    assert.deepEqual(storeStats(client).tasks, { later: 1 });
  } finally {
    app.unmount();
  }
  assert.equal(client.state, 'closed');
});

test('useTask under <KeepAlive>: unsubscribed while deactivated, current when activated', async () => {
  const r = await api(srv, 'POST', '/api/tasks', { id: 'ka', title: 'KA', owner: 'kim', steps: ['a', 'b'] });
  assert.equal(r.status, 201, r.text);
  const plugin = createBasestation(clientOptions('kim'), { history: null });
  const which = ref('t');
  let t;
  const T = defineComponent({ name: 'T', setup() { t = useTask('ka'); return () => h('p', String(t.task.value && t.task.value.version)); } });
  const O = defineComponent({ name: 'O', setup: () => () => h('p', 'other') });
  const app = createApp(defineComponent({ setup: () => () => h(KeepAlive, null, [which.value === 't' ? h(T) : h(O)]) })).use(plugin);
  app.mount(root());
  try {
    await until(() => t.fresh.value, 5000, 'snapshot');
    which.value = 'o';
    await nextTick();
    await until(async () => (await serverTasks('kim'))[0] === 0, 3000, 'unsubscribed when deactivated');
    await progress('ka', { step: 0, status: 'running' });
    which.value = 't';
    await nextTick();
    await until(() => t.fresh.value && t.task.value.steps[0].status === 'running', 3000, 'current when activated');
    assert.deepEqual(await serverTasks('kim'), [1]);
  } finally {
    app.unmount();
  }
});

test('useRoom and usePresence: messages with ack state, across a restart and a remount', async () => {
  const pa = createBasestation(clientOptions('ua'), { history: null });
  const pb = createBasestation(clientOptions('ub'), { history: null });
  const showA = ref(true);
  let ra, rb, pres;
  const ChatA = defineComponent({ setup() { ra = useRoom('chat'); pres = usePresence('chat', { interval: 200 }); return () => h('ul', ra.messages.value.map((m) => h('li', `${m.from}:${m.data.text}:${m.status}`))); } });
  const ChatB = defineComponent({ setup() { rb = useRoom('chat'); return () => null; } });
  const elA = root();
  const appA = createApp(defineComponent({ setup: () => () => h('main', showA.value ? [h(ChatA)] : []) })).use(pa);
  const appB = createApp(ChatB).use(pb);
  appA.mount(elA);
  appB.mount(root());
  try {
    await until(() => ra.joined.value && rb.joined.value, 5000, 'both joined');
    await until(() => pres.online.value.length === 2, 5000, 'both online');
    assert.deepEqual(pres.online.value, ['ua', 'ub']);

    const p = ra.send({ text: 'hello' });
    assert.equal(ra.messages.value.at(-1).status, 'sending');
    const ack = await p;
    assert.ok(Number.isInteger(ack.seq));
    assert.equal(ra.messages.value.at(-1).status, 'sent');
    assert.equal(ra.messages.value.at(-1).seq, ack.seq);
    await until(() => rb.messages.value.length === 1, 3000, 'delivered to b');
    assert.deepEqual([rb.messages.value[0].from, rb.messages.value[0].data, rb.messages.value[0].status, rb.messages.value[0].seq], ['ua', { text: 'hello' }, 'received', ack.seq]);
    await nextTick();
    assert.equal(textOf(elA), 'ua:hello:sent');

    // b leaves presence: a sees it on the next ask.
    pb.client.close();
    await until(() => pres.online.value.length === 1, 5000, 'b offline');
    pb.client.connect();
    await until(() => pres.online.value.length === 2, 5000, 'b back');

    // The broker restarts: a's message waits (queued), then is sent once.
    await stopBroker(srv);
    await until(() => pa.client.state === 'reconnecting', 5000, 'reconnecting');
    const p2 = ra.send({ text: 'while down' });
    assert.equal(ra.messages.value.at(-1).status, 'queued');
    srv = await startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort });
    const ack2 = await p2;
    assert.equal(ra.messages.value.at(-1).status, 'sent');
    await until(() => rb.messages.value.length === 2, 5000, 'b got it');
    assert.equal(rb.messages.value[1].seq, ack2.seq);

    // a's chat unmounts; b writes; a comes back and shows it.
    showA.value = false;
    await nextTick();
    assert.deepEqual(storeStats(pa.client).rooms, {});
    assert.deepEqual(storeStats(pa.client).presence, {});
    await rb.send({ text: 'while you were away' });
    await sleep(100);
    showA.value = true;
    await nextTick();
    assert.deepEqual(ra.messages.value.map((m) => [m.from, m.data.text, m.status]),
      [['ua', 'hello', 'sent'], ['ua', 'while down', 'sent'], ['ub', 'while you were away', 'received']]);
    await until(() => pres.online.value.length === 2, 5000, 'presence asked again');
    const stored = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE room = 'chat'" }, 'test-admin-key');
    assert.equal(stored.json.rows[0][0], 3, 'each message stored once');
  } finally {
    appA.unmount();
    appB.unmount();
  }
});

test('useRoom: history across a reload, and an unsent message sent once with its ref', async () => {
  const history = memoryStorage();
  const storage = memoryStorage();
  const mk = () => createBasestation(clientOptions('rel', { storage }), { history });
  let r;
  const C = defineComponent({ setup() { r = useRoom('notes'); return () => null; } });
  let plugin = mk();
  let app = createApp(C).use(plugin);
  app.mount(root());
  await r.send({ text: 'one' });
  // Closed before the next one is sent: "the page is left" with it queued.
  plugin.client.close();
  r.send({ text: 'two' }).catch(() => {});
  assert.equal(r.messages.value[1].status, 'queued');
  const left = app; // not unmounted: a page that is closed runs nothing
  await sleep(200); // the history is written within 100 ms
  const saved = JSON.parse(history.get(plugin.client.storageKey + ':room:notes'));
  assert.deepEqual(saved.map((m) => [m.data.text, m.status]), [['one', 'sent'], ['two', 'queued']]);

  plugin = mk();
  app = createApp(C).use(plugin);
  app.mount(root());
  try {
    assert.deepEqual(r.messages.value.map((m) => m.data.text), ['one', 'two']);
    await until(() => r.messages.value[1].status === 'sent', 5000, 'resent');
    const stored = await api(srv, 'POST', '/admin/sql', { sql: "SELECT count(*) FROM messages WHERE room = 'notes'" }, 'test-admin-key');
    assert.equal(stored.json.rows[0][0], 2);
  } finally {
    app.unmount();
    left.unmount();
  }
});
