// Browser tests of the provtrail web UI in a real headless Chromium (Debian's, driven by
// playwright-core). The server is started, on a seeded store, by
// crates/provtrail/tests/ui_browser.rs, which runs this file with:
//   PROVTRAIL_URL           base URL of the running server
//   PROVTRAIL_READ_TOKEN    a read token (signs in)
//   PROVTRAIL_INGEST_TOKEN  an ingest token (posts events; must not sign in)
//   PROVTRAIL_ROUTE_SECRETS secrets of the configured routes (comma-separated; no page may show them)
//   CHROMIUM                the browser (default /usr/bin/chromium)
// A screenshot of every page goes to ./artifacts/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = required('PROVTRAIL_URL');
const readToken = required('PROVTRAIL_READ_TOKEN');
const ingestToken = required('PROVTRAIL_INGEST_TOKEN');
const routeSecrets = required('PROVTRAIL_ROUTE_SECRETS').split(',');
const artifacts = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 15_000;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through cargo test (ui_browser)`);
  return value;
}

let browser;
let laptop;
// Problems the pages reported: CSP violations, script errors, alerts that hostile content opened.
const problems = [];

// `allowed`: statuses the test provokes on purpose on this page, which Chromium logs as errors.
function watch(page, { allowed = [] } = {}) {
  const expected = new RegExp(`status of (${[401, ...allowed].join('|')})\\b`);
  page.on('console', (message) => {
    // A refused sign-in is answered 401 on purpose; Chromium logs every such status.
    if (message.type() === 'error' && !expected.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('dialog', async (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
  return page;
}

async function shot(page, name, { fullPage = true } = {}) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage });
}

async function postEvent(body, channel = '') {
  const response = await fetch(`${base}/events${channel ? `/${channel}` : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ingestToken}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json().catch(() => null) };
}

function event(trackingNumber, { name = 'Browser Test', result = 'SUCCESS', error } = {}) {
  return {
    trackingNumber,
    sources: 'Workday',
    action: 'Access Request',
    errors: error ? [error] : [],
    recipient: { type: 'IDENTITY', id: `id-${trackingNumber}`, name },
    accountRequests: [{
      source: { id: 'wd', type: 'SOURCE', name: 'Workday' },
      accountId: `acct-${trackingNumber}`,
      accountOperation: 'Modify',
      provisioningResult: result,
      provisioningTarget: 'Workday',
      attributeRequests: [{ attributeName: 'title', attributeValue: 'Engineer', operation: 'Set' }],
    }],
    _metadata: { invocationId: `inv-${trackingNumber}` },
  };
}

async function signIn(page, token) {
  await page.goto(`${base}/sign-in`);
  await page.getByLabel('Read token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('domcontentloaded');
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  // Hostile content: must show as text, and open no dialog.
  const hostile = await postEvent(event('hostile-1', {
    name: "Mallory <script>alert('xss')</script>",
    result: 'FAILED',
    error: 'Zyzzyva <img src=x onerror=alert(1)> failed',
  }));
  assert.equal(hostile.status, 200);
  assert.equal((await postEvent('{"sources": 3, "trackingNumber": "<b>q</b>"}', 'hr')).status, 202);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
  laptop = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  laptop.setDefaultTimeout(TIMEOUT);
});

after(async () => {
  await browser?.close();
});

test('sign in: a wrong token and an ingest token are refused, the read token is accepted', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/failures`);
  assert.match(page.url(), /\/sign-in\?next=%2Ffailures$/);
  await shot(page, 'sign-in');

  for (const wrong of ['not-a-token', ingestToken]) {
    await page.getByLabel('Read token').fill(wrong);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /not a read token/);
    assert.match(page.url(), /\/sign-in$/);
  }
  await shot(page, 'sign-in-refused');
  assert.equal((await laptop.cookies()).length, 0, 'no cookie for a refused token');

  await page.getByLabel('Read token').fill(readToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/failures`);
  const [cookie] = await laptop.cookies();
  assert.equal(cookie.name, 'provtrail_session');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.notEqual(cookie.value, readToken);
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the cookie');
  await page.close();
});

