// Writes the seed corpus of fuzz_tls13.c (tests/fuzz/corpus/tls13/):
// valid client record streams under the harness's fixed client secret
// (0x11 bytes), sealed with tests/blackbox/tls13raw.mjs's record code, in
// both of the harness's modes. Run from the source root:
//   node tests/fuzz/gen_tls13_corpus.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { Dir, SUITES } from '../blackbox/tls13raw.mjs';

const dir = 'tests/fuzz/corpus/tls13';
mkdirSync(dir, { recursive: true });
const names = Object.keys(SUITES); // in the harness's order: 0x1301..0x1303
const hlen = (s) => (SUITES[s].hash === 'sha384' ? 48 : 32);
const b = (...a) => Buffer.from(a.flat());

// raw mode: records sealed here; steps are [type, content, pad] or a Buffer
// (unsealed); a KeyUpdate moves the key on
function raw(name, suite, cap, steps) {
  const d = new Dir(SUITES[suite], Buffer.alloc(hlen(suite), 0x11));
  const parts = [b((names.indexOf(suite) << 1) | (cap << 3))];
  for (const s of steps) {
    if (Buffer.isBuffer(s)) { parts.push(s); continue; }
    const [type, content, pad = 0] = s;
    parts.push(d.seal(Buffer.concat([Buffer.from(content), b(type), Buffer.alloc(pad)])));
    if (type === 22 && content[0] === 24) d.next();
  }
  writeFileSync(`${dir}/${name}`, Buffer.concat(parts));
}

// sealed mode: chunks [type][pad][len:2][content] that the harness seals
function sealed(name, suite, cap, chunks) {
  const parts = [b(1 | (names.indexOf(suite) << 1) | (cap << 3))];
  for (const [type, content, pad = 0] of chunks) {
    const c = Buffer.from(content);
    parts.push(b(type, pad, c.length >> 8, c.length & 255), c);
  }
  writeFileSync(`${dir}/${name}`, Buffer.concat(parts));
}

const hello = Buffer.from('GET /ws HTTP/1.1\r\nHost: x\r\n\r\n');
const KU = (req) => [24, 0, 0, 1, req];
for (const suite of names) {
  const s = suite.slice(4, 11).toLowerCase();
  raw(`raw-data-${s}`, suite, 0, [[23, hello]]);
  raw(`raw-keyupdate-req-${s}`, suite, 0, [[23, hello], [22, KU(1)], [23, hello], [22, KU(0)], [23, 'after']]);
  raw(`raw-padding-${s}`, suite, 2, [[23, hello, 100], [23, '', 0], [23, 'x', 255]]);
  raw(`raw-max-${s}`, suite, 3, [[23, Buffer.alloc(16384, 0x61)], [23, Buffer.alloc(16000, 0x62), 384]]);
  raw(`raw-close-notify-${s}`, suite, 0, [[23, hello], [21, [1, 0]], [23, 'ignored']]);
  raw(`raw-fatal-alert-${s}`, suite, 1, [[23, 'ab'], [21, [2, 40]]]);
}
const A = 'TLS_AES_128_GCM_SHA256';
raw('raw-overlong-content', A, 0, [[23, Buffer.alloc(16385, 0x63)]]);
raw('raw-overlong-padding', A, 0, [[23, Buffer.alloc(16384, 0x63), 2]]);
raw('raw-overlong-header', A, 0, [b(23, 3, 3, 0x41, 0x01, Array(40).fill(0))]);
raw('raw-ccs', A, 0, [[23, 'x'], b(20, 3, 3, 0, 1, 1)]);
raw('raw-zero-inner', A, 0, [[0, [0, 0, 0]]]);
raw('raw-nst', A, 0, [[22, [4, 0, 0, 4, 0, 0, 0, 0]]]);
raw('raw-two-keyupdates', A, 0, [[22, [...KU(0), ...KU(0)]]]);
raw('raw-split', A, 1, [[23, hello], b(23, 3, 3)]);
raw('raw-ku-flood', A, 0, Array.from({ length: 300 }, () => [22, KU(1)]));
sealed('sealed-mixed', A, 0, [[23, hello], [22, KU(1)], [23, 'next', 3], [21, [1, 0]]]);
sealed('sealed-junk', A, 2, [[23, 'a'], [0x80, [23, 3, 3, 0, 17]], [23, 'b']]);
sealed('sealed-ku-256', 'TLS_AES_256_GCM_SHA384', 1, [[22, KU(1)], [23, 'x'.repeat(300)], [22, KU(0)], [23, 'y']]);
sealed('sealed-chacha-pad', 'TLS_CHACHA20_POLY1305_SHA256', 3, [[23, 'z'.repeat(1000), 200], [23, '']]);
