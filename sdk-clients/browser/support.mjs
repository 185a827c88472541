// A support person in Debian's headless chromium (playwright-core): joins through an
// invitation link, opens a production flag, reads what their roles allow, turns the flag off
// with the kill switch (typing the key, as a critical environment asks), and is refused when
// their page tries to change a rule. Run by crates/flagstaff/tests/it/dashboard.rs with
// {"base", "invitation": "/invite/...", "flag": "/projects/.../flags/...", "key", "password"}
// on stdin; prints one JSON report; a failed expectation throws.
import { expect, launch, readInput, text } from './common.mjs';

const input = await readInput();
const { base, invitation, flag, key, password } = input;
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
try {
  // 1. The invitation: their own name and password, then they are signed in.
  await page.goto(`${base}${invitation}`);
  report.invitedAs = await text(page, 'main p');
  await page.fill('input[name=name]', 'Sam Support');
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  expect(!page.url().includes('/invite/'), `joined and left the invitation page (at ${page.url()})`);
  report.role = await text(page, '[data-testid=role]');

  // 2. The flag in production: what the roles allow, and the kill switch.
  await page.goto(`${base}${flag}?env=production`);
  report.accessNote = await text(page, '[data-testid=access-note]');
  report.stateBefore = await text(page, '[data-testid=flag-state]');
  await page.click('#toggle');
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0);
  report.toggleDiff = await text(page, '#review-diff');
  expect(await page.locator('#review-save').isDisabled(), 'a critical environment asks for the typed key first');
  await page.fill('#review-confirm', key);
  await page.fill('#review-comment', 'incident: checkout errors');
  await Promise.all([page.waitForNavigation(), page.click('#review-save')]);
  report.stateAfter = await text(page, '[data-testid=flag-state]');

  // 3. A rule change from the same page is refused by the server, naming what to ask for (the
  // browser logs that 403; nothing before it may log an error).
  report.consoleErrorsBeforeRefusal = consoleErrors.slice();
  report.ruleSave = await page.evaluate(async () => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const data = JSON.parse(document.getElementById('editor-data').textContent);
    const rules = [{ variation: 0, clauses: [{ attribute: 'key', op: 'in', values: ['x'] }] }];
    const response = await fetch(data.saveUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ environment: 'production', targeting: { ...data.targeting, rules }, version: data.version, comment: 'try' }),
    });
    return { status: response.status, body: await response.json() };
  });
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
