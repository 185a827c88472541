// A flag's settings edited in the dashboard, in Debian's headless chromium (playwright-core):
// removing a variation that the default rule still serves is refused naming where; then the
// served "blue" moves to the top, an unused variation is removed and another renamed, reviewed
// in words and saved. Run by crates/flagstaff/tests/it/dashboard_product.rs with
// {"base", "flag", "user"} on stdin; prints one JSON report (the Rust test checks targeting
// through the API); a failed expectation throws.
import { expect, launch, readInput, text } from './common.mjs';

const { base, flag, user } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
const submit = (selector) => Promise.all([page.waitForNavigation(), page.click(selector)]);

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.goto(`${base}/projects/default/flags/${flag}?env=production`);
  await submit('[data-testid=flag-settings-link]');
  report.rowsAtStart = await page.locator('[data-testid=variation-row]').count();
  report.overflowsAt390 = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);

  // Green (variation 2) is what the default rule serves in Production: refused, nothing saved.
  await submit('button[aria-label="Remove variation 2"]');
  await submit('button[value=review]');
  report.reviewOfRemoval = await text(page, '[data-testid=settings-review]');
  await submit('[data-testid=save-settings]');
  report.refusal = await text(page, '[data-testid=form-error]');

  // Start again from what is saved: blue up to the top, pink removed, red renamed.
  await page.goto(`${base}/projects/default/flags/${flag}/settings?env=production`);
  await submit('button[aria-label="Move variation 3 up"]');
  await submit('button[aria-label="Move variation 2 up"]');
  await submit('button[aria-label="Remove variation 4"]');
  await page.fill('input[aria-label="Variation 2 name"]', 'Classic red');
  await page.fill('input[name=name]', 'Button colour');
  await submit('button[value=review]');
  report.review = await page.locator('[data-testid=settings-review] li').allTextContents();
  await page.fill('[data-testid=settings-review] input[name=comment]', 'blue first');
  await submit('[data-testid=save-settings]');
  report.savedAt = new URL(page.url()).pathname;
  report.title = await text(page, 'h1');
  report.summary = await text(page, '[data-testid=summary]');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
