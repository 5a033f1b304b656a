// Types for basestation.js — the client and every frame of the wire protocol
// (docs/protocol.md). Each frame's `type` is a string literal, so a frame with
// a wrong type or a missing field, an unknown event name or a listener of the
// wrong shape fails to compile.

// ---- values ----

/** A `ref`: copied into the reply; for `send`/`publish` also the idempotency key (24 h). */
export type FrameRef = string | number;

/** Message payload: any JSON value (not `undefined`, which JSON cannot carry). */
export type JsonData = {} | null;

export type ClientState = 'closed' | 'connecting' | 'open' | 'reconnecting' | 'failed';
export type TaskStatus = 'pending' | 'running' | 'done' | 'failed' | 'canceled';
export type StepStatus = 'pending' | 'running' | 'finish' | 'failed';

/** Codes of the server's `error` frames. */
export type ServerErrorCode =
  | 'bad_request' | 'unknown_type' | 'forbidden' | 'not_found' | 'too_large'
  | 'rate_limited' | 'unavailable' | 'internal';

/** Codes the client itself gives a `BasestationError`. */
export type ClientErrorCode =
  | 'closed' | 'queue_full' | 'timeout' | 'connect_timeout' | 'heartbeat_timeout'
  | 'transport' | 'bad_frame' | 'history_rewound' | 'reconnected' | 'canceled';

export type ErrorCode = ServerErrorCode | ClientErrorCode;

export interface TaskStep {
  name: string;
  status: StepStatus;
  /** ms since the Unix epoch; null until the step starts */
  started_at: number | null;
  finished_at: number | null;
  /** ms: finished − started, or for the running step the time so far when the snapshot was made */
  duration: number | null;
}

/** A task snapshot (`version` grows by one per change). */
export interface Task {
  id: string;
  title: string;
  status: TaskStatus;
  owner: string;
  watchers: string[];
  steps: TaskStep[];
  done: number | null;
  total: number | null;
  note: string | null;
  version: number;
  created_at: number;
  updated_at: number;
}

// ---- client → server frames ----

export interface PingFrame { type: 'ping'; ref?: FrameRef }
export interface SendFrame { type: 'send'; to: string; data: JsonData; ref?: FrameRef }
export interface PublishFrame { type: 'publish'; room: string; data: JsonData; ref?: FrameRef }
export interface JoinFrame {
  type: 'join'; room: string; ref?: FrameRef;
  /** also subscribe to the room's `presence.join`/`presence.leave` events */
  presence?: boolean;
}
export interface LeaveFrame { type: 'leave'; room: string; ref?: FrameRef }
export interface PresenceRequestFrame { type: 'presence'; room: string; ref?: FrameRef }
export interface ResumeFrame { type: 'resume'; since: number; epoch?: string; ref?: FrameRef }
export interface SubscribeFrame { type: 'subscribe'; task: string; ref?: FrameRef }
export interface UnsubscribeFrame { type: 'unsubscribe'; task: string; ref?: FrameRef }
/** Role producer or admin. */
export interface TaskCreateFrame {
  type: 'task.create'; ref?: FrameRef;
  id?: string; title: string; steps?: string[]; total?: number; owner?: string; watchers?: string[];
}
/** Role producer or admin. `status` with `step`: the step's; without: the task's. */
export interface TaskUpdateFrame {
  type: 'task.update'; ref?: FrameRef;
  task: string; step?: number; status?: StepStatus | TaskStatus;
  done?: number; total?: number; note?: string | null;
}

/** Every frame a client sends with a `type` (what `request()` takes). */
export type ClientFrame =
  | PingFrame | SendFrame | PublishFrame | JoinFrame | LeaveFrame | PresenceRequestFrame
  | ResumeFrame | SubscribeFrame | UnsubscribeFrame | TaskCreateFrame | TaskUpdateFrame;

/** The seed pages' frames, accepted unchanged on a raw WebSocket. */
export interface SeedHeartbeatFrame { type: 'headerBeat' | 'heartbeat'; [field: string]: unknown }
export interface SeedTestFrame { test: unknown; type?: never }
export interface SeedKeepaliveFrame { keepalive: unknown; type?: never }
/** Watch a task in the seed shape (`{"id":1}`). */
export interface SeedTaskQueryFrame { id: number | string; type?: never }
export type SeedClientFrame = SeedHeartbeatFrame | SeedTestFrame | SeedKeepaliveFrame | SeedTaskQueryFrame;

