// The meson test lists name their files one by one (a directory listing at
// configure time ran in no particular directory). This test keeps them
// complete: every *.test.mjs in a suite's folder must be in its list.
//   node tests/test-lists.mjs DIR=name,name,... [DIR=...]
import { readdirSync } from 'node:fs';
import path from 'node:path';

let bad = 0;
for (const arg of process.argv.slice(2)) {
  const i = arg.lastIndexOf('=');
  const dir = arg.slice(0, i);
  const listed = new Set(arg.slice(i + 1).split(',').filter(Boolean));
  const files = readdirSync(dir).filter((f) => f.endsWith('.test.mjs')).map((f) => f.slice(0, -'.test.mjs'.length));
  for (const f of files) {
    if (!listed.has(f)) { console.error(`${path.join(dir, f)}.test.mjs is not in ${path.join(dir, 'meson.build')}`); bad++; }
  }
  for (const f of listed) {
    if (!files.includes(f)) { console.error(`${path.join(dir, 'meson.build')} lists ${f}, which has no .test.mjs file`); bad++; }
  }
  console.log(`${dir}: ${files.length} test files, ${listed.size} listed`);
}
process.exit(bad ? 1 : 0);
