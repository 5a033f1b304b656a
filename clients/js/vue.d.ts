// Types for vue.js — the Vue 3 composables over the basestation client.
import type { App, ComputedRef, MaybeRefOrGetter } from 'vue';
import type {
  AckFrame, BasestationClient, BasestationError, ClientOptions, ClientState, ConnectFrame,
  FrameRef, JsonData, PositionStorage, SendOptions, Task, TaskStep,
} from './basestation.js';

export { BasestationClient, BasestationError, memoryStorage, webStorage } from './basestation.js';

/** Settings of the app's store (the first call that makes it wins). */
export interface StoreSettings {
  /** messages kept per room (200) */
  keep?: number;
  /** where rooms' messages are kept across reloads (sessionStorage in browsers; null: nowhere) */
  history?: PositionStorage | null;
}

export interface BasestationPlugin {
  client: BasestationClient;
  install(app: App): void;
}

/** `app.use(createBasestation(options))`: the app's client. */
export function createBasestation(options: ClientOptions | BasestationClient, settings?: StoreSettings): BasestationPlugin;

export interface UseBasestation {
  client: BasestationClient;
  state: ComputedRef<ClientState>;
  connected: ComputedRef<boolean>;
  /** the last `connect` frame (uid, conn, seq, epoch) */
  session: ComputedRef<ConnectFrame | null>;
  /** the client's last `error` event */
  error: ComputedRef<BasestationError | Error | null>;
  /** requests waiting to be sent or answered */
  queued: ComputedRef<number>;
}

/** The app's client; the first call in an app needs options (or a client). */
export function useBasestation(options?: ClientOptions | BasestationClient, settings?: StoreSettings): UseBasestation;

export interface ClientOption {
  /** a client other than the app's */
  client?: BasestationClient;
}

export type TaskId = string | number | null | undefined;

export interface UseTaskOptions extends ClientOption {
  /** ms between updates of `elapsed` (1000) */
  tick?: number;
  /** ms before asking again for a task that is not there (yet); 0: never (2000) */
  retry?: number;
}

/** A step with the time it has taken so far (live for the running step). */
export interface LiveStep extends TaskStep {
  index: number;
  /** ms */
  elapsed: number;
}

export interface UseTask {
  /** the snapshot (the last known one at once, replaced by the current one as soon as it arrives) */
  task: ComputedRef<Task | null>;
  steps: ComputedRef<LiveStep[]>;
  /** the running step, if any */
  running: ComputedRef<LiveStep | null>;
  /** ms of the running step, counting while it runs; 0 when none runs */
  elapsed: ComputedRef<number>;
  /** true until the server's answer to this subscription arrives */
  loading: ComputedRef<boolean>;
  /** true once `task` is the server's current snapshot (not one kept from before) */
  fresh: ComputedRef<boolean>;
  /** the last refusal (`not_found`, `forbidden`, …) */
  error: ComputedRef<BasestationError | null>;
  /** release now (otherwise done when the calling scope ends) */
  stop(): void;
}

export function useTask(id: MaybeRefOrGetter<TaskId>, opts?: UseTaskOptions): UseTask;

export type RoomItemStatus = 'queued' | 'sending' | 'sent' | 'failed' | 'received';

/** A message of a room as the app shows it. */
export interface RoomItem<D = unknown> {
  /** null until this user's message is acknowledged */
  seq: number | null;
  room: string;
  from: string | null;
  data: D;
  ts: number;
  /** sent by this user (here or from another tab) */
  mine: boolean;
  status: RoomItemStatus;
  /** the idempotency key of this user's message */
  ref: FrameRef | null;
  error: string | null;
}

export interface UseRoomOptions extends ClientOption {
  /** join the room on first use (true) */
  join?: boolean;
}

export interface UseRoom<D = unknown> {
  messages: ComputedRef<RoomItem<D>[]>;
  joined: ComputedRef<boolean>;
  error: ComputedRef<BasestationError | null>;
  /** publish; the message shows at once as queued/sending, then sent with its seq, or failed */
  send(data: JsonData, opts?: SendOptions): Promise<AckFrame>;
  /** send a failed message again with its ref */
  retry(item: RoomItem<D>): Promise<AckFrame>;
  /** forget the messages kept for this room */
  clear(): void;
  stop(): void;
}

export function useRoom<D = unknown>(room: MaybeRefOrGetter<string | null | undefined>, opts?: UseRoomOptions): UseRoom<D>;

export interface UsePresenceOptions extends ClientOption {
  /** ms between asks while shown (10000) */
  interval?: number;
}

export interface UsePresence {
  /** uids online, sorted */
  online: ComputedRef<string[]>;
  loading: ComputedRef<boolean>;
  error: ComputedRef<BasestationError | null>;
  refresh(): void;
  stop(): void;
}

export function usePresence(room: MaybeRefOrGetter<string | null | undefined>, opts?: UsePresenceOptions): UsePresence;

/** How many holders each task, room and presence has, per client (tests, tools). */
export function storeStats(client: BasestationClient): {
  tasks: Record<string, number>; rooms: Record<string, number>; presence: Record<string, number>;
} | null;