// ---- server → client frames ----

/** The first frame on every connection. */
export interface ConnectFrame {
  type: 'connect';
  uid: string;
  conn: number;
  /** the server's ping interval, seconds */
  heartbeat: number;
  /** the newest stored seq */
  seq: number;
  /** names the server's history; a seq from another epoch is meaningless */
  epoch: string;
}

export interface DirectMessageFrame<D = unknown> {
  type: 'message'; seq: number; from: string; to: string; room?: undefined; data: D; ts: number;
}
export interface RoomMessageFrame<D = unknown> {
  type: 'message'; seq: number; from: string; room: string; to?: undefined; data: D; ts: number;
}
export type MessageFrame<D = unknown> = DirectMessageFrame<D> | RoomMessageFrame<D>;

/** Reply to `send`/`publish`: the message is stored under `seq`. */
export interface AckFrame { type: 'ack'; ref?: FrameRef; seq: number }
/** Reply to `task.update`. */
export interface TaskAckFrame { type: 'ack'; ref?: FrameRef; task: string; version: number }
export interface PongFrame { type: 'pong'; ref?: FrameRef }
export interface JoinedFrame { type: 'joined'; room: string; ref?: FrameRef }
export interface LeftFrame { type: 'left'; room: string; ref?: FrameRef }
export interface PresenceFrame { type: 'presence'; room: string; online: string[]; ref?: FrameRef }
/** Sent to connections that joined with `presence: true`. */
export interface PresenceEventFrame { type: 'presence.join' | 'presence.leave'; room: string; uid: string }
export interface ResumedFrame {
  type: 'resumed'; ref?: FrameRef;
  since: number;
  last: number;
  /** false: retention removed some, another epoch, `since` beyond the newest seq, or the replay cap */
  complete: boolean;
}
export interface TaskFrame { type: 'task'; task: Task; ref?: FrameRef }
export interface UnsubscribedFrame { type: 'unsubscribed'; task: string; ref?: FrameRef }
export interface ErrorFrame { type: 'error'; ref?: FrameRef; code: ServerErrorCode; message: string }

/** The seed shape of a task (reply to `{"id":X}` and its pushes). */
export interface SeedStep { name: string; status: 'finish' | 'unfinish'; duration: number | null }
export interface SeedTaskFrame {
  type: 'finish' | 'undone';
  message: string;
  list: SeedStep[];
  id?: string;
  version?: number;
  projectStatus?: 'undone' | 'done';
}
export interface SeedTestReply { test: 'ok'; type?: never }

/** Every frame the server sends (the `frame` event). */
export type ServerFrame =
  | ConnectFrame | MessageFrame | AckFrame | TaskAckFrame | PongFrame | JoinedFrame | LeftFrame
  | PresenceFrame | PresenceEventFrame | ResumedFrame | TaskFrame | UnsubscribedFrame | ErrorFrame
  | SeedTaskFrame | SeedTestReply;

/** What `request(frame)` resolves with, by the frame's type. */
export interface Replies {
  ping: PongFrame;
  send: AckFrame;
  publish: AckFrame;
  join: JoinedFrame;
  leave: LeftFrame;
  presence: PresenceFrame;
  resume: ResumedFrame;
  subscribe: Task;
  unsubscribe: UnsubscribedFrame;
  'task.create': Task;
  'task.update': TaskAckFrame;
}
export type ReplyTo<F extends ClientFrame> = Replies[F['type']];

// ---- the client ----

/** Where the resume position is kept; values are strings. */
export interface PositionStorage {
  get(key: string): string | null | undefined;
  set(key: string, value: string): void;
}

