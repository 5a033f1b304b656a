// A typed example of the client and the Vue composables. tests/client/types
// compiles it with `tsc --noEmit --strict`: every line must type-check, and
// each line after an expect-error comment must be an error (tsc reports an
// unused directive), so a declaration that accepts a wrong use fails the test.
import {
  BasestationClient, BasestationError, memoryStorage,
  type AckFrame, type ClientFrame, type ClientOptions, type ClientState, type MessageFrame,
  type ServerFrame, type Task, type TaskAckFrame,
} from '../../../clients/js/basestation.js';
import { createBasestation, usePresence, useRoom, useTask, useBasestation } from '../../../clients/js/vue.js';
import { computed, ref } from 'vue';

const options: ClientOptions = {
  url: 'ws://127.0.0.1:8080/ws',
  uid: 'alice',
  token: async () => 'bs_token',
  auth: 'protocol',
  minDelay: 100,
  maxDelay: 5000,
  factor: 2,
  jitter: 0.3,
  maxRetries: 10,
  heartbeatInterval: 20000,
  pongTimeout: 10000,
  connectTimeout: 10000,
  resume: true,
  storage: memoryStorage(),
  storageKey: 'example',
  maxQueue: 100,
  autoConnect: false,
  reconnect: true,
};
const bs = new BasestationClient(options);

// @ts-expect-error: url is required
new BasestationClient({ uid: 'alice' });
// @ts-expect-error: auth is 'query' or 'protocol'
new BasestationClient({ url: 'ws://x', auth: 'header' });
// @ts-expect-error: an unknown option
new BasestationClient({ url: 'ws://x', reconnectDelay: 5 });

// Events are typed per name.
const off = bs.on('state', (state, previous) => {
  const s: ClientState = state;
  const p: ClientState = previous;
  void s; void p;
});
off();
bs.on('message', (m) => {
  const seq: number = m.seq;
  const where: string = m.room !== undefined ? m.room : m.to;
  void seq; void where;
});
bs.on('task', (t) => { const v: number = t.version; void v; });
bs.on('connect', (f) => { const e: string = f.epoch; void e; });
bs.on('resumed', (r) => { const c: boolean = r.complete; void c; });
bs.on('close', ({ code, reason }) => { void code; void reason; });
bs.on('error', (e) => { if (e instanceof BasestationError) { const c: string = e.code; void c; } });
bs.on('frame', (f: ServerFrame) => {
  if ('type' in f && f.type === 'presence') { const online: string[] = f.online; void online; }
});
bs.on('presence', (e) => {
  const kind: 'presence.join' | 'presence.leave' = e.type;
  const who: string = e.uid;
  void kind; void who;
});
// @ts-expect-error: no such event
bs.on('mesage', () => {});
// @ts-expect-error: a state listener gets states, not messages
bs.on('state', (m: MessageFrame) => void m);

async function requests(): Promise<void> {
  const ack: AckFrame = await bs.send('bob', { text: 'hi' });
  const seq: number = (await bs.send('bob', 'hello', { ref: 'my-ref-1' })).seq;
  const pub: { seq: number } = await bs.publish('lobby', { text: 'hello room' });
  const joined = await bs.join('lobby');
  const room: string = joined.room;
  await bs.join('lobby', { presence: true });
  // @ts-expect-error: presence is a boolean
  await bs.join('lobby', { presence: 'yes' });
  const snap: Task = await bs.subscribe('1');
  const n: number = snap.steps.length;
  const who = await bs.presence('lobby');
  const online: string[] = who.online;
  const r = await bs.resume();
  const last: number = r.last;
  await bs.ping();
  await bs.unsubscribe(2);
  await bs.leave('lobby');
  const upd: TaskAckFrame = await bs.request({ type: 'task.update', task: '2', step: 0, status: 'running' });
  const made: Task = await bs.request({ type: 'task.create', title: 'Import', steps: ['fetch', 'save'] });
  const frame: ClientFrame = { type: 'send', to: 'bob', data: null };
  await bs.request(frame);
  void ack; void seq; void pub; void room; void n; void online; void last; void upd; void made;

  // @ts-expect-error: send resolves to an ack, which has no `room`
  (await bs.send('bob', 1)).room;
  // @ts-expect-error: a misspelt frame type
  await bs.request({ type: 'sned', to: 'bob', data: 1 });
  // @ts-expect-error: publish needs a room
  await bs.request({ type: 'publish', data: 1 });
  // @ts-expect-error: data cannot be undefined (JSON has no undefined)
  await bs.send('bob', undefined);
  // @ts-expect-error: a task update status is a step or task status
  await bs.request({ type: 'task.update', task: '2', status: 'finished' });
}
void requests;

// The Vue side.
const plugin = createBasestation(bs, { keep: 50, history: null });
const client: BasestationClient = plugin.client;
void client;

export function setup() {
  const { state, connected, session } = useBasestation(options);
  const s: ClientState = state.value;
  const c: boolean = connected.value;
  const uid: string | undefined = session.value?.uid;

  const id = ref<number | string>(1);
  const { task, steps, elapsed, running, loading, error } = useTask(id, { tick: 100 });
  const title = computed(() => task.value?.title ?? '');
  const labels = computed(() => steps.value.map((st) => `${st.name}:${st.status === 'finish' ? '完成' : '执行中'} ${(st.elapsed / 1000).toFixed(2)}秒`));
  const ms: number = elapsed.value;
  const runningName: string | undefined = running.value?.name;
  const notFound: boolean = error.value?.code === 'not_found';

  const chat = useRoom<{ text: string }>(() => 'chat');
  const first: string | undefined = chat.messages.value[0]?.data.text;
  chat.send({ text: 'hi' }).then((ack) => { const n: number = ack.seq; void n; });
  const { online } = usePresence('chat', { interval: 5000 });
  const who: string[] = online.value;

  // @ts-expect-error: useTask takes an id, not an object
  useTask({ id: 1 });
  // @ts-expect-error: a room item's status is one of the literal states
  const bad: 'delivered' = chat.messages.value[0].status;

  return { s, c, uid, title, labels, ms, runningName, notFound, loading, first, who, bad };
}
