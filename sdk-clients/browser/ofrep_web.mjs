// OpenFeature's OFREP web provider (npm @openfeature/ofrep-web-provider, with polling off) in
// Debian's headless chromium against Flagstaff: the page shows a flag's value; the script then
// changes the flag through the management API and waits for the page to show the new value,
// which can only arrive through the OFREP event stream (ADR-0008). Run by
// crates/flagstaff/tests/it/ofrep_web.rs with {"url", "api", "token", "targeting", "change",
// "expect": [before, after]} on stdin; prints {"before", "after", "ms", "bulkRequests",
// "eventStreams"}; a failed expectation throws.
import { launch, readInput, expect } from './common.mjs';

const input = await readInput();
const browser = await launch();
const page = await browser.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
const eventStreams = [];
page.on('request', (r) => { if (r.url().includes('/ofrep/v1/events/')) eventStreams.push(r.url()); });
await page.goto(input.url);
await page.waitForFunction(() => window.__ready || window.__failed, null, { timeout: 10000 });
const failed = await page.evaluate(() => window.__failed);
expect(!failed, `the provider failed to start: ${failed} ${errors.join(' ')}`);
const value = () => page.evaluate(() => document.getElementById('theme').textContent);
const before = await value();
expect(before === input.expect[0], `before the change the page shows ${before}`);
// Wait until the provider has its event stream open before changing anything.
for (let i = 0; i < 100 && eventStreams.length === 0; i++) await page.waitForTimeout(50);
expect(eventStreams.length > 0, 'the provider opened the event stream the bulk answer named');
await page.waitForTimeout(300);

const current = await (await fetch(`${input.api}${input.targeting}`, {
  headers: { Authorization: `Bearer ${input.token}` },
})).json();
const started = Date.now();
const changed = await fetch(`${input.api}${input.targeting}`, {
  method: 'PUT',
  headers: { Authorization: `Bearer ${input.token}`, 'Content-Type': 'application/json', 'If-Match': `"${current.version}"` },
  body: JSON.stringify(input.change),
});
expect(changed.ok, `the change was accepted: ${changed.status}`);
await page.waitForFunction((want) => document.getElementById('theme').textContent === want,
  input.expect[1], { timeout: 10000 });
const ms = Date.now() - started;
const after = await value();
const bulkRequests = await page.evaluate(() => window.__bulkRequests);
await browser.close();
console.log(JSON.stringify({ before, after, ms, bulkRequests, eventStreams, errors }));