/** What the client needs of a WebSocket (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** e.g. `ws://127.0.0.1:8080/ws` (a path of `/` becomes `/ws`; http(s) becomes ws(s)) */
  url: string;
  /** opaque token or JWT, or a function called before every connection attempt */
  token?: string | (() => string | Promise<string>);
  /** sent as query `uid`; the server checks it against the token */
  uid?: string;
  /** `query`: `?token=` (the seeds' way); `protocol`: `Sec-WebSocket-Protocol: basestation.v1, <token>` */
  auth?: 'query' | 'protocol';
  /** default: the global WebSocket; in Node 20 pass the `ws` package */
  WebSocket?: WebSocketConstructor;
  /** connect in the constructor (default true) */
  autoConnect?: boolean;
  /** reconnect after a drop (default true) */
  reconnect?: boolean;
  /** first reconnect delay, ms (500) */
  minDelay?: number;
  /** cap of the reconnect delay, ms (30000) */
  maxDelay?: number;
  /** growth of the delay per failed attempt (2) */
  factor?: number;
  /** 0..1: the delay is reduced by up to this fraction at random (0.5) */
  jitter?: number;
  /** failed attempts in a row before state `failed` (Infinity) */
  maxRetries?: number;
  /** ms between client pings, 0: off (20000) */
  heartbeatInterval?: number;
  /** ms to wait for any frame after a ping before reconnecting (10000) */
  pongTimeout?: number;
  /** ms from opening the socket to the server's `connect` frame (10000) */
  connectTimeout?: number;
  /** send `since`/`epoch` when a position is known (true) */
  resume?: boolean;
  /** resume position store (default: localStorage in browsers, memory elsewhere; null: memory) */
  storage?: PositionStorage | null;
  /** key prefix in `storage` (default `basestation:<uid>`) */
  storageKey?: string;
  /** most requests kept while offline; more are rejected with `queue_full` (10000) */
  maxQueue?: number;
}

export interface CloseInfo { code: number; reason: string }

/** The events and their listeners. */
export interface ClientEvents {
  state: (state: ClientState, previous: ClientState) => void;
  connect: (frame: ConnectFrame) => void;
  /** each seq once */
  message: (message: MessageFrame) => void;
  /** each version once */
  task: (task: Task) => void;
  resumed: (frame: ResumedFrame) => void;
  /** server errors without a pending request, timeouts, transport problems */
  error: (error: BasestationError | Error) => void;
  close: (info: CloseInfo) => void;
  /** a room joined with `presence: true`: a member came online or joined, went offline or left */
  presence: (event: PresenceEventFrame) => void;
  /** every frame, before any processing */
  frame: (frame: ServerFrame) => void;
}
export type ClientEvent = keyof ClientEvents;

export interface JoinOptions {
  /** true: also the room's presence.join/presence.leave events (event `presence`), kept across reconnects; false: no longer; absent: as before */
  presence?: boolean;
}

export interface SendOptions {
  /** your own ref (an idempotency key that survives a page reload) */
  ref?: FrameRef;
}

/** A refusal from the server (`frame` is its error frame) or from the client. */
export class BasestationError extends Error {
  constructor(code: ErrorCode, message?: string, frame?: ErrorFrame);
  readonly name: 'BasestationError';
  code: ErrorCode;
  frame?: ErrorFrame;
}

export class BasestationClient {
  constructor(options: ClientOptions);
  readonly options: Readonly<ClientOptions & Required<Omit<ClientOptions, 'token' | 'uid' | 'WebSocket' | 'storage' | 'storageKey'>>>;
  readonly state: ClientState;
  /** highest seq delivered; null: none known yet */
  readonly lastSeq: number | null;
  /** the server's epoch of `lastSeq` */
  readonly epoch: string | null;
  /** the last `connect` frame */
  readonly session: ConnectFrame | null;
  /** failed connection attempts in a row */
  readonly retries: number;
  /** messages dropped as already seen */
  readonly duplicates: number;
  /** rooms re-joined after every reconnect */
  readonly rooms: Set<string>;
  /** subscribed tasks and their last snapshot (null until it arrives) */
  readonly tasks: Map<string, Task | null>;
  /** requests waiting to be sent or answered */
  readonly queued: number;
  /** the key of the resume position in `storage` (also the prefix of what the Vue helpers keep) */
  readonly storageKey: string;

