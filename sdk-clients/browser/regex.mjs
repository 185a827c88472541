// An invalid regular expression is said where it is typed, in Debian's headless chromium
// (playwright-core): a rule's condition set to "matches regex", a broken pattern marks the field
// and says why, a valid one clears it. Run by crates/flagstaff/tests/it/dashboard_product.rs
// with {"base", "user", "flag"} on stdin; prints one JSON report; a failed expectation throws.
import { launch, readInput } from './common.mjs';

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
  await page.goto(`${base}/projects/default/flags/${flag}?env=test`);
  await page.waitForSelector('[data-testid=add-rule]');
  await page.click('[data-testid=add-rule]');
  const rule = page.locator('.ed-rule[data-rule-index="0"]');
  await rule.locator('select[aria-label=Operator]').selectOption('matches');
  const values = rule.locator('[aria-label=Values]');
  await values.fill('([a-z');
  report.invalid = await values.getAttribute('aria-invalid');
  report.message = (await rule.locator('.field-error').textContent()).trim();
  report.shown = await rule.locator('.field-error').isVisible();
  await values.fill('^[a-z]+@example\\.com$');
  report.invalidAfterFix = await values.getAttribute('aria-invalid');
  report.shownAfterFix = await rule.locator('.field-error').isVisible();
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
