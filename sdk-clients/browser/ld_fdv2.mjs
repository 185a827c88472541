// LaunchDarkly's browser SDK v4 with its FDv2 data system (npm @launchdarkly/js-client-sdk,
// `dataSystem: {}`, streaming on) in Debian's headless chromium against Flagstaff, from a page
// on another origin. The page shows a flag's value; the script changes the flag through the
// management API and waits for the page to show the new value, then turns the environment's
// FDv1 fallback on and waits for the SDK to poll FDv1 instead. Run by
// crates/flagstaff/tests/it/fdv2_web.rs with {"url", "api", "token", "targeting", "change",
// "environment", "expect": [before, after]} on stdin; prints {"before", "after", "ms", "flags",
// "requests", "fallbackRequests", "fallbackValue", "logsBefore" (the SDK's log before the switch),
// "logs"}; a failed expectation throws.
import { launch, readInput, expect } from './common.mjs';

const input = await readInput();
const browser = await launch();
const page = await browser.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
const requests = [];
page.on('request', (r) => {
  if (r.url().startsWith(input.base)) requests.push(`${r.method()} ${r.url().slice(input.base.length)}`);
});
await page.goto(input.url);
await page.waitForFunction(() => window.__ready || window.__failed, null, { timeout: 15000 });
const logs = () => page.evaluate(() => window.__logs);
const failed = await page.evaluate(() => window.__failed);
expect(!failed, `the SDK failed to start: ${failed} ${errors.join(' ')} ${(await logs()).join('\n')}`);
const value = () => page.evaluate(() => document.getElementById('theme').textContent);
const before = await value();
expect(before === input.expect[0], `before the change the page shows ${before}`);
const flags = JSON.parse(await page.evaluate(() => document.getElementById('flags').textContent));
// Wait until the stream is open before changing anything.
for (let i = 0; i < 100 && !requests.some((r) => r.includes('/sdk/stream/eval/')); i++) await page.waitForTimeout(50);
await page.waitForTimeout(300);

const api = (path, init = {}) => fetch(`${input.api}${path}`, {
  ...init,
  headers: { Authorization: `Bearer ${input.token}`, 'Content-Type': 'application/json', ...(init.headers || {}) },
});
const current = await (await api(input.targeting)).json();
const started = Date.now();
const changed = await api(input.targeting, {
  method: 'PUT', headers: { 'If-Match': `"${current.version}"` }, body: JSON.stringify(input.change),
});
expect(changed.ok, `the change was accepted: ${changed.status}`);
await page.waitForFunction((want) => document.getElementById('theme').textContent === want,
  input.expect[1], { timeout: 10000 });
const ms = Date.now() - started;
const after = await value();
const seen = requests.length;
const logsBefore = await logs();

// The FDv1 fallback switch: the open stream says goodbye, and the SDK goes to FDv1.
const environment = await (await api(input.environment)).json();
const switched = await api(input.environment, {
  method: 'PUT', headers: { 'If-Match': `"${environment.version}"` },
  body: JSON.stringify({ name: environment.name, fdv1Fallback: true }),
});
expect(switched.ok, `the fallback switch was accepted: ${switched.status}`);
for (let i = 0; i < 200 && !requests.slice(seen).some((r) => r.includes('/sdk/evalx/')); i++) await page.waitForTimeout(50);
const fallbackRequests = requests.slice(seen);
const fallbackValue = await value();
const finalLogs = await logs();
await browser.close();
console.log(JSON.stringify({
  before, after, ms, flags, requests: requests.slice(0, seen), fallbackRequests, fallbackValue,
  errors, logsBefore, logs: finalLogs,
}));