test('events: the list, a facet and a free-text search', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/`);
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  const rows = page.locator('#event-rows tr');
  assert.equal(await rows.count(), 50, 'a full first page from the seeded store');
  await shot(page, 'events');

  await page.getByLabel('Account request result').selectOption('FAILED');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/result=FAILED/);
  const failedCounts = await page.locator('#event-rows tr td:nth-child(6)').allInnerTexts();
  assert.ok(failedCounts.length > 0, 'the seeded store has failures');
  for (const text of failedCounts) assert.ok(!text.startsWith('0 '), `a row without failures: ${text}`);
  await shot(page, 'events-failed');

  await page.getByLabel('Search', { exact: true }).fill('zyzzyva');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await page.waitForURL(/q=zyzzyva/);
  assert.equal(await rows.count(), 1);
  const row = rows.first();
  assert.match(await row.innerText(), /Mallory <script>alert\('xss'\)<\/script>/);
  assert.match(await row.innerText(), /Zyzzyva <img src=x onerror=alert\(1\)> failed/);
  assert.equal(await page.locator('#event-rows img, #event-rows script').count(), 0);
  await shot(page, 'events-search');
  await page.close();
});

test('an event: summary, account requests, attribute changes, body and deliveries', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/?number=hostile-1`);
  await page.locator('#event-rows tr a.mono').first().click();
  await page.waitForURL(/\/event\/\d+$/);
  for (const heading of ['Summary', 'Account requests', 'Errors and warnings', 'Body', 'Deliveries']) {
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
  }
  assert.match(await page.locator('dl.summary-grid').innerText(), /Mallory <script>/);
  assert.match(await page.locator('table').first().innerText(), /acct-hostile-1/);
  assert.match(await page.locator('pre.json').first().innerText(), /"trackingNumber": "hostile-1"/);
  await shot(page, 'event');

  // A seeded event with more to show.
  await page.goto(`${base}/?result=FAILED`);
  await page.locator('#event-rows tr a.mono').nth(1).click();
  await page.getByRole('heading', { name: 'Account requests' }).waitFor();
  await shot(page, 'event-seeded');
  await page.close();
});

