// Release workflows in Debian's headless chromium (playwright-core): a writer schedules
// "tomorrow 08:00 Pacific/Auckland" from a flag's page, sees it pending (and badged in the flag
// list), cancels it; in production, which requires approval, their kill-switch change becomes a
// change request; an admin approves and applies it. Run by
// crates/flagstaff/tests/it/dashboard_workflows.rs with {"base", "flag", "writer", "admin"} on
// stdin; prints one JSON report; a failed expectation throws.
import { expect, launch, readInput, text } from './common.mjs';

const { base, flag, writer, admin, screenshots } = await readInput();
const report = {};
const browser = await launch();
// The browser's own time zone is Europe/Berlin, so that picking Auckland is a real choice.
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: 'Europe/Berlin' });
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('dialog', (d) => d.accept());

async function shot(name) {
  if (screenshots) await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true });
}

async function signIn(who) {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', who.email);
  await page.fill('input[name=password]', who.password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

try {
  await signIn(writer);
  // 1. Schedule "tomorrow 08:00" in Auckland, in the test environment.
  await page.goto(`${base}/projects/default/flags/${flag}?env=test`);
  report.defaultZone = await page.inputValue('[data-testid=schedule-zone]');
  await page.click('[data-testid=schedule-form] summary');
  const tomorrow = new Intl.DateTimeFormat('en-CA', { timeZone: 'Pacific/Auckland' }).format(new Date(Date.now() + 86400000));
  report.date = tomorrow;
  await page.fill('[data-testid=schedule-date]', tomorrow);
  await page.fill('[data-testid=schedule-time]', '08:00');
  await page.fill('[data-testid=schedule-zone]', 'Pacific/Auckland');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=schedule-submit]')]);
  report.pending = await text(page, '[data-testid=schedule]');
  await page.click('[data-testid=schedule-form] summary');
  await shot('09-scheduled-change');
  await page.goto(`${base}/projects/default/flags?env=test`);
  report.badge = await text(page, `tr[data-flag="${flag}"] [data-testid=scheduled-badge]`);
  // 2. Cancel it.
  await page.goto(`${base}/projects/default/flags/${flag}?env=test`);
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=schedule] button:has-text("Cancel")')]);
  report.afterCancel = await text(page, '[data-testid=no-schedules]');

  // 3. Production requires approval: the kill switch's change becomes a request.
  await page.goto(`${base}/projects/default/flags/${flag}?env=production`);
  report.approvalNote = await text(page, '[data-testid=approval-note]');
  await page.click('#toggle');
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0);
  report.saveLabel = await text(page, '#review-save');
  await page.fill('#review-confirm', flag);
  await page.fill('#review-comment', 'launch in production');
  await page.fill('#review-reviewers', admin.email);
  await Promise.all([page.waitForNavigation(), page.click('#review-save')]);
  report.requestUrl = page.url();
  report.requestStatus = await text(page, '[data-testid=request-status]');
  report.requestDiff = await text(page, '[data-testid=request-diff]');
  report.reviewers = await text(page, '[data-testid=request-reviewers]');
  report.writerMayApprove = await page.locator('[data-testid=approve]').count();

  // 4. Another member approves and applies it.
  await Promise.all([page.waitForNavigation(), page.click('form[action="/sign-out"] button')]);
  await signIn(admin);
  await page.goto(report.requestUrl);
  await page.fill('[data-testid=review-form] textarea[name=comment]', 'looks right');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=approve]')]);
  report.approvedStatus = await text(page, '[data-testid=request-status]');
  await shot('10-change-request');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=apply]')]);
  report.appliedStatus = await text(page, '[data-testid=request-status]');
  await page.goto(`${base}/projects/default/flags/${flag}?env=production`);
  report.stateAfter = await text(page, '[data-testid=flag-state]');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
