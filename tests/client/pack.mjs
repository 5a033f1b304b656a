// `npm pack` of clients/js and an install of the tarball into a scratch
// project, offline (the package has no dependencies). Shared by
// tests/client/package.test.mjs (Node, tsc) and tests/browser/package.test.mjs (a page).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const PACKAGE_DIR = path.join(ROOT, 'clients/js');

const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], {
  cwd, encoding: 'utf8', timeout: 120000, env: { ...process.env, npm_config_update_notifier: 'false' },
});

// Resolves {dir, tarball, packed (npm pack's JSON), cleanup()}; dir holds
// node_modules/basestation installed from the tarball.
export function packAndInstall() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-pack-'));
  try {
    const packed = JSON.parse(npm(['pack', PACKAGE_DIR, '--pack-destination', dir, '--json'], dir))[0];
    const tarball = path.join(dir, packed.filename);
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
    npm(['install', '--offline', '--ignore-scripts', tarball], dir);
    return { dir, tarball, packed, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
