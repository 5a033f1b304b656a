// Shared by the two peers: the protocol subset the load generator speaks,
// written once so that only the WebSocket library differs between them.
//
// Subset: connect frame; ping/pong; join/leave/joined; publish -> ack and
// {"type":"message",...} to every other member; send -> ack and delivery
// to every connection of the uid; task.create / subscribe / task.update ->
// {"type":"task","task":{...}} pushed to every subscriber and an ack with
// the new version to the producer. No storage: acks go out at once (the
// peers are relays, not brokers; docs/benchmarks.md says so next to their
// numbers).

// --tls-cert F --tls-key F (TLS) and --deflate (permessage-deflate) are
// for the peers that support them (uws); the others refuse them (tlsDeflate).
export function parseArgs(argv) {
  const out = { host: '127.0.0.1', port: 0, tlsCert: null, tlsKey: null, deflate: false };
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--port') out.port = Number(argv[++i]);
    else if (argv[i] === '--host') out.host = argv[++i];
    else if (argv[i] === '--tls-cert') out.tlsCert = argv[++i];
    else if (argv[i] === '--tls-key') out.tlsKey = argv[++i];
    else if (argv[i] === '--deflate') out.deflate = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!out.tlsCert !== !out.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  return out;
}

// For a peer without TLS or deflate: refuse the options rather than
// measure something else than asked.
export function refuseTlsDeflate(args, name) {
  if (args.tlsCert || args.deflate) {
    console.error(`${name}: --tls-cert/--deflate are not supported by this peer`);
    process.exit(2);
  }
}

// Identity from the query string: uid (or the token itself: the peers
// accept any token, they are not measuring authentication).
export function identity(query) {
  const q = new URLSearchParams(query);
  const token = q.get('token') || '';
  const uid = q.get('uid') || q.get('id') || token;
  return token && uid ? uid : null;
}

// transport: { send(conn, strOrBuf), frame(str) -> reusable payload,
//              roomJoin(conn, room), roomLeave(conn, room),
//              roomPublish(conn, room, payload), taskSub(conn, id),
//              taskPublish(id, payload) }
export function makeBroker(transport) {
  const users = new Map(); // uid -> Set<conn>
  const tasks = new Map(); // id -> snapshot
  let seq = 0;
  let nextConn = 0;

  function reply(conn, obj, ref) {
    if (ref !== undefined) obj.ref = ref;
    transport.send(conn, JSON.stringify(obj));
  }
  function error(conn, ref, code, message) {
    reply(conn, { type: 'error', code, message }, ref);
  }

  function open(conn, uid) {
    conn.uid = uid;
    conn.id = ++nextConn;
    conn.rooms = new Set();
    conn.tasks = new Set();
    let set = users.get(uid);
    if (!set) users.set(uid, (set = new Set()));
    set.add(conn);
    transport.send(conn, JSON.stringify({
      type: 'connect', uid, conn: conn.id, heartbeat: 25, seq, epoch: 'peer',
    }));
  }

  function close(conn) {
    const set = users.get(conn.uid);
    if (set) {
      set.delete(conn);
      if (set.size === 0) users.delete(conn.uid);
    }
    for (const r of conn.rooms) transport.roomLeave(conn, r, true);
    for (const t of conn.tasks) transport.taskUnsub(conn, t, true);
  }

  function message(conn, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      error(conn, undefined, 'bad_request', 'invalid JSON');
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      error(conn, undefined, 'bad_request', 'a frame must be a JSON object');
      return;
    }
    const ref = msg.ref;
    switch (msg.type) {
      case 'ping':
        reply(conn, { type: 'pong' }, ref);
        return;
      case 'join': {
        if (typeof msg.room !== 'string' || !msg.room) return error(conn, ref, 'bad_request', "field 'room' must be a string");
        if (!conn.rooms.has(msg.room)) {
          conn.rooms.add(msg.room);
          transport.roomJoin(conn, msg.room);
        }
        reply(conn, { type: 'joined', room: msg.room }, ref);
        return;
      }
      case 'leave': {
        if (conn.rooms.delete(msg.room)) transport.roomLeave(conn, msg.room, false);
        reply(conn, { type: 'left', room: msg.room }, ref);
        return;
      }
      case 'publish': {
        if (!conn.rooms.has(msg.room)) return error(conn, ref, 'forbidden', `join room '${msg.room}' before publishing`);
        if (msg.data === undefined) return error(conn, ref, 'bad_request', "field 'data' is required");
        const s = ++seq;
        const payload = transport.frame(JSON.stringify({
          type: 'message', seq: s, from: conn.uid, room: msg.room, data: msg.data, ts: Date.now(),
        }));
        transport.roomPublish(conn, msg.room, payload);
        reply(conn, { type: 'ack', seq: s }, ref);
        return;
      }
      case 'send': {
        if (typeof msg.to !== 'string' || !msg.to) return error(conn, ref, 'bad_request', "field 'to' must be a string");
        if (msg.data === undefined) return error(conn, ref, 'bad_request', "field 'data' is required");
        const s = ++seq;
        const set = users.get(msg.to);
        if (set) {
          const payload = transport.frame(JSON.stringify({
            type: 'message', seq: s, from: conn.uid, to: msg.to, data: msg.data, ts: Date.now(),
          }));
          for (const c of set) transport.send(c, payload);
        }
        reply(conn, { type: 'ack', seq: s }, ref);
        return;
      }
      case 'task.create': {
        const id = typeof msg.id === 'string' && msg.id ? msg.id : `t${seq + 1}`;
        const now = Date.now();
        const snap = {
          id, title: String(msg.title || ''), status: 'running', owner: conn.uid,
          steps: [], done: 0, total: Number(msg.total) || 0, note: null,
          version: 1, updated_at: now,
        };
        tasks.set(id, snap);
        reply(conn, { type: 'task', task: snap }, ref);
        return;
      }
      case 'subscribe': {
        const snap = tasks.get(msg.task);
        if (!snap) return error(conn, ref, 'not_found', `no task '${msg.task}'`);
        if (!conn.tasks.has(msg.task)) {
          conn.tasks.add(msg.task);
          transport.taskSub(conn, msg.task);
        }
        reply(conn, { type: 'task', task: snap }, ref);
        return;
      }
      case 'unsubscribe': {
        if (conn.tasks.delete(msg.task)) transport.taskUnsub(conn, msg.task, false);
        reply(conn, { type: 'unsubscribed', task: msg.task }, ref);
        return;
      }
      case 'task.update': {
        const snap = tasks.get(msg.task);
        if (!snap) return error(conn, ref, 'not_found', `no task '${msg.task}'`);
        for (const k of ['done', 'total', 'status', 'note']) if (msg[k] !== undefined) snap[k] = msg[k];
        snap.version++;
        snap.updated_at = Date.now();
        transport.taskPublish(msg.task, transport.frame(JSON.stringify({ type: 'task', task: snap })));
        reply(conn, { type: 'ack', task: snap.id, version: snap.version }, ref);
        return;
      }
      default:
        error(conn, ref, 'unknown_type', `unknown type '${String(msg.type).slice(0, 64)}'`);
    }
  }

  return { open, close, message };
}
