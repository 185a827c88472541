// A big segment made and filled from the dashboard in Debian's headless chromium
// (playwright-core), as a person would: the "Big segment" box ticked on the segments page, then
// a file chosen in the segment page's upload form and sent, the counts read back after the page
// follows the change. Run by crates/flagstaff/tests/it/dashboard_segments.rs with
// {"base", "user": {"email", "password"}, "list"} on stdin; prints one JSON report; a failed
// expectation throws.
import { expect, launch, readInput, signedInPage, text } from './common.mjs';

const { base, user, list } = await readInput();
const report = {};
const browser = await launch();

try {
  const { page, consoleErrors } = await signedInPage(browser, base, user);
  await page.goto(`${base}/projects/default/segments?env=test`);
  await page.fill('input[name=name]', 'Loyal customers');
  await page.fill('input[name=key]', 'loyal');
  await page.check('[data-testid=big-segment]');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Create segment")')]);
  report.includedBefore = await text(page, '[data-testid=big-included]');
  await page.setInputFiles('form[data-upload-list] input[type=file]', {
    name: 'loyal.csv', mimeType: 'text/csv', buffer: Buffer.from(list),
  });
  // The upload's answer shows beside the form; the live-update stream then reloads the page.
  const reloaded = page.waitForNavigation({ timeout: 15000 }).catch(() => null);
  await page.click('form[data-upload-list] button[type=submit]');
  await reloaded;
  await page.waitForFunction(() => document.querySelector('[data-testid=big-included]')?.textContent.trim() !== '0', null, { timeout: 15000 });
  report.includedAfter = await text(page, '[data-testid=big-included]');
  report.excludedAfter = await text(page, '[data-testid=big-excluded]');
  report.consoleErrors = consoleErrors;
  expect(report.includedAfter !== '0', 'the counts follow the upload');
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
