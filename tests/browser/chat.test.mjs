// (a) Two users chat through the broker: two pages, alice and bob; who is
// online in a room, live from presence events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withBroker, newPage, demoUrl, waitState, token } from './lib.mjs';

const fx = withBroker();

test('a direct message and a room message show up on the other page', { skip: skipReason, timeout: 60000 }, async () => {
  const alice = await newPage(fx.browser.ctx);
  const bob = await newPage(fx.browser.ctx);
  await alice.goto(demoUrl(fx.srv, 'alice', token(fx.srv.db, 'alice')));
  await bob.goto(demoUrl(fx.srv, 'bob', token(fx.srv.db, 'bob')));
  await waitState(alice, 'open');
  await waitState(bob, 'open');
  assert.equal(await alice.locator('#who-uid').textContent(), 'alice');

  await alice.fill('#dm-to', 'bob');
  await alice.fill('#dm-text', 'hi bob, 你好');
  await alice.click('#dm-send');
  const got = bob.locator('#messages .msg.in', { hasText: 'hi bob, 你好' });
  await got.waitFor({ timeout: 5000 });
  assert.equal(await got.getAttribute('data-from'), 'alice');
  assert.match(await got.locator('.msg-who').textContent(), /alice/);
  // The sender's copy is marked as stored (acknowledged, with its seq).
  const mine = alice.locator('#messages .msg.out', { hasText: 'hi bob, 你好' });
  await mine.locator('.msg-meta', { hasText: '✓' }).waitFor({ timeout: 5000 });
  assert.equal(await mine.getAttribute('data-seq'), await got.getAttribute('data-seq'));

  // Bob answers with Enter in the text field.
  await bob.fill('#dm-to', 'alice');
  await bob.fill('#dm-text', 'hello alice');
  await bob.press('#dm-text', 'Enter');
  await alice.locator('#messages .msg.in', { hasText: 'hello alice' }).waitFor({ timeout: 5000 });

  // A room: both join "lobby"; bob publishes, alice reads.
  await alice.click('#room-join');
  await alice.locator('#rooms .chip[data-room="lobby"]').waitFor();
  await bob.click('#room-join');
  await bob.locator('#rooms .chip[data-room="lobby"]').waitFor();
  await bob.fill('#room-text', 'to everyone in the lobby');
  await bob.click('#room-send');
  const roomMsg = alice.locator('#messages .msg.in', { hasText: 'to everyone in the lobby' });
  await roomMsg.waitFor({ timeout: 5000 });
  assert.match(await roomMsg.locator('.msg-who').textContent(), /bob in #lobby/);

  // Each message once on each page.
  assert.equal(await bob.locator('#messages .msg.in').count(), 1);
  assert.equal(await alice.locator('#messages .msg.in').count(), 2);
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});

test('the sign-in form; a wrong token says so', { skip: skipReason, timeout: 60000 }, async () => {
  const page = await newPage(fx.browser.ctx);
  await page.goto(`${fx.srv.http}/`);
  await page.locator('#signin').waitFor();
  assert.equal(await page.locator('#state').getAttribute('data-state'), 'closed');
  await page.fill('#signin-uid', 'carol');
  await page.fill('#signin-token', 'bs_wrong');
  await page.fill('#signin-ws', String(fx.srv.wsPort));
  await page.click('#signin-form button[type=submit]');
  await page.locator('#error:not([hidden])', { hasText: 'cannot connect' }).waitFor({ timeout: 15000 });
  assert.notEqual(await page.locator('#state').getAttribute('data-state'), 'open');

  await page.click('#signout');
  await page.locator('#signin').waitFor();
  await page.fill('#signin-uid', 'carol');
  await page.fill('#signin-token', token(fx.srv.db, 'carol'));
  await page.fill('#signin-ws', String(fx.srv.wsPort));
  await page.click('#signin-form button[type=submit]');
  await waitState(page, 'open');
  assert.equal(await page.locator('#who-uid').textContent(), 'carol');
  assert.match(page.url(), /\?uid=carol&token=bs_/);
});

test('who is online in a room: a second user appears, and goes when its page closes', { skip: skipReason, timeout: 60000 }, async () => {
  const alice = await newPage(fx.browser.ctx);
  await alice.goto(demoUrl(fx.srv, 'p-alice', token(fx.srv.db, 'p-alice')));
  await waitState(alice, 'open');
  await alice.fill('#room-name', 'presence-room');
  await alice.click('#room-join');
  const room = alice.locator('#online .online-room[data-room="presence-room"]');
  await room.locator('.uid[data-uid="p-alice"]').waitFor({ timeout: 5000 });
  assert.equal(await room.locator('.uid').count(), 1);

  const bob = await newPage(fx.browser.ctx);
  await bob.goto(demoUrl(fx.srv, 'p-bob', token(fx.srv.db, 'p-bob')));
  await waitState(bob, 'open');
  await bob.fill('#room-name', 'presence-room');
  await bob.click('#room-join');
  // Live, from alice's presence events (no reload, no polling).
  await room.locator('.uid[data-uid="p-bob"]').waitFor({ timeout: 5000 });
  await bob.locator('#online .online-room[data-room="presence-room"] .uid[data-uid="p-alice"]').waitFor({ timeout: 5000 });
  assert.deepEqual([...alice.problems, ...bob.problems], []);
  await bob.close();
  // presence.leave comes after the grace period (at most 3 s after the close).
  await room.locator('.uid[data-uid="p-bob"]').waitFor({ state: 'detached', timeout: 6000 });
  assert.equal(await room.locator('.uid').count(), 1);
  assert.deepEqual(alice.problems, []);
});
