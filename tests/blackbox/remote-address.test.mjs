// The client's address, as --trusted-proxy and --max-per-ip see it: parsed,
// not text. IPv4 peers of a dual-stack (IPv6) listener are IPv4
// addresses; forwarded addresses are in canonical form; --trusted-proxy
// takes networks; --max-per-ip counts an IPv6 client by its /64.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { startServer, connect, api, sleep, rawExchange, upgradeRequest, statusOf, token, tempDb, BIN, ADMIN_KEY } from './lib.mjs';

async function remotes(s) {
  const r = await api(s, 'GET', '/admin/connections', undefined, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  return r.json.connections.map((c) => `${c.uid}=${c.remote}`).sort();
}

const via = (s, uid, xff) => connect(s, uid, { headers: xff ? { 'X-Forwarded-For': xff } : {} });

// An IPv6 socket bound to the IPv4-mapped loopback takes IPv4 clients on
// 127.0.0.1 only, and reports them as ::ffff:127.0.0.1, as [::] does.
const MAPPED = ['--listen', '[::ffff:127.0.0.1]:0', '--http', '[::ffff:127.0.0.1]:0'];

test('a dual-stack listener: IPv4 peers are IPv4, and a trusted proxy by its IPv4 address', async () => {
  const s = await startServer({ args: [...MAPPED, '--trusted-proxy', '127.0.0.1'] });
  try {
    const a = await via(s, 'direct');
    const b = await via(s, 'proxied', '203.0.113.7');
    assert.deepEqual(await remotes(s), ['direct=127.0.0.1', 'proxied=203.0.113.7']);
    await a.close(); await b.close();
  } finally { await s.cleanup(); }
});

test('--trusted-proxy takes a network; forwarded addresses are canonical', async () => {
  const s = await startServer({ args: ['--trusted-proxy', '127.0.0.0/8', '--trusted-proxy', '::1'] });
  try {
    const cs = [await via(s, 'a', '0:0::1'), await via(s, 'b', '::ffff:198.51.100.4'), await via(s, 'c', '2001:DB8:0:0::0:1')];
    assert.deepEqual(await remotes(s), ['a=::1', 'b=198.51.100.4', 'c=2001:db8::1']);
    for (const c of cs) await c.close();
  } finally { await s.cleanup(); }
});

test('--max-per-ip: one address however written, an IPv6 client by its /64', async () => {
  const s = await startServer({ args: ['--trusted-proxy', '127.0.0.1', '--max-per-ip', '1'] });
  try {
    const t = token(s.db, 'many');
    const status = async (xff) => statusOf(await rawExchange(s.wsPort,
      upgradeRequest(s.wsPort, { query: '?token=' + t, headers: { 'X-Forwarded-For': xff } }), 1500));
    const held = [await via(s, 'h1', '0::1'), await via(s, 'h2', '2001:db8:1:2::1')];
    assert.equal(await status('::1'), 503);
    assert.equal(await status('0:0:0:0:0:0:0:1'), 503);
    assert.equal(await status('2001:db8:1:2:ffff::9'), 503);
    assert.equal(await status('2001:db8:1:3::1'), 101);
    assert.equal(await status('192.0.2.1'), 101);
    for (const c of held) await c.close();
  } finally { await s.cleanup(); }
});

test('the HTTP port of a dual-stack listener knows the trusted proxy too', async () => {
  // A trusted proxy's HTTP connections are not counted per address.
  const s = await startServer({ args: [...MAPPED, '--trusted-proxy', '127.0.0.1', '--max-per-ip', '1'] });
  const first = net.connect(s.httpPort, '127.0.0.1');
  try {
    await new Promise((resolve) => first.once('connect', resolve));
    await sleep(200);
    const r = await rawExchange(s.httpPort, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000);
    assert.equal(statusOf(r), 200);
  } finally { first.destroy(); await s.cleanup(); }
});

test('a --trusted-proxy that is not an address or network is a usage error', () => {
  const { db } = tempDb();
  for (const bad of ['localhost', '10.0.0.0/33', '::1/129', '1.2.3.4/', '1.2.3.4/x']) {
    const r = spawnSync(BIN, ['serve', '--db', db, '--listen', '127.0.0.1:0', '--http', 'off', '--trusted-proxy', bad], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 2, bad);
    assert.match(r.stderr, /invalid value for --trusted-proxy/);
  }
});
