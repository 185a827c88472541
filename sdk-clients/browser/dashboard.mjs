// Drives Flagstaff's web dashboard in Debian's headless chromium through playwright-core, as a
// person would: keyboard and mouse on the real pages served by `flagstaff serve`. Run by
// crates/flagstaff/tests/it/dashboard.rs with a JSON input on stdin:
//   {"base", "adminToken", "admin": {"email","name","password"}, "reader": {"email","password"},
//    "screenshots": "<dir>"}
// It prints one JSON report of what it saw; any expectation that fails throws, which fails the
// Rust test with this script's stderr.
import { expect, launch, readInput, text } from './common.mjs';

const input = await readInput();
const { base, adminToken, admin, reader, screenshots } = input;
const report = {};

const browser = await launch();

async function shot(page, name) {
  if (screenshots) await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true });
}
async function api(method, path, body, version) {
  const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
  if (version !== undefined) headers['if-match'] = `"${version}"`;
  const response = await fetch(`${base}/api/v1${path}`, { method, headers, body: body && JSON.stringify(body) });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}
// The API answers a document with its version beside its fields; a PUT takes the fields.
function withoutVersion(doc) {
  const { version: _, ...fields } = doc;
  return fields;
}
// Saves through the review dialog: checks the diff, types the confirmation when the
// environment is critical, adds the comment, saves and waits for the page to reload.
async function reviewAndSave(page, { expectInDiff, comment, confirmKey }) {
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0
    || !document.querySelector('#review-error').hidden);
  const diff = await text(page, '#review-diff');
  for (const line of expectInDiff) expect(diff.includes(line), `the review shows ${JSON.stringify(line)}; it shows ${diff}`);
  if (confirmKey) {
    expect(await page.locator('#review-save').isDisabled(), 'saving in a critical environment waits for the typed key');
    await page.fill('#review-confirm', confirmKey);
  }
  await page.fill('#review-comment', comment);
  await Promise.all([page.waitForNavigation(), page.click('#review-save')]);
  return diff;
}

const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
const consoleErrors = [];
// Refusals the scenario provokes on purpose (wrong token 401, conflict 409, reader 403) are
// logged by chromium as failed loads; anything else is a defect of the pages.
const provoked = /^Failed to load resource: the server responded with a status of 40[139] /;
page.on('console', (m) => { if (m.type() === 'error' && !provoked.test(m.text())) consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

try {
// 1. First run: the server has no member, so / leads to the setup page.
await page.goto(`${base}/`);
expect(page.url().endsWith('/setup'), `a fresh server asks for the first admin (at ${page.url()})`);
await page.fill('input[name=token]', 'fst_not-the-token');
await page.fill('input[name=name]', admin.name);
await page.fill('input[name=email]', admin.email);
await page.fill('input[name=password]', admin.password);
await shot(page, '01-first-run');
await page.click('button[type=submit]');
report.wrongTokenError = await text(page, '.alert.error');
await page.fill('input[name=token]', adminToken);
await page.fill('input[name=password]', admin.password);
await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
expect(page.url().includes('/projects/default/flags'), `after setup the admin sees the flags (at ${page.url()})`);
report.emptyState = await text(page, '.empty h2');
report.role = await text(page, '[data-testid=role]');

// 2. Create a boolean flag; the key follows the name.
// The form's deferred app.js must have run (it runs before DOMContentLoaded) before the name
// is typed, or nothing listens for it yet.
await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('[data-testid=new-flag]')]);
await page.fill('#flag-name', 'New checkout');
report.suggestedKey = await page.inputValue('#flag-key');
await page.fill('input[name=tags]', 'checkout, web');
await Promise.all([page.waitForNavigation(), page.click('#new-flag button[type=submit]')]);
report.flagUrl = page.url();
report.flagTitle = await text(page, 'h1');
report.initialState = await text(page, '[data-testid=flag-state]');

// 3. A rule (country in DE, FR serves true) and a 30 % rollout of true as the default rule.
await page.waitForSelector('[data-testid=add-rule]');
await page.click('[data-testid=add-rule]');
const rule = page.locator('.ed-rule[data-rule-index="0"]');
await rule.locator('[aria-label=Values]').fill('DE, FR');
const fallthrough = page.locator('[data-testid=default-rule]');
await fallthrough.locator('select[aria-label=Serve]').selectOption('rollout');
await fallthrough.locator('[aria-label="Percent for true"]').fill('30');
await fallthrough.locator('[aria-label="Percent for true"]').press('Tab');
report.rolloutFalse = await fallthrough.locator('[aria-label="Percent for false"]').inputValue();
report.rolloutTotal = await text(page, '[data-testid=default-rule] .ed-total');
await shot(page, '03-targeting-editor');
await page.click('[data-testid=review-save]');
await page.waitForSelector('#review[open]');
await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0);
await shot(page, '04-review-before-save');
report.ruleDiff = await reviewAndSave(page, {
  expectInDiff: ['Rule 1: if user country is one of "DE", "FR", serve true', 'Default rule: serve a percentage rollout: 30 % true, 70 % false'],
  comment: 'Germany and France first, 30 % of everyone else',
  confirmKey: 'new-checkout',
});
report.summaryAfterRule = await text(page, '[data-testid=summary]');

