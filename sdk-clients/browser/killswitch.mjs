// The kill switch by keyboard alone, in Debian's headless chromium (playwright-core): Tab to
// "Turn off in Production", Enter opens the confirmation with focus in it, Escape cancels and
// gives focus back, a wrong key and Enter save nothing, the right key and Enter turn it off.
// Run by crates/flagstaff/tests/it/dashboard_product.rs with {"base", "flag", "user"} on stdin;
// prints one JSON report; a failed expectation throws.
import { expect, launch, readInput, text } from './common.mjs';

const { base, flag, user } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
const active = () => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName));

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.goto(`${base}/projects/default/flags/${flag}?env=production`);
  report.stateBefore = await text(page, '[data-testid=flag-state]');
  // Every section of the header is visible at 1280 px (none cut off or behind a scrollbar).
  report.hiddenTabs = await page.evaluate(() => {
    const tabs = document.querySelector('header .tabs').getBoundingClientRect();
    return [...document.querySelectorAll('header .tabs a')]
      .filter((a) => { const r = a.getBoundingClientRect(); return r.right > Math.min(tabs.right, window.innerWidth) + 1 || r.width === 0; })
      .map((a) => a.textContent.trim());
  });
  report.overflows = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);

  // Tab to the kill switch.
  let tabs = 0;
  while ((await active()) !== 'toggle' && tabs < 60) {
    await page.keyboard.press('Tab');
    tabs += 1;
  }
  report.tabs = tabs;
  expect(await active() === 'toggle', `Tab reaches the kill switch (stopped at ${await active()})`);
  report.toggleLabel = await text(page, '#toggle');

  // Enter opens the confirmation with focus in it; Escape cancels and gives focus back.
  await page.keyboard.press('Enter');
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0);
  report.focusInDialog = await active();
  report.saveLabel = await text(page, '#review-save');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('#review').open);
  report.focusAfterEscape = await active();

  // A wrong key and Enter: nothing happens, the dialog stays.
  await page.keyboard.press('Enter');
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0);
  await page.keyboard.type('not-the-key');
  await page.keyboard.press('Enter');
  await page.waitForTimeout(300);
  report.openAfterWrongKey = await page.evaluate(() => document.querySelector('#review').open);

  // The right key and Enter turn it off.
  await page.keyboard.press('Control+A');
  await page.keyboard.type(flag);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  report.stateAfter = await text(page, '[data-testid=flag-state]');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
