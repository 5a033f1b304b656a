// deploy/cluster/, checked on this machine:
//   - each shipped nats-server config passes `nats-server -c FILE -t`; the
//     three differ only in server_name and routes, and each routes to the
//     other two;
//   - the three, moved to loopback ports and a temp store (nothing else
//     changed), form one JetStream cluster named as shipped, every server
//     current;
//   - the nginx file (with the single-node map file) passes `nginx -t`, and
//     run for real over two basestation nodes it upgrades WebSockets to
//     both (least_conn), and sends new connections to the other node once
//     one is killed; its proxy_read_timeout is above the unit's heartbeat;
//   - the unit's instance and the nats-server drop-in pass
//     `systemd-analyze verify` without a word; the unit starts the node
//     with the flags the README names.
// The nginx check runs two single-node brokers behind nginx (the engine
// itself is tests/cluster/engine.test.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, startServer, sleep, jwt } from '../blackbox/lib.mjs';
import { NATS_SERVER, natsServerMissing, freePorts, launchServers } from './nats.mjs';

const SOURCE = process.env.BASESTATION_SOURCE || path.resolve(import.meta.dirname, '../..');
const DIR = path.join(SOURCE, 'deploy/cluster');
const NATS_FILES = ['bs1', 'bs2', 'bs3'].map((n) => path.join(DIR, 'nats', `${n}.conf`));
const NGINX_FILE = path.join(DIR, 'nginx/basestation-cluster.conf');
const MAP = path.join(SOURCE, 'deploy/nginx/basestation-upgrade-map.conf');
const UNIT_FILE = path.join(DIR, 'systemd/basestation@.service');
const DROPIN = path.join(DIR, 'systemd/nats-server.service.d/basestation.conf');
const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
function tool(ok, why) {
  if (ok) return false;
  if (process.env.CI === 'true') throw new Error(why);
  return why;
}
const noNats = natsServerMissing();
const noNginx = tool(fs.existsSync(NGINX), `${NGINX} is not installed (Debian package nginx-light)`);
const noAnalyze = tool(have('systemd-analyze'), 'systemd-analyze is not installed (Debian package systemd)');

const tmps = [];
function tmpdir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o755);
  tmps.push(d);
  return d;
}
after(() => { for (const d of tmps) fs.rmSync(d, { recursive: true, force: true }); });

// Replace re in text, which must match exactly `count` times (a change of
// the shipped file's shape then breaks the test instead of going untested).
function sub(text, re, repl, count, what) {
  const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
  const n = (text.match(g) || []).length;
  assert.equal(n, count, `${re} matched ${n} times in ${what}, expected ${count}`);
  return text.replace(g, repl);
}

const natsTexts = NATS_FILES.map((f) => fs.readFileSync(f, 'utf8'));

