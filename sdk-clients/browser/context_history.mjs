// Test a context with the form, and the history's filters, local times and restore comment,
// in Debian's headless chromium (playwright-core) with the browser in New York's time zone.
// Run by crates/flagstaff/tests/it/dashboard_product.rs with {"base", "user", "flag"} on
// stdin; prints one JSON report; a failed expectation throws.
import { launch, readInput, text } from './common.mjs';

const { base, user, flag } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: 'America/New_York' })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);

  // A user of organization acme, built in the form: a multi-context, every environment.
  await page.goto(`${base}/projects/default/test?env=production`);
  await page.fill('[aria-label="Context 1 key"]', 'ada');
  await page.fill('[aria-label="Context 1 attributes"]', 'country = DE\nage = 42');
  await page.fill('[aria-label="Context 2 kind"]', 'organization');
  await page.fill('[aria-label="Context 2 key"]', 'acme');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=evaluate-built]')]);
  report.columns = await page.locator('[data-testid=outcomes] thead th').allTextContents();
  const row = page.locator(`tr[data-flag="${flag}"]`);
  report.served = await row.locator('td strong').allTextContents();
  report.reasons = await row.locator('td .reason').allTextContents();
  report.builtJson = JSON.parse(await page.inputValue('#context'));

  // The project's history, filtered to targeting changes by the member.
  await page.goto(`${base}/projects/default/history`);
  report.allChanges = await page.locator('[data-testid=history] > li').count();
  await page.fill('[data-testid=history-filters] input[name=actor]', user.email);
  await page.selectOption('[data-testid=history-filters] select[name=resource]', 'targeting');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=history-filters] button')]);
  report.filteredChanges = await page.locator('[data-testid=history] > li').count();
  report.filteredActors = await page.locator('[data-testid=history] .change-head strong').allTextContents();
  const time = page.locator('[data-testid=history] time').first();
  report.localTime = (await time.textContent()).trim();
  report.utcTitle = await time.getAttribute('title');

  // Restoring an earlier version says where it comes from.
  await page.goto(`${base}/projects/default/flags/${flag}/history?env=production`);
  await page.locator('button.restore').last().click();
  await page.waitForSelector('#review[open]');
  report.restoreComment = await page.inputValue('#review-comment');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
