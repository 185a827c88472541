// An entitlement set from the context's side, in Debian's headless chromium (playwright-core):
// "Test a context" for a user of organization acme, then, in Production's cell of the flag,
// "serve true to organization acme" with the flag key typed (Production is critical); the page
// comes back showing it. Run by crates/flagstaff/tests/it/dashboard_entitlements.rs with
// {"base", "user", "flag"} on stdin; prints one JSON report; a failed expectation throws.
import { launch, readInput, text } from './common.mjs';

const { base, user, flag } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.goto(`${base}/projects/default/test?env=production`);
  await page.fill('[aria-label="Context 1 key"]', 'ada');
  await page.fill('[aria-label="Context 2 kind"]', 'organization');
  await page.fill('[aria-label="Context 2 key"]', 'acme');
  await Promise.all([page.waitForNavigation(), page.click('[data-testid=evaluate-built]')]);
  const row = page.locator(`tr[data-flag="${flag}"]`);
  report.before = await row.locator('td strong').allTextContents();

  const form = page.locator(`[data-testid="entitle-${flag}-production"]`);
  await row.locator('td').nth(1).locator('details summary').click();
  await form.locator('select[name=who]').selectOption('organization:acme');
  await form.locator('select[name=variation]').selectOption({ label: 'true' });
  await form.locator('input[name=confirm]').fill(flag);
  await Promise.all([page.waitForNavigation(), form.locator('button[type=submit]').click()]);
  report.backAt = new URL(page.url()).pathname;
  report.after = await row.locator('td strong').allTextContents();
  report.reasonAfter = await text(page, `tr[data-flag="${flag}"] td:nth-child(2) .reason`);
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
