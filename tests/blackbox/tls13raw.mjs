// A TLS 1.3 client whose records after the handshake are ours, to send
// what no well-behaved library sends (bad tags, over-long records, a
// change_cipher_spec, KeyUpdate floods, alerts) and to read every record
// the server sends (its KeyUpdates and alerts included).
//
// Node's tls does the handshake over a Duplex that we feed; its keylog
// events give both application traffic secrets. From then on Node's TLS
// socket is never written to, and the server's bytes are all recorded from
// the first one: its records are decrypted from the first one that opens
// under its application secret 0 (the NewSessionTickets, whether or not
// Node saw them), following its KeyUpdates.
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';

export const SUITES = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', hash: 'sha256', klen: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', hash: 'sha384', klen: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', hash: 'sha256', klen: 32 },
};

function expandLabel(hash, secret, label, n) {
  const full = Buffer.from('tls13 ' + label);
  const info = Buffer.concat([Buffer.from([n >> 8, n & 255, full.length]), full, Buffer.from([0, 1])]);
  return crypto.createHmac(hash, secret).update(info).digest().subarray(0, n);
}

export class Dir {
  constructor(s, secret) { this.s = s; this.set(secret); }
  set(secret) {
    this.secret = secret;
    this.key = expandLabel(this.s.hash, secret, 'key', this.s.klen);
    this.iv = expandLabel(this.s.hash, secret, 'iv', 12);
    this.seq = 0n;
  }
  next() { this.set(expandLabel(this.s.hash, this.secret, 'traffic upd', this.secret.length)); }
  nonce() {
    const n = Buffer.from(this.iv);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(this.seq);
    for (let i = 0; i < 8; i++) n[4 + i] ^= b[i];
    return n;
  }
  seal(inner, { tamper = false } = {}) {
    const len = inner.length + 16;
    const hdr = Buffer.from([23, 3, 3, len >> 8, len & 255]);
    const c = crypto.createCipheriv(this.s.cipher, this.key, this.nonce(), { authTagLength: 16 });
    c.setAAD(hdr);
    const body = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
    this.seq++;
    if (tamper) body[body.length - 1] ^= 1;
    return Buffer.concat([hdr, body]);
  }
  open(hdr, body) {
    try {
      const d = crypto.createDecipheriv(this.s.cipher, this.key, this.nonce(), { authTagLength: 16 });
      d.setAAD(hdr);
      d.setAuthTag(body.subarray(body.length - 16));
      const p = Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]);
      this.seq++;
      return p;
    } catch {
      return null;
    }
  }
}

// Connect and handshake. opts.suite; opts.firstRecord(inner bytes) is sent
// in the same write as the client's Finished (the client's second flight
// is held until the handshake is done). Resolves to the client.
export async function rawTls13(port, { suite = 'TLS_AES_128_GCM_SHA256', firstData = null } = {}) {
  const s = SUITES[suite];
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  const c = {
    rx: Buffer.alloc(0), // every byte from the server
    parsed: 0, // of rx
    started: false, // found the first application record
    data: Buffer.alloc(0), // decrypted application data
    alerts: [], // [level, description] from the server
    keyUpdates: 0, // from the server, after its first application record
    ended: false,
    sock,
  };
  let held = [], writes = 0, done = false, secrets = {};
  const feed = new Duplex({
    read() {},
    write(chunk, enc, cb) {
      if (c.closedNode) return cb();
      // the ClientHello goes at once, the second flight waits for us
      if (writes++ === 0 || !firstData) sock.write(chunk);
      else held.push(chunk);
      cb();
    },
  });
  sock.on('data', (d) => {
    c.rx = Buffer.concat([c.rx, d]);
    if (!done) feed.push(d);
    else c.parse();
  });
  sock.on('end', () => { c.ended = true; });
  sock.on('close', () => { c.ended = true; });
  sock.on('error', () => { c.ended = true; });
  const t = tls.connect({ socket: feed, rejectUnauthorized: false, minVersion: 'TLSv1.3', ciphers: suite, servername: 'localhost' });
  t.on('keylog', (line) => {
    const [label, , hex] = line.toString().trim().split(' ');
    secrets[label] = Buffer.from(hex, 'hex');
  });
  t.on('error', () => {});
  await new Promise((resolve, reject) => {
    t.once('secureConnect', resolve);
    sock.once('error', reject);
    setTimeout(() => reject(new Error('handshake timeout')), 5000);
  });
  // the Finished flight may reach the Duplex just after the event
  for (let i = 0; firstData && held.length === 0 && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
  if (firstData && held.length === 0) throw new Error('the client sent no second flight');
  done = true;
  c.tlsSocket = t;
  c.wr = new Dir(s, secrets.CLIENT_TRAFFIC_SECRET_0);
  c.rd = new Dir(s, secrets.SERVER_TRAFFIC_SECRET_0);
  c.parse = () => {
    for (;;) {
      if (c.rx.length - c.parsed < 5) return;
      const hdr = c.rx.subarray(c.parsed, c.parsed + 5);
      const len = hdr.readUInt16BE(3);
      if (c.rx.length - c.parsed < 5 + len) return;
      const body = c.rx.subarray(c.parsed + 5, c.parsed + 5 + len);
      c.parsed += 5 + len;
      if (hdr[0] !== 23) continue; // the handshake's plaintext records
      const p = c.rd.open(hdr, body);
      if (p === null) {
        if (!c.started) continue; // a handshake record (handshake keys)
        throw new Error('a server record does not open');
      }
      c.started = true;
      let n = p.length;
      while (n && p[n - 1] === 0) n--;
      const type = p[n - 1], m = p.subarray(0, n - 1);
      if (type === 23) c.data = Buffer.concat([c.data, m]);
      else if (type === 21) c.alerts.push([m[0], m[1]]);
      else if (type === 22) {
        for (let i = 0; i + 4 <= m.length;) {
          const mt = m[i], ml = m.readUIntBE(i + 1, 3);
          if (mt === 24) { c.keyUpdates++; c.rd.next(); }
          i += 4 + ml;
        }
      }
    }
  };
  // the application records that came with the handshake's last flight
  c.parse();
  c.record = (type, content, { pad = 0, tamper = false } = {}) =>
    c.wr.seal(Buffer.concat([Buffer.from(content), Buffer.from([type]), Buffer.alloc(pad)]), { tamper });
  c.send = (buf) => sock.write(buf);
  // a KeyUpdate record; our key moves on after it
  c.keyUpdate = (requested) => {
    const r = c.record(22, [24, 0, 0, 1, requested ? 1 : 0]);
    c.wr.next();
    return r;
  };
  c.until = async (cond, ms = 5000) => {
    for (let waited = 0; waited < ms; waited += 10) {
      if (cond()) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return cond();
  };
  c.close = () => {
    c.closedNode = true;
    t.destroy();
    sock.destroy();
  };
  if (firstData) {
    // the held Finished flight and our first record in one write
    const rec = c.record(23, firstData);
    sock.write(Buffer.concat([...held, rec]));
    c.heldFlights = held.length;
  }
  return c;
}