// 4. The kill switch: turn it on in production, with a comment.
await page.click('#toggle');
report.toggleDiff = await reviewAndSave(page, {
  expectInDiff: ['Targeting is ON'],
  comment: 'Launch: rules and 30 % rollout',
  confirmKey: 'new-checkout',
});
report.stateAfterToggle = await text(page, '[data-testid=flag-state]');
await shot(page, '02-flag-page');

// 5. History: the toggle is the newest entry, with who, why and the diff.
await Promise.all([page.waitForNavigation(), page.click('[data-testid=flag-history]')]);
const newest = page.locator('.change').first();
report.historyHead = (await newest.locator('.change-head').textContent()).replace(/\s+/g, ' ').trim();
report.historyComment = (await newest.locator('[data-testid=comment]').textContent()).trim();
report.historyAdded = (await newest.locator('ol.diff li.added').allTextContents()).map((t) => t.trim());
report.historyRemoved = (await newest.locator('ol.diff li.removed').allTextContents()).map((t) => t.trim());
await shot(page, '05-history');

// 6. Test a context: a German user matches rule 1, which is shown highlighted.
await page.goto(`${base}/projects/default/test?env=production`);
await page.fill('#context', JSON.stringify({ kind: 'user', key: 'user-42', country: 'DE' }));
await Promise.all([page.waitForNavigation(), page.click('#test-form button[type=submit]')]);
const row = page.locator('tr[data-flag="new-checkout"]');
report.testValue = (await row.locator('td').nth(1).locator('strong').textContent()).trim();
report.testReason = (await row.locator('.reason').first().textContent()).trim();
report.testRule = (await row.locator('.matched-rule').first().textContent()).trim();
await shot(page, '06-test-a-context');
await Promise.all([page.waitForNavigation(), row.locator('.matched-rule').first().click()]);
report.highlightedRule = await text(page, '[data-testid=highlighted-rule]');

// 7. Restore the version before the toggle (the second entry): targeting goes back to OFF.
await page.goto(`${base}/projects/default/flags/new-checkout/history?env=production`);
await page.locator('.change').nth(1).locator('button.restore').click();
report.restoreDiff = await reviewAndSave(page, {
  expectInDiff: ['Targeting is OFF'],
  comment: 'Restore: not ready yet',
  confirmKey: 'new-checkout',
});
await page.goto(report.flagUrl);
report.stateAfterRestore = await text(page, '[data-testid=flag-state]');