  /** returns a function that removes the listener */
  on<K extends ClientEvent>(type: K, listener: ClientEvents[K]): () => void;
  off<K extends ClientEvent>(type: K, listener: ClientEvents[K]): void;
  once<K extends ClientEvent>(type: K, listener: ClientEvents[K]): () => void;
  /** resolves when the state is `state` (now or later) with `session` */
  waitFor(state?: ClientState, timeout?: number): Promise<ConnectFrame | null>;

  /** start (or restart after `failed`/`closed`) connecting */
  connect(): void;
  /** close and stop reconnecting; pending requests reject with code `closed` */
  close(code?: number, reason?: string): void;
  /** the delay before reconnect attempt n (0-based), ms */
  delay(n: number): number;
  /** forget the resume position (the next connection gets the offline inbox) */
  resetPosition(): void;

  /** any frame the server answers with its `ref`; kept while offline, resent after a reconnect */
  request<F extends ClientFrame>(frame: F, kind?: string): Promise<ReplyTo<F>>;
  /** a direct message; resolves once stored */
  send(to: string, data: JsonData, opts?: SendOptions): Promise<AckFrame>;
  /** a message to a room this user has joined; resolves once stored */
  publish(room: string, data: JsonData, opts?: SendOptions): Promise<AckFrame>;
  /** join (kept across reconnects) */
  join(room: string, opts?: JoinOptions): Promise<JoinedFrame>;
  leave(room: string): Promise<LeftFrame>;
  /** watch a task (kept across reconnects); resolves with the current snapshot */
  subscribe(task: string | number): Promise<Task>;
  unsubscribe(task: string | number): Promise<UnsubscribedFrame>;
  /** who of a room is online */
  presence(room: string): Promise<PresenceFrame>;
  /** replay what came after the last seq delivered (or `since`) */
  resume(since?: number): Promise<ResumedFrame>;
  /** round trip */
  ping(): Promise<PongFrame>;
  /** the last snapshot of a subscribed task */
  task(id: string | number): Task | null;
}

/** A memory-only PositionStorage. */
export function memoryStorage(): PositionStorage;
/** localStorage or sessionStorage as a PositionStorage (memory when unavailable). */
export function webStorage(which?: 'localStorage' | 'sessionStorage'): PositionStorage;

/** Options of BasestationEvents (Server-Sent Events, `GET /sse`). */
export interface EventsOptions {
  /** the SSE URL, e.g. `http://127.0.0.1:8080/sse` (a `ws:` URL or `/ws` path becomes its `/sse`) */
  url: string;
  /** query `token=` (EventSource sends no headers) */
  token: string;
  uid?: string;
  /** rooms whose messages the stream carries (the user must be a member, else 403) */
  rooms?: string[];
  /** tasks whose snapshots the stream carries (the user must be allowed to watch, else 403) */
  tasks?: Array<string | number>;
  /** resume after this seq; without it the stream starts with the offline inbox */
  since?: number;
  EventSource?: new (url: string, init?: { withCredentials?: boolean }) => EventSource;
  withCredentials?: boolean;
  autoConnect?: boolean;
}

export type EventsState = 'closed' | 'connecting' | 'open';

export interface EventsEvents {
  state: (state: EventsState, previous: EventsState) => void;
  /** each seq once */
  message: (message: MessageFrame) => void;
  /** each version once */
  task: (task: Task) => void;
  /** the stream was refused or failed for good (EventSource stopped) */
  error: (error: Error) => void;
}
export type EventsEvent = keyof EventsEvents;

/** A read-only stream of `message` and `task` events over Server-Sent Events. */
export class BasestationEvents {
  constructor(options: EventsOptions);
  readonly options: EventsOptions;
  state: EventsState;
  /** highest seq delivered (null: none yet) */
  lastSeq: number | null;
  /** messages dropped as duplicates */
  duplicates: number;
  /** the last snapshot of each listed task */
  tasks: Map<string, Task>;
  on<K extends EventsEvent>(type: K, listener: EventsEvents[K]): () => void;
  off<K extends EventsEvent>(type: K, listener: EventsEvents[K]): void;
  once<K extends EventsEvent>(type: K, listener: EventsEvents[K]): () => void;
  /** the stream's URL (rooms, tasks, `since` = the last seq seen) */
  url(): string;
  /** open the stream (no-op while one is open) */
  connect(): void;
  close(): void;
}

export default BasestationClient;
