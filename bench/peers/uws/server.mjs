// Peer for the benchmarks: the protocol subset of bench/peers/common.mjs on
// uWebSockets.js (native build from npm @trufflesuite/uws-js-unofficial).
// Rooms and tasks are uWS topics; a publish goes out with ws.publish() from
// the publishing member (uWS skips the sender, as the contract wants); a
// task update with app.publish(), since the producer holds no subscription
// (in this build ws.publish() from an unsubscribed socket delivers nothing).
//   node bench/peers/uws/server.mjs --port P   (prints "listening P")
//     [--tls-cert F --tls-key F]  SSLApp instead of App
//     [--deflate]  permessage-deflate with uWS.SHARED_COMPRESSOR (one
//                  compressor, no per-connection context); room messages
//                  are published with compress = true, replies are not
// Refuses to run on the package's pure-JS fallback.
import { createRequire } from 'node:module';
import { parseArgs, identity, makeBroker } from '../common.mjs';

const require = createRequire(import.meta.url);
const origWarn = console.warn;
let fellBack = false;
console.warn = (...a) => {
  if (a.some((x) => String(x).includes('Falling back'))) fellBack = true;
  origWarn(...a);
};
const uWS = require('@trufflesuite/uws-js-unofficial');
console.warn = origWarn;
if (fellBack || process.env.UWS_USE_FALLBACK || typeof uWS.us_listen_socket_close !== 'function') {
  console.error('uws peer: not the native uWebSockets.js build (fallback); refusing to run');
  process.exit(3);
}

const args = parseArgs(process.argv);
const decoder = new TextDecoder();
const app = args.tlsCert
  ? uWS.SSLApp({ cert_file_name: args.tlsCert, key_file_name: args.tlsKey })
  : uWS.App();

// uWS frees a socket object at close; keep our state in getUserData().
function send(ws, payload) {
  if (!ws.getUserData().closed) ws.send(payload, false);
}

const broker = makeBroker({
  send: (conn, payload) => send(conn.ws, payload),
  frame: (s) => s,
  roomJoin(conn, room) { conn.ws.subscribe('r:' + room); },
  roomLeave(conn, room, closing) { if (!closing) conn.ws.unsubscribe('r:' + room); },
  roomPublish(conn, room, payload) {
    conn.ws.publish('r:' + room, payload, false, args.deflate);
  },
  taskSub(conn, id) { conn.ws.subscribe('t:' + id); },
  taskUnsub(conn, id, closing) { if (!closing) conn.ws.unsubscribe('t:' + id); },
  taskPublish(id, payload) { app.publish('t:' + id, payload, false); },
});

app.ws('/ws', {
  compression: args.deflate ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
  maxPayloadLength: 65536,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  upgrade: (res, req, context) => {
    const uid = identity(req.getQuery() || '');
    if (!uid) {
      res.writeStatus('401 Unauthorized').end();
      return;
    }
    res.upgrade({ uid, ws: null, closed: false },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context);
  },
  open: (ws) => {
    const conn = ws.getUserData();
    conn.ws = ws;
    broker.open(conn, conn.uid);
  },
  message: (ws, ab, isBinary) => {
    if (isBinary) {
      ws.end(1003, 'binary messages are not supported');
      return;
    }
    broker.message(ws.getUserData(), decoder.decode(ab));
  },
  close: (ws) => {
    const conn = ws.getUserData();
    conn.closed = true;
    broker.close(conn);
  },
});
app.any('/*', (res) => res.writeStatus('404 Not Found').end('use /ws\n'));

app.listen(args.host, args.port, (token) => {
  if (!token) {
    console.error(`uws peer: cannot listen on ${args.host}:${args.port}`);
    process.exit(1);
  }
  console.log(`listening ${uWS.us_socket_local_port(token)}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