test('failures: the chart is drawn, with a line per source and a legend', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/failures`);
  const chart = page.locator('svg#failure-chart');
  await chart.waitFor();
  const box = await chart.boundingBox();
  assert.ok(box.width > 300 && box.height > 100, `chart size ${box.width}x${box.height}`);
  const paths = chart.locator('g.series path');
  assert.ok(await paths.count() >= 2, 'several sources');
  for (const d of await paths.evaluateAll((all) => all.map((p) => p.getAttribute('d')))) {
    assert.match(d, /^M[\d.]+,[\d.]+/);
  }
  const drawn = await paths.first().evaluate((p) => p.getTotalLength());
  assert.ok(drawn > 50, `the first line is drawn (${drawn}px long)`);
  assert.equal(await page.locator('ul.legend li').count(), await paths.count());
  assert.ok(await page.locator('#worst ~ .table-wrap tbody tr').count() >= 2);
  await shot(page, 'failures');
  await page.close();
});

test('filter playground: matches as you type and shows where a filter breaks', async () => {
  const page = watch(await laptop.newPage(), { allowed: [400] });
  await page.goto(`${base}/playground`);
  const area = page.getByLabel('Filter');
  await area.click();
  await area.pressSequentially('$[?($.accountRequests[*].provisioningResult contains "FAILED")]', { delay: 5 });
  const ok = page.locator('#playground-result [data-state="ok"]');
  await ok.waitFor();
  const matched = Number(await ok.getAttribute('data-matched'));
  assert.ok(matched >= 1, `matched ${matched}`);
  assert.ok(await page.locator('#playground-result tbody tr').count() >= 1, 'examples listed');
  assert.match(page.url(), /filter=/, 'the address follows the filter');
  await shot(page, 'playground');

  await area.fill('');
  await area.pressSequentially("$[?($.action == 'x']", { delay: 5 });
  const error = page.locator('#playground-result .parse-error');
  await error.waitFor();
  const position = Number(await error.locator('.position').innerText());
  assert.equal(await error.locator('.caret-mark').innerText(), '^');
  assert.ok(position > 0 && position <= "$[?($.action == 'x']".length);
  // How far the caret stands from the character at `at` (in the shown line's text).
  const caretOffset = (at) => error.evaluate((shown, at) => {
    const text = shown.querySelector('pre.caret code').firstChild;
    const range = document.createRange();
    range.setStart(text, at);
    range.setEnd(text, at + 1);
    return Math.abs(range.getBoundingClientRect().left -
      shown.querySelector('.caret-mark').getBoundingClientRect().left);
  }, at);
  assert.ok(await caretOffset(position) < 1, 'the caret stands at the reported position');
  await shot(page, 'playground-error');

  // Also after characters the page shows wider than one cell: an invisible one, shown as its
  // escape, and an emoji (two UTF-16 units in the text the browser shows).
  await area.fill("$[?($.a == 'a\u200bb\u{1F600}' &&)]");
  // Shown as its escape: the page's new result is there once the escape is.
  await page.waitForFunction(
    () => document.querySelector('#playground-result pre.caret code')?.textContent.includes('\\u200b'),
  );
  const shownLine = await error.locator('pre.caret code').evaluate((code) => code.firstChild.data);
  const offset = await caretOffset(shownLine.lastIndexOf(')'));
  assert.ok(offset < 1, `the caret is ${offset}px off the reported character`);

  // And after right-to-left text, which the browser would otherwise draw reordered.
  await area.fill("$[?($.a == '\u05e9\u05dc\u05d5\u05dd' 1)]");
  await page.waitForFunction(
    () => document.querySelector('#playground-result pre.caret code')?.textContent.includes('\u05e9'),
  );
  const rtlLine = await error.locator('pre.caret code').evaluate((code) => code.firstChild.data);
  const rtlOffset = await caretOffset(rtlLine.indexOf('1'));
  assert.ok(rtlOffset < 1, `after right-to-left text the caret is ${rtlOffset}px off`);

  // A refusal says why, as the page without JavaScript does.
  await area.fill(`$[?($.action == "${'a'.repeat(10_050)}")]`);
  const refused = page.locator('#playground-result [data-state="refused"]');
  await refused.waitFor();
  assert.match(await refused.innerText(), /at most 10000 characters/);
  // One too long for an address at all (fewer characters, of another script): said here, and
  // the address keeps one a reload can send.
  await area.fill(`$[?($.action == "${'名前'.repeat(3_700)}")]`);
  await page.locator('#playground-result [data-state="refused"]', { hasText: 'too long to try here' }).waitFor();
  assert.ok(page.url().length < 40_000, `the address is ${page.url().length} characters`);

  // A sample, clicked, fills the box and runs.
  await page.getByRole('link', { name: 'Identity refreshes' }).click();
  await page.locator('#playground-result [data-state="ok"]').waitFor();
  assert.equal(await area.inputValue(), "$[?($.action == 'IdentityRefresh')]");
  await page.close();
});

test('live: an event posted while the page is open appears without a reload', async () => {
  const page = watch(await laptop.newPage(), { allowed: [502] });
  await page.goto(`${base}/`);
  await page.locator('#event-rows tr').first().waitFor();
  await page.evaluate(() => { window.__notReloaded = true; });
  const trackingNumber = `live-${Date.now()}`;
  const posted = await postEvent(event(trackingNumber));
  assert.equal(posted.status, 200);
  const row = page.locator('#event-rows tr').first();
  await page.locator('#event-rows tr', { hasText: trackingNumber }).waitFor({ timeout: 10_000 });
  assert.match(await row.innerText(), new RegExp(trackingNumber));
  assert.equal(await page.evaluate(() => window.__notReloaded), true);
  assert.match(await page.locator('#live-status').innerText(), /1 new event/);
  await shot(page, 'events-live');

  // A server that stops answering for a while: the page says so, and says so no more once the
  // server answers again, with or without new events.
  const status = page.locator('#live-status');
  await page.route('**/ui/fragments/events*', (route) => route.fulfill({ status: 502, body: '' }));
  await page.waitForFunction(() => /paused/.test(document.getElementById('live-status').textContent),
    null, { timeout: 10_000 });
  assert.match(await status.innerText(), /answered HTTP 502/);
  await page.unroute('**/ui/fragments/events*');
  await page.waitForFunction(() => !/paused/.test(document.getElementById('live-status').textContent),
    null, { timeout: 10_000 });
  assert.match(await status.innerText(), /1 new event/);
  await page.close();
});

test('delivery log and quarantine', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/deliveries`);
  await page.getByRole('heading', { name: 'Delivery log' }).waitFor();
  assert.ok(await page.locator('tbody tr').count() > 10);
  await shot(page, 'deliveries');
  await page.getByLabel('Outcome').selectOption('quarantined');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/outcome=quarantined/);
  await page.getByRole('link', { name: /^quarantine \d+$/ }).first().click();
  await page.waitForURL(/\/quarantine\/\d+$/);
  assert.match(await page.locator('pre.json').innerText(), /"trackingNumber": "<b>q<\/b>"/);
  await shot(page, 'quarantine-entry');
  await page.goto(`${base}/quarantine`);
  await shot(page, 'quarantine');
  await page.close();
});

