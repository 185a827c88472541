// Compare a flag's targeting between environments and copy it, in Debian's headless chromium
// (playwright-core): from Test's flag page, "Compare" with Production, read both sides and the
// diff, then copy Test's targeting onto Production (critical: the flag key typed). Run by
// crates/flagstaff/tests/it/dashboard_compare.rs with {"base", "user", "flag"} on stdin; prints
// one JSON report; a failed expectation throws.
import { launch, readInput, text } from './common.mjs';

const { base, user, flag } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
const submit = (selector) => Promise.all([page.waitForNavigation(), page.click(selector)]);

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.goto(`${base}/projects/default/flags/${flag}?env=test`);
  await submit('[data-testid=flag-compare]');
  await page.selectOption('select[name=with]', 'production');
  await submit('form.filters button[type=submit]');
  report.source = await page.locator('[data-testid=source] li').allTextContents();
  report.target = await page.locator('[data-testid=target] li').allTextContents();
  report.diff = await page.locator('[data-testid=copy-diff] li').allTextContents();
  // Without the key nothing is copied.
  await page.fill('[data-testid=copy-targeting] input[name=comment]', 'same as test');
  await page.evaluate(() => document.querySelector('[data-testid=copy-confirm]').removeAttribute('required'));
  await submit('[data-testid=copy-save]');
  report.refusal = await text(page, '[data-testid=form-error]');
  await page.fill('[data-testid=copy-targeting] input[name=comment]', 'same as test');
  await page.fill('[data-testid=copy-confirm]', flag);
  await submit('[data-testid=copy-save]');
  report.landedOn = new URL(page.url()).search;
  report.summaryAfter = await page.locator('[data-testid=summary] li').allTextContents();
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