test('nats-server -t accepts each shipped config', { skip: noNats }, () => {
  for (const f of NATS_FILES) {
    const r = spawnSync(NATS_SERVER, ['-c', f, '-t'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${f}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /is valid/);
  }
});

test('the three configs differ only in server_name and routes; each routes to the other two', () => {
  const strip = (t) => t.replace(/^server_name: .*$/m, '').replace(/nats-route:\/\/\S+/g, 'ROUTE')
    .replace(/host bs\d/, 'host X').replace(/bs\d\.conf/, 'X.conf');
  assert.equal(strip(natsTexts[1]), strip(natsTexts[0]));
  assert.equal(strip(natsTexts[2]), strip(natsTexts[0]));
  natsTexts.forEach((t, i) => {
    assert.match(t, new RegExp(`^server_name: bs${i + 1}$`, 'm'));
    const routes = [...t.matchAll(/nats-route:\/\/bs(\d)\.internal:6222/g)].map((m) => Number(m[1])).sort();
    assert.deepEqual(routes, [1, 2, 3].filter((n) => n !== i + 1));
    assert.match(t, /^jetstream \{\n {2}store_dir: "\/var\/lib\/nats\/jetstream"$/m);
    assert.match(t, /^http: 127\.0\.0\.1:8222$/m, 'monitoring on loopback only');
  });
});

test('the shipped configs, moved to loopback, form one JetStream cluster', { skip: noNats, timeout: 60000 }, async () => {
  const dir = tmpdir('bs-deploy-nats-');
  const ports = await freePorts(9);
  const specs = [0, 1, 2].map((i) => ({
    name: `bs${i + 1}`, port: ports[3 * i], clusterPort: ports[3 * i + 1], httpPort: ports[3 * i + 2],
    configPath: path.join(dir, `bs${i + 1}.conf`),
  }));
  specs.forEach((s, i) => {
    const what = NATS_FILES[i];
    let t = natsTexts[i];
    t = sub(t, /^listen: 0\.0\.0\.0:4222$/m, `listen: 127.0.0.1:${s.port}`, 1, what);
    t = sub(t, /^http: 127\.0\.0\.1:8222$/m, `http: 127.0.0.1:${s.httpPort}`, 1, what);
    t = sub(t, /^(\s*store_dir: )".*"$/m, `$1"${path.join(dir, s.name + '-store')}"`, 1, what);
    // JetStream refuses a file store larger than the disk: the temp dir's.
    t = sub(t, /^(\s*max_file_store: ).*$/m, '$11GB', 1, what);
    t = sub(t, /^(\s*listen: )0\.0\.0\.0:6222$/m, `$1127.0.0.1:${s.clusterPort}`, 1, what);
    t = sub(t, /nats-route:\/\/bs(\d)\.internal:6222/g, (m, n) => `nats-route://127.0.0.1:${specs[n - 1].clusterPort}`, 2, what);
    fs.writeFileSync(s.configPath, t);
  });
  const cluster = await launchServers(specs);
  try {
    const res = await fetch(`http://127.0.0.1:${specs[0].httpPort}/jsz`);
    const jsz = await res.json();
    const leader = specs.find((s) => s.name === jsz.meta_cluster.leader);
    assert.ok(leader, `meta leader ${jsz.meta_cluster.leader}`);
    const lj = await (await fetch(`http://127.0.0.1:${leader.httpPort}/jsz`)).json();
    assert.equal(lj.meta_cluster.name, 'basestation');
    assert.equal(lj.meta_cluster.cluster_size, 3);
    assert.equal(lj.meta_cluster.replicas.filter((r) => r.current).length, 2);
    const v = await (await fetch(`http://127.0.0.1:${specs[0].httpPort}/varz`)).json();
    assert.equal(v.max_payload, 1024 * 1024);
  } finally {
    await cluster.stop();
  }
});

// ---- nginx ----

const nginxText = fs.readFileSync(NGINX_FILE, 'utf8');

function nginxConfig(dir, { port, ws, http }) {
  let b = nginxText;
  b = sub(b, /^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${port};`, 1, NGINX_FILE);
  b = sub(b, /^\s*listen \[::\]:80;\n/m, '', 1, NGINX_FILE);
  b = sub(b, /bs(\d)\.internal:8080/g, (m, n) => `127.0.0.1:${ws[n - 1]}`, 2, NGINX_FILE);
  b = sub(b, /bs(\d)\.internal:8081/g, (m, n) => `127.0.0.1:${http[n - 1]}`, 2, NGINX_FILE);
  // Everything nginx writes goes under dir (it runs unprivileged here).
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((k) => `    ${k}_temp_path ${dir}/${k};`).join('\n');
  return `worker_processes 1;
error_log stderr info;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
http {
    access_log ${dir}/access.log;
${temps}
    include ${MAP};
${b}
}
`;
}

test('nginx: proxy_read_timeout stays above the unit\'s heartbeat', () => {
  const read = Number(/^\s*proxy_read_timeout (\d+)s;$/m.exec(nginxText)[1]);
  const hb = Number(/^Environment=BASESTATION_HEARTBEAT=(\d+)$/m.exec(fs.readFileSync(UNIT_FILE, 'utf8'))[1]);
  assert.ok(read >= 4 * hb, `proxy_read_timeout ${read}s, heartbeat ${hb}s`);
  assert.match(nginxText, /proxy_set_header Upgrade\s+\$http_upgrade;/);
  assert.match(nginxText, /proxy_set_header Connection\s+\$connection_upgrade;/);
  assert.match(nginxText, /upstream basestation_ws \{\n\s+least_conn;/);
});

// Opens a WebSocket through nginx; resolves with the first frame's text.
function wsConnect(port, token) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no connect frame: ' + buf)); }, 5000);
    s.on('connect', () => s.write(`GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      const rest = buf.subarray(end + 4);
      if (!/^HTTP\/1\.1 101 /.test(head)) { clearTimeout(timer); s.destroy(); reject(new Error(head)); return; }
      // An unmasked text frame; the connect frame is under 64 KiB.
      if (rest.length < 2) return;
      const [off, len] = (rest[1] & 0x7f) === 126 ? [4, rest.length >= 4 ? rest.readUInt16BE(2) : Infinity]
        : [2, rest[1] & 0x7f];
      if (rest.length >= off + len) {
        clearTimeout(timer);
        resolve({ sock: s, text: rest.subarray(off, off + len).toString() });
      }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

test('nginx over two nodes: nginx -t, WebSockets reach both, a killed node is skipped',
  { skip: noNginx, timeout: 60000 }, async () => {
    const dir = tmpdir('bs-deploy-nginx-');
    // One JWT secret for both nodes, as a cluster's nodes share their keys.
    const secret = 'deploy-cluster-secret';
    const nodes = [await startServer({ args: ['--jwt-secret', secret] }),
      await startServer({ args: ['--jwt-secret', secret] })];
    let proc = null;
    const socks = [];
    try {
      const [port] = await freePorts(1);
      const conf = path.join(dir, 'nginx.conf');
      fs.writeFileSync(conf, nginxConfig(dir, { port, ws: nodes.map((n) => n.wsPort), http: nodes.map((n) => n.httpPort) }));
      const t = spawnSync(NGINX, ['-t', '-p', dir + '/', '-c', conf, '-e', 'stderr'], { encoding: 'utf8' });
      assert.equal(t.status, 0, t.stderr);
      proc = spawn(NGINX, ['-p', dir + '/', '-c', conf, '-e', 'stderr', '-g', 'daemon off;'],
        { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
      let logs = '';
      proc.stderr.on('data', (d) => { logs += d; });
      for (let i = 0; ; i++) {
        const up = await new Promise((r) => {
          const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
          s.on('error', () => r(false));
        });
        if (up) break;
        assert.ok(i < 100, 'nginx did not listen:\n' + logs);
        await sleep(50);
      }
      const token = jwt(secret, { sub: 'u', exp: Math.floor(Date.now() / 1000) + 300 });
      // Today's nodes are single-node brokers, each with its own epoch: that
      // tells which one a connection through nginx reached.
      const epochOf = (text) => JSON.parse(text).epoch;
      const epochs = [];
      for (const n of nodes) {
        const c = await wsConnect(n.wsPort, token);
        epochs.push(epochOf(c.text));
        c.sock.destroy();
      }
      assert.notEqual(epochs[0], epochs[1]);
      const landed = [0, 0];
      for (let i = 0; i < 4; i++) {
        const c = await wsConnect(port, token);
        assert.match(c.text, /"type":"connect"/);
        socks.push(c.sock);
        landed[epochs.indexOf(epochOf(c.text))]++;
      }
      assert.ok(landed[0] > 0 && landed[1] > 0, `connections per node ${landed}`);
      await nodes[1].kill9();
      for (let i = 0; i < 3; i++) {
        const c = await wsConnect(port, token);
        assert.equal(epochOf(c.text), epochs[0], 'a new connection went to the node left');
        socks.push(c.sock);
      }
    } finally {
      for (const s of socks) s.destroy();
      if (proc && proc.exitCode === null) {
        try { process.kill(-proc.pid, 'SIGTERM'); } catch {}
        await new Promise((r) => { const t = setTimeout(r, 3000); proc.on('exit', () => { clearTimeout(t); r(); }); });
      }
      for (const n of nodes) await n.cleanup().catch(() => {});
    }
  });

// ---- systemd ----

test('basestation@bs1 and the nats-server drop-in pass systemd-analyze verify', { skip: noAnalyze }, () => {
  const dir = tmpdir('bs-deploy-systemd-');
  const unit = fs.readFileSync(UNIT_FILE, 'utf8');
  const exec = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)[1].replace(/\\\n\s*/g, '');
  assert.match(exec, /^\/usr\/local\/bin\/basestation serve --cluster nats:\/\/bs1\.internal:4222,nats:\/\/bs2\.internal:4222,nats:\/\/bs3\.internal:4222 --node %i --stream basestation --replicas 3 --db \/var\/lib\/basestation\/%i\.db$/);
  fs.writeFileSync(path.join(dir, 'basestation@bs1.service'),
    sub(unit, /^ExecStart=\/usr\/local\/bin\/basestation /m, `ExecStart=${BIN} `, 1, UNIT_FILE));
  let r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'basestation@bs1.service')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((r.stdout + r.stderr).trim(), '', 'verify printed warnings');
  // Debian's nats-server.service with the drop-in beside it.
  const debUnit = '/lib/systemd/system/nats-server.service';
  if (!fs.existsSync(debUnit)) return; // nats-server not installed: its own test fails
  const nats = fs.readFileSync(debUnit, 'utf8');
  const natsBin = spawnSync('sh', ['-c', `command -v ${NATS_SERVER}`], { encoding: 'utf8' }).stdout.trim();
  fs.writeFileSync(path.join(dir, 'nats-server.service'), nats.replace(/\/usr\/sbin\/nats-server/g, natsBin || '/usr/sbin/nats-server'));
  fs.mkdirSync(path.join(dir, 'nats-server.service.d'));
  fs.copyFileSync(DROPIN, path.join(dir, 'nats-server.service.d/basestation.conf'));
  r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'nats-server.service')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((r.stdout + r.stderr).trim(), '', 'verify printed warnings');
});