// A dead letter's page, found by the routes test, for the phone test.
let deliveryHref = '/routes/failures-to-ticketing';

test('routes: each route with its counts, and one route with its dead letters and deliveries', async () => {
  const page = watch(await laptop.newPage());
  // The failures posted so far (the hostile one included) go to the archive and to a webhook
  // that no one listens at, where they end in the dead letters: after two attempts, or (once
  // the route pauses and probes, which use no attempts) when a second old, its max_age.
  assert.equal((await postEvent(event(`routed-${Date.now()}`, { result: 'FAILED', error: 'Routed failure' }))).status, 200);
  const failuresRow = page.locator('table.routes tbody tr', { hasText: 'failures-to-ticketing' });
  for (let tries = 0; ; tries += 1) {
    await page.goto(`${base}/routes`);
    await page.getByRole('heading', { name: 'Routes', exact: true }).waitFor();
    const dead = await failuresRow.locator('td[data-label="Dead"]').innerText();
    if (Number(dead.replace(/,/g, '')) >= 2) break;
    assert.ok(tries < 50, `the failures did not reach the dead letters (dead: ${dead})`);
    await page.waitForTimeout(200);
  }
  assert.equal(await page.locator('table.routes tbody tr').count(), 3);
  // A sink that refuses every connection: after three failures in a row its route pauses, and
  // its deliveries wait (an hour may pass before they end in the dead letters).
  const outageRow = page.locator('table.routes tbody tr', { hasText: 'service-desk-outage' });
  for (let tries = 0; !(await outageRow.locator('.paused').count()); tries += 1) {
    assert.ok(tries < 50, 'the route whose sink is down did not pause');
    await page.waitForTimeout(200);
    await page.reload();
  }
  assert.match(await outageRow.locator('td[data-label="Pending"]').innerText(), /sink paused\s+since \d{4}-\d\d-\d\d/);
  const archiveRow = page.locator('table.routes tbody tr', { hasText: 'archive' });
  assert.match(await archiveRow.locator('td[data-label="Sink"]').innerText(), /file/);
  assert.match(await failuresRow.locator('td[data-label="Filter"]').innerText(), /provisioningResult contains "FAILED"/);
  assert.match(await failuresRow.locator('td[data-label="Last error"]').innerText(), /\S/);
  assert.match(await page.locator('main').innerText(), /provtrail deadletter retry/);
  for (const secret of routeSecrets) assert.ok(!(await page.content()).includes(secret), 'a secret on the page');
  await shot(page, 'routes');

  await failuresRow.getByRole('link', { name: 'failures-to-ticketing' }).click();
  await page.waitForURL(/\/routes\/failures-to-ticketing$/);
  await page.getByRole('heading', { name: /^Dead letters \(\d+\)$/ }).waitFor();
  assert.ok(await page.locator('section[aria-labelledby="dead-letters"] tbody tr').count() >= 2);
  assert.match(await page.locator('dl.summary-grid').first().innerText(), /webhook/);
  for (const secret of routeSecrets) assert.ok(!(await page.content()).includes(secret), 'a secret on the page');
  await shot(page, 'route');
  // A dead letter's attempt count leads to the delivery's page, with each attempt.
  const deliveryLink = page.locator('section[aria-labelledby="dead-letters"] a[href*="/deliveries/"]').first();
  deliveryHref = await deliveryLink.getAttribute('href');
  await deliveryLink.click();
  await page.waitForURL(/\/routes\/failures-to-ticketing\/deliveries\/\d+$/);
  await page.getByRole('heading', { name: /^Attempts \(\d+\)$/ }).waitFor();
  const attempts = page.locator('section[aria-labelledby="attempts"] tbody tr');
  assert.ok(await attempts.count() >= 2, 'every attempt of a dead letter');
  assert.match(await attempts.last().innerText(), /dead/);
  for (const secret of routeSecrets) assert.ok(!(await page.content()).includes(secret), 'a secret on the page');
  await shot(page, 'route-delivery');
  // The route tried on that delivery's event, through the form: it matches, and the page shows
  // what would be sent, without sending it.
  const eventId = (await page.locator('dl.summary-grid a[href^="/event/"]').getAttribute('href')).split('/').pop();
  await page.goto(`${base}/routes/failures-to-ticketing/test`);
  await page.getByLabel('Event id').fill(eventId);
  await page.getByRole('button', { name: 'Try' }).click();
  await page.waitForURL(/\/test\?event_id=\d+$/);
  await page.getByRole('heading', { name: /^The filter matches event \d+/ }).waitFor();
  assert.match(await page.locator('pre.json').innerText(), /"trackingNumber"/);
  for (const secret of routeSecrets) assert.ok(!(await page.content()).includes(secret), 'a secret on the page');
  await shot(page, 'route-test');
  await page.getByRole('link', { name: '← Route failures-to-ticketing' }).click();
  await page.waitForURL(/\/routes\/failures-to-ticketing$/);
  await page.getByLabel('State').selectOption('dead');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/state=dead/);
  await page.locator('section[aria-labelledby="recent"] tbody tr').first().waitFor();
  await page.goto(`${base}/routes/archive`);
  await page.getByRole('heading', { name: 'Recent deliveries' }).waitFor();
  await shot(page, 'route-archive');
  await page.close();
});

