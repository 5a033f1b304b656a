// Peer for the benchmarks: the protocol subset of bench/peers/common.mjs on
// Node's `ws` library (the seeds' stack). Fan-out iterates the room's
// member set and sends one pre-encoded Buffer to each, which is the
// cheapest thing `ws` offers (no per-recipient JSON or UTF-8 encoding).
//   node bench/peers/node-ws/server.mjs --port P   (prints "listening P")
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';
import { parseArgs, identity, makeBroker, refuseTlsDeflate } from '../common.mjs';

const args = parseArgs(process.argv);
refuseTlsDeflate(args, 'node-ws peer');
const rooms = new Map(); // room -> Set<ws>
const taskSubs = new Map(); // task -> Set<ws>

function send(ws, payload) {
  if (ws.readyState === WebSocket.OPEN) ws.send(payload, { binary: false });
}

const broker = makeBroker({
  send,
  frame: (s) => Buffer.from(s),
  roomJoin(ws, room) {
    let set = rooms.get(room);
    if (!set) rooms.set(room, (set = new Set()));
    set.add(ws);
  },
  roomLeave(ws, room) {
    const set = rooms.get(room);
    if (set) set.delete(ws);
  },
  roomPublish(from, room, payload) {
    const set = rooms.get(room);
    if (!set) return;
    for (const ws of set) if (ws !== from) send(ws, payload);
  },
  taskSub(ws, id) {
    let set = taskSubs.get(id);
    if (!set) taskSubs.set(id, (set = new Set()));
    set.add(ws);
  },
  taskUnsub(ws, id) {
    const set = taskSubs.get(id);
    if (set) set.delete(ws);
  },
  taskPublish(id, payload) {
    const set = taskSubs.get(id);
    if (!set) return;
    for (const ws of set) send(ws, payload);
  },
});

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('use /ws\n');
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 65536, perMessageDeflate: false, clientTracking: false });

server.on('upgrade', (req, socket, head) => {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const uid = identity(q < 0 ? '' : req.url.slice(q + 1));
  if (path !== '/ws' || !uid) {
    socket.end(`HTTP/1.1 ${path !== '/ws' ? '404 Not Found' : '401 Unauthorized'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.close(1003, 'binary messages are not supported');
        return;
      }
      broker.message(ws, data.toString());
    });
    ws.on('close', () => broker.close(ws));
    ws.on('error', () => {});
    broker.open(ws, uid);
  });
});

server.listen(args.port, args.host, () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
