// Single sign-on in Debian's headless chromium (playwright-core): from Flagstaff's sign-in
// page through a real OpenID Provider (npm oidc-provider, oidc-provider.mjs) and back, signed
// in; then the same callback replayed, which Flagstaff must refuse. Run by
// crates/flagstaff/tests/it/sso.rs with {"base", "login"} on stdin; prints one JSON report.
import { expect, launch, readInput, text } from './common.mjs';

const input = await readInput();
const { base, login } = input;
const report = {};
const browser = await launch();
const page = await (await browser.newContext()).newPage();
let callback = null;
const visited = [];
page.on('framenavigated', (f) => { if (f === page.mainFrame()) visited.push(f.url()); });
page.on('request', (r) => { if (r.url().includes('/sso/callback')) callback = r.url(); });
try {
  await page.goto(`${base}/sign-in`);
  report.passwordForm = await page.locator('input[name=password]').count();
  await page.click('[data-testid=sso]');
  // The provider's own login page, then its consent page.
  await page.waitForSelector('input[name=login]');
  report.providerHost = new URL(page.url()).host;
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  for (let i = 0; i < 3 && !page.url().startsWith(base); i += 1) {
    await page.waitForLoadState();
    if (page.url().startsWith(base)) break;
    const consent = page.locator('button[type=submit]');
    if (await consent.count()) await Promise.all([page.waitForNavigation(), consent.first().click()]);
  }
  await page.waitForURL((url) => url.toString().startsWith(base) && !url.toString().includes('/sso/'));
  report.landedAt = new URL(page.url()).pathname;
  report.role = await text(page, '[data-testid=role]');
  expect(callback, 'the provider sent the browser to /sso/callback');
  // The same callback again: its flow cookie is spent, so it is refused.
  const replay = await page.goto(callback);
  report.replayStatus = replay.status();
  report.replayMessage = await text(page, '.alert.error');
} catch (e) {
  const shown = await page.locator('body').innerText().catch(() => '');
  throw new Error(`${e.stack}\nat ${page.url()}\nvisited: ${visited.join('\n')}\npage: ${shown.slice(0, 3000)}`);
}
await browser.close();
process.stdout.write(JSON.stringify(report));
