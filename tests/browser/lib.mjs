// Helpers for the browser tests: Debian's Chromium driven by playwright-core,
// a fresh profile per browser, and the real broker from ../blackbox/lib.mjs.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

import { needTool, tempDb } from '../blackbox/lib.mjs';
import { startBroker, stopBroker } from '../client/lib.mjs';

export * from '../blackbox/lib.mjs';

export const CHROMIUM = process.env.BASESTATION_CHROMIUM || '/usr/bin/chromium';
// Without Chromium the browser tests skip, except under CI=true: a failure.
export const skipReason = needTool(CHROMIUM, 'scripts/setup installs Chromium; or set BASESTATION_CHROMIUM');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// A persistent context on a fresh temporary profile. close() removes it.
// extraArgs: more Chromium flags (e.g. --ignore-certificate-errors).
export async function launch(extraArgs = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bs-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    headless: true,
    executablePath: CHROMIUM,
    args: [...ARGS, ...extraArgs],
    viewport: { width: 1280, height: 860 },
    timeout: 30000,
  });
  ctx.setDefaultTimeout(10000);
  const errors = [];
  ctx.on('weberror', (e) => errors.push(String(e.error())));
  const close = async () => {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  return { ctx, errors, close };
}

// A new page that records its console errors and uncaught exceptions.
export async function newPage(ctx) {
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('pageerror: ' + e.message));
  // Failed loads are reported with their URL by the 'response' handler
  // (the console line does not say which); the browser's own favicon probe
  // for non-HTML documents is not the page's doing.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) page.problems.push('console: ' + m.text());
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) page.problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  return page;
}

// The demo page URL for uid on srv (a fresh token unless given).
export function demoUrl(srv, uid, tok, extra = '') {
  return `${srv.http}/?uid=${encodeURIComponent(uid)}&token=${encodeURIComponent(tok)}&ws=${srv.wsPort}${extra}`;
}

export const stateOf = (page) => page.locator('#state').getAttribute('data-state');

export async function waitState(page, state, timeout = 10000) {
  await page.locator(`#state[data-state="${state}"]`).waitFor({ timeout });
}

// Steps of the timeline as [name, status, label, duration text].
export async function timeline(page) {
  return page.$$eval('#timeline .step', (lis) => lis.map((li) => [
    li.querySelector('.step-name').textContent,
    li.dataset.status,
    li.querySelector('.step-label').textContent,
    li.querySelector('.step-duration').textContent,
  ]));
}

// A broker and a browser for one test file: started before its tests,
// stopped after them (also when one fails), the broker's exit status
// checked. fx.stop() and fx.start() restart the broker on the same ports
// and database, for tests of what survives a restart.
export function withBroker({ args = [], browserArgs = [] } = {}) {
  const fx = { srv: null, browser: null };
  let dir = null;
  let db = null;
  let ports = { wsPort: 0, httpPort: 0 };
  fx.start = async () => {
    fx.srv = await startBroker(db, { ...ports, args });
    ports = { wsPort: fx.srv.wsPort, httpPort: fx.srv.httpPort };
    return fx.srv;
  };
  fx.stop = async () => {
    const s = fx.srv;
    fx.srv = null;
    if (s) await stopBroker(s);
  };
  before(async () => {
    if (skipReason) return;
    ({ dir, db } = tempDb());
    await fx.start();
    fx.browser = await launch(browserArgs);
  });
  after(async () => {
    if (fx.browser) await fx.browser.close();
    await fx.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return fx;
}
