// Every context kind in the editors, in Debian's headless chromium (playwright-core): on a flag
// page in Test, "Target another context kind" adds organizations and serves `true` to acme
// beside an existing user target; on a segment page, "List keys of another context kind" adds
// organizations and includes globex; each through the usual review. Run by
// crates/flagstaff/tests/it/dashboard_entitlements.rs with {"base", "user", "flag", "segment"}
// on stdin; prints one JSON report (the review texts); a failed expectation throws.
import { expect, launch, readInput, text } from './common.mjs';

const { base, user, flag, segment } = await readInput();
const report = {};
const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

async function reviewAndSave(comment) {
  await page.waitForSelector('#review[open]');
  await page.waitForFunction(() => document.querySelector('#review-diff').textContent.length > 0
    || !document.querySelector('#review-error').hidden);
  const diff = await text(page, '#review-diff');
  await page.fill('#review-comment', comment);
  await Promise.all([page.waitForNavigation(), page.click('#review-save')]);
  return diff;
}

try {
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);

  // The flag: an invalid kind is said where it is typed; a valid one gets its own boxes.
  await page.goto(`${base}/projects/default/flags/${flag}?env=test`);
  const kindInput = page.locator('[aria-label="Target another context kind"]');
  await kindInput.waitFor();
  report.kindsOffered = await page.locator('#context-kinds option').evaluateAll((os) => os.map((o) => o.value));
  await kindInput.fill('kind');
  await kindInput.press('Enter');
  report.kindProblem = (await page.locator('.ed-section .field-error:visible').first().textContent()).trim();
  await kindInput.fill('organization');
  await kindInput.press('Enter');
  await page.locator('[aria-label="organization keys served true"]').fill('acme');
  await page.click('[data-testid=review-save]');
  report.flagReview = await reviewAndSave('ACME gets the feature');
  // After the reload the organization's box is there with its key.
  report.flagAfter = await page.locator('[aria-label="organization keys served true"]').inputValue();
  report.userAfter = await page.locator('[aria-label="User keys served true"]').inputValue();

  // The segment: organization keys beside user keys.
  await page.goto(`${base}/projects/default/segments/${segment}?env=test`);
  const listKind = page.locator('[aria-label="List keys of another context kind"]');
  await listKind.waitFor();
  await listKind.fill('organization');
  await listKind.press('Enter');
  await page.locator('[aria-label="Always include organization keys"]').fill('globex\nglobex, initech');
  await page.click('#segment-editor .ed-footer button.primary');
  report.segmentReview = await reviewAndSave('partners by organization');
  report.segmentAfter = await page.locator('[aria-label="Always include organization keys"]').inputValue();
  expect(report.segmentAfter.length > 0, 'the organization keys are shown after saving');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\npage: ${shown.slice(0, 3000)}\nconsole: ${consoleErrors.join('\n')}`);
}
report.consoleErrors = consoleErrors;
await browser.close();
process.stdout.write(JSON.stringify(report));
