// Helpers for the client-library tests: the real broker (started through
// ../blackbox/lib.mjs), the client from clients/js with the `ws` package
// injected, and a recorder of what the client reports.
import WebSocket from 'ws';
import { BasestationClient, memoryStorage } from '../../clients/js/basestation.js';
import { startServer, token, tempDb, api, sleep } from '../blackbox/lib.mjs';

export { BasestationClient, memoryStorage, startServer, token, tempDb, api, sleep, WebSocket };

// Start a broker on a database of our own, so that it can be stopped and
// started again on the same ports with the same history.
export async function startBroker(db, { wsPort = 0, httpPort = 0, args = [] } = {}) {
  const srv = await startServer({
    db, keepDb: true, args: ['--listen', `127.0.0.1:${wsPort}`, '--http', `127.0.0.1:${httpPort}`, ...args],
  });
  return srv;
}

// Stop `srv` and start a new broker on the same ports and database.
export async function restartBroker(srv, { downMs = 0, args = [] } = {}) {
  await stopBroker(srv);
  if (downMs) await sleep(downMs);
  return startBroker(srv.db, { wsPort: srv.wsPort, httpPort: srv.httpPort, args });
}

// Graceful stop; the exit status must be 0 (under ASan a leak or an error
// report makes it non-zero).
export async function stopBroker(srv) {
  const r = await srv.stop();
  if (r.code !== 0) throw new Error(`broker exit ${JSON.stringify(r)}\n` + srv.logs.slice(-4000));
  return r;
}

// A `ws` subclass that records the URLs it opened and the frames it sent,
// and lets a test tamper with incoming frames (drop or duplicate them).
export function recordingWs() {
  const rec = { urls: [], sent: [], sockets: [], filter: null };
  class RecWs extends WebSocket {
    constructor(url, protocols, opts) {
      super(url, protocols, opts);
      rec.urls.push(String(url));
      rec.sockets.push(this);
      const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
      // Wrap the handler the client installs so the filter sees each frame.
      Object.defineProperty(this, 'onmessage', {
        configurable: true,
        get: () => onmessage.get.call(this),
        set: (fn) => onmessage.set.call(this, (ev) => {
          if (!rec.filter) return fn(ev);
          const out = rec.filter(JSON.parse(ev.data), this);
          for (const f of out === undefined ? [JSON.parse(ev.data)] : out) fn({ data: JSON.stringify(f) });
        }),
      });
    }
    send(data, ...rest) {
      rec.sent.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  }
  rec.WebSocket = RecWs;
  rec.last = () => rec.sockets[rec.sockets.length - 1];
  return rec;
}

// A client for `uid` on `srv`, recording its events.
export function makeClient(srv, uid, opts = {}) {
  const tok = opts.token || token(srv.db, uid, opts.role || 'user');
  const c = new BasestationClient({
    url: srv.url(),
    uid,
    token: tok,
    WebSocket,
    storage: memoryStorage(),
    minDelay: 100,
    maxDelay: 1000,
    ...opts,
  });
  c.tokenValue = tok;
  c.log = { states: [], messages: [], tasks: [], errors: [], resumed: [], connects: [], closes: [] };
  c.on('state', (s) => c.log.states.push(s));
  c.on('message', (m) => c.log.messages.push(m));
  c.on('task', (t) => c.log.tasks.push(t));
  c.on('error', (e) => c.log.errors.push(e));
  c.on('resumed', (r) => c.log.resumed.push(r));
  c.on('connect', (f) => c.log.connects.push(f));
  c.on('close', (f) => c.log.closes.push(f));
  return c;
}

// Poll until pred() is truthy; throws with `what` after ms.
export async function until(pred, ms = 5000, what = 'condition') {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

export const texts = (c) => c.log.messages.map((m) => m.data && m.data.text);