// 7b. A segment from a pasted list of keys.
await page.goto(`${base}/projects/default/segments?env=production`);
await page.fill('form[action$="/segments"] input[name=name]', 'Beta testers');
await page.fill('input[name=key]', 'beta-testers');
await Promise.all([page.waitForNavigation(), page.click('form[action$="/segments"] button[type=submit]')]);
await page.waitForSelector('[aria-label="Always include user keys"]');
await page.fill('[aria-label="Always include user keys"]', 'anna\nbob, carla');
await page.click('#segment-editor .ed-footer button.primary');
report.segmentDiff = await reviewAndSave(page, {
  expectInDiff: ['3 user keys included: anna, bob, carla'],
  comment: 'Beta testers',
  confirmKey: 'beta-testers',
});
report.segmentSummary = await text(page, '[data-testid=summary]');

// 8. Live: a change made elsewhere (the API) reaches the open page, which reloads itself.
await page.goto(report.flagUrl);
const before = await api('GET', '/projects/default/environments/production/flags/new-checkout');
await page.waitForTimeout(300); // the page's EventSource is open
await api('PUT', '/projects/default/environments/production/flags/new-checkout', { ...withoutVersion(before), on: true }, before.version);
await page.waitForFunction(() => document.querySelector('[data-testid=flag-state]')?.textContent.trim() === 'ON', null, { timeout: 10000 });
report.liveState = await text(page, '[data-testid=flag-state]');

// 9. Conflict: unsaved edits, then someone else saves; saving shows the conflict and a
// review against their version, after which the save goes through.
await page.waitForSelector('[data-testid=add-rule]');
await page.locator('[aria-label="User keys served true"]').fill('qa-anna');
const current = await api('GET', '/projects/default/environments/production/flags/new-checkout');
await api('PUT', '/projects/default/environments/production/flags/new-checkout', { ...withoutVersion(current), offVariation: 0 }, current.version);
await page.waitForFunction(() => !document.getElementById('live-banner').hidden, null, { timeout: 10000 });
report.conflictBanner = await text(page, '#live-banner');
await page.click('[data-testid=review-save]');
await page.waitForSelector('#review[open]');
await page.fill('#review-confirm', 'new-checkout');
await page.click('#review-save');
await page.waitForSelector('#review-rebase:not([hidden])');
report.conflictMessage = await text(page, '#review-error');
await page.click('#review-rebase');
await page.waitForFunction(() => document.querySelector('#review-error').hidden);
report.rebasedDiff = await text(page, '#review-diff');
await page.fill('#review-confirm', 'new-checkout');
await Promise.all([page.waitForNavigation(), page.click('#review-save')]);
report.summaryAfterConflict = await text(page, '[data-testid=summary]');

// 10. Sign out; a reader sees no way to change anything, and the server refuses if they try.
await Promise.all([page.waitForNavigation(), page.click('form[action="/sign-out"] button')]);
expect(page.url().includes('/sign-in'), `signed out to the sign-in page (at ${page.url()})`);
await page.goto(report.flagUrl);
expect(page.url().includes('/sign-in'), 'a signed-out visitor is sent to sign in');
await page.fill('input[name=email]', reader.email);
await page.fill('input[name=password]', reader.password);
await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
expect(page.url().includes('/flags/new-checkout'), `after sign-in the reader is back on the flag (at ${page.url()})`);
report.readerRole = await text(page, '[data-testid=role]');
report.readerControls = {
  toggle: await page.locator('#toggle').count(),
  editor: await page.locator('#editor').count(),
  createFlag: await page.locator('[data-testid=new-flag]').count(),
  archive: await page.locator('form[action$="/archive"]').count(),
};
await shot(page, '07-reader-view');
report.readerSave = await page.evaluate(async () => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const data = JSON.parse(document.getElementById('editor-data').textContent);
  const response = await fetch(data.saveUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
    body: JSON.stringify({ environment: 'production', targeting: { ...data.targeting, on: false }, version: data.version, comment: 'reader' }),
  });
  return { status: response.status, body: await response.json() };
});
await page.goto(`${base}/projects/default/flags?env=production`);
report.readerCreateFlagLink = await page.locator('[data-testid=new-flag]').count();
report.listRow = await text(page, 'tr[data-flag="new-checkout"]');
await shot(page, '08-flags-list');

} catch (e) {
  // Say where it happened and what the page showed.
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