test('keyboard: the skip link comes first and leads to the content', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/failures`);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
  await page.close();
});

test('phone: every page fits the screen without sideways scrolling', async () => {
  const phone = await browser.newContext({
    viewport: { width: 375, height: 812 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    storageState: await laptop.storageState(),
  });
  phone.setDefaultTimeout(TIMEOUT);
  const page = watch(await phone.newPage());
  await page.goto(`${base}/?number=hostile-1`);
  const eventHref = await page.locator('#event-rows tr a.mono').first().getAttribute('href');
  const pages = {
    events: '/',
    event: eventHref,
    failures: '/failures',
    playground: `/playground?filter=${encodeURIComponent("$[?($.action == 'IdentityRefresh')]")}`,
    deliveries: '/deliveries',
    quarantine: '/quarantine',
    routes: '/routes',
    route: '/routes/failures-to-ticketing',
    paused: '/routes/service-desk-outage',
    delivery: deliveryHref,
  };
  for (const [name, href] of Object.entries(pages)) {
    await page.goto(`${base}${href}`);
    await page.locator('main h1').waitFor();
    const { scroll, width } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      width: window.innerWidth,
    }));
    assert.ok(scroll <= width, `${name}: the page is ${scroll}px wide on a ${width}px screen`);
    if (name === 'routes' || name === 'paused') {
      // The paused route's line, the widest thing on these pages, is there and fits.
      const since = await page.locator('.paused-since').first().boundingBox();
      assert.ok(since && since.x + since.width <= width, `${name}: the paused line runs past the screen`);
    }
    if (name === 'failures') {
      // The chart scrolls within its frame rather than shrink its labels past reading.
      const label = await page.locator('svg#failure-chart text.axis').first().boundingBox();
      assert.ok(label.height >= 8, `the chart's labels are ${label.height}px tall`);
      // It starts at its newest end, and the legend below it stays on the screen.
      const frame = await page.evaluate(() => {
        const box = document.querySelector('[data-scroll-to-end]');
        return { left: box.scrollLeft, most: box.scrollWidth - box.clientWidth };
      });
      assert.ok(frame.most > 0 && frame.left >= frame.most - 1, `the chart is scrolled to ${frame.left} of ${frame.most}`);
      const legend = await page.locator('ul.legend li').first().boundingBox();
      assert.ok(legend && legend.x >= 0 && legend.x + legend.width <= width, 'the legend is off the screen');
    }
    // The first screen is what a phone shows; the whole page is in the laptop screenshots.
    await shot(page, `phone-${name}`, { fullPage: false });
  }
  await phone.close();
});

test('dark colour scheme: the pages follow the system setting', async () => {
  const dark = await browser.newContext({
    viewport: { width: 1366, height: 800 },
    colorScheme: 'dark',
    storageState: await laptop.storageState(),
  });
  dark.setDefaultTimeout(TIMEOUT);
  const page = watch(await dark.newPage());
  await page.goto(`${base}/failures`);
  await page.locator('svg#failure-chart').waitFor();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(13, 17, 23)');
  await shot(page, 'dark-failures');
  await page.goto(`${base}/`);
  await shot(page, 'dark-events', { fullPage: false });
  await dark.close();
});

test('sign out ends the session', async () => {
  const page = watch(await laptop.newPage());
  await page.goto(`${base}/`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/sign-in\?out=ended$/);
  assert.match(await page.getByRole('status').innerText(), /You are signed out/);
  await page.goto(`${base}/deliveries`);
  assert.match(page.url(), /\/sign-in\?next=/);
  await page.close();
});

test('no page reported a problem', () => {
  assert.deepEqual(problems, []);
});
