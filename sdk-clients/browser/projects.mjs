// Projects and environments made in the dashboard, in Debian's headless chromium
// (playwright-core): a project created from its name gets Production and Test with keys shown
// once; an environment is added, renamed and coloured, its FDv1 fallback switched on and off, then
// deleted behind a typed
// confirmation (a wrong key is refused); the header's project switcher changes project.
// Run by crates/flagstaff/tests/it/dashboard_product.rs with {"base", "user"} on stdin; prints
// one JSON report; a failed expectation throws.
import { launch, readInput, text } from './common.mjs';

const { base, user } = await readInput();
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
  await page.goto(`${base}/projects`);
  await page.fill('[data-testid=new-project] input[name=name]', 'Web Shop');
  await submit('[data-testid=new-project] button[type=submit]');
  report.afterCreate = new URL(page.url()).pathname;
  report.environments = await page.locator('section.env h2').allTextContents();
  report.revealed = await page.locator('[data-testid=new-key]').allTextContents();

  await page.fill('[data-testid=new-environment] input[name=name]', 'Staging');
  await submit('[data-testid=new-environment] button[type=submit]');
  report.revealedForStaging = await page.locator('[data-testid=new-key]').count();
  await page.fill('input[aria-label="Name of staging"]', 'Staging EU');
  await page.fill('input[aria-label="Colour of staging"]', '#22aa55');
  await submit('section[aria-labelledby=env-staging] button:has-text("Save settings")');
  report.renamed = await text(page, '#env-staging');
  // The FDv1 fallback switch, on and then off again.
  await page.check('section[aria-labelledby=env-staging] input[name=fdv1_fallback]');
  await submit('section[aria-labelledby=env-staging] button:has-text("Save settings")');
  report.withFallback = await text(page, '#env-staging');
  report.fallbackChecked = await page.isChecked('section[aria-labelledby=env-staging] input[name=fdv1_fallback]');
  await page.uncheck('section[aria-labelledby=env-staging] input[name=fdv1_fallback]');
  await submit('section[aria-labelledby=env-staging] button:has-text("Save settings")');
  report.withoutFallback = await text(page, '#env-staging');
  report.swatch = await page.locator('#env-staging svg circle').getAttribute('fill');

  await page.click('section[aria-labelledby=env-staging] details.danger-zone summary');
  await page.fill('input[aria-label="Type staging to confirm"]', 'stagin');
  await submit('button:has-text("Delete environment staging")');
  report.wrongConfirmation = await text(page, '[role=alert]');
  report.stillThere = await page.locator('#env-staging').count();
  await page.click('section[aria-labelledby=env-staging] details.danger-zone summary');
  await page.fill('input[aria-label="Type staging to confirm"]', 'staging');
  await submit('button:has-text("Delete environment staging")');
  report.afterDelete = await page.locator('section.env h2').allTextContents();

  await Promise.all([page.waitForNavigation(), page.selectOption('#project-switch', 'default')]);
  report.switchedTo = new URL(page.url()).pathname;
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
