// Drives LaunchDarkly's browser SDK (npm launchdarkly-js-client-sdk v3) in Debian's headless
// chromium through playwright-core, for Flagstaff's tests. One JSON command per stdin line, one
// JSON answer per stdout line (like ../node/driver.mjs).
//
// Commands:
//   {"cmd":"open","id","url"}           load a test page (it initializes the SDK itself) and
//                                       wait until it reports ready or failed
//   {"cmd":"flags","id"}                the SDK's allFlags()
//   {"cmd":"details","id","evaluations":[{"flagKey","default"}]}  variationDetail() each
//   {"cmd":"identify","id","context"}   switch context, then allFlags()
//   {"cmd":"waitFor","id","flagKey","value","timeoutMs"}  until variation(flagKey) equals value
//   {"cmd":"click","id","selector"}     once the SDK has its goals, click an element of the page
//   {"cmd":"flush","id"}                the SDK's flush() (sends its queued events now)
//   {"cmd":"received","id"}             what the page received from Flagstaff: polling bodies
//                                       and stream events, as the page's own code saw them
//   {"cmd":"close","id"} / {"cmd":"quit"}
import readline from 'node:readline';
import { chromium } from 'playwright-core';

// FLAGSTAFF_BROWSER_TRUSTED_SPKI: the base64 SHA-256 of a server key's SubjectPublicKeyInfo
// that chromium accepts for HTTPS (a test's throwaway certificate); nothing else is trusted
// beyond chromium's own store.
const trusted = process.env.FLAGSTAFF_BROWSER_TRUSTED_SPKI;
const browser = await chromium.launch({
  executablePath: process.env.FLAGSTAFF_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    ...(trusted ? [`--ignore-certificate-errors-spki-list=${trusted}`] : [])],
});
const pages = new Map();
process.on('unhandledRejection', (e) => process.stderr.write(`browser driver: unhandled ${e && e.stack || e}\n`));

async function handle(command) {
  const page = pages.get(command.id);
  switch (command.cmd) {
    case 'open': {
      const context = await browser.newContext();
      const p = await context.newPage();
      const received = [];
      p.on('response', async (response) => {
        const url = response.url();
        if (url.includes('/sdk/evalx/') || url.includes('/sdk/goals/')) {
          try { received.push({ url, status: response.status(), body: await response.text() }); }
          catch (e) { received.push({ url, status: response.status(), body: null }); }
        }
      });
      p.on('console', (m) => { if (m.type() === 'error') process.stderr.write(`page: ${m.text()}\n`); });
      pages.set(command.id, { page: p, context, received });
      await p.goto(command.url);
      await p.waitForFunction(() => window.__ready !== undefined, null, { timeout: 15000 });
      return { ready: await p.evaluate(() => window.__ready), failure: await p.evaluate(() => window.__failure || null) };
    }
    case 'flags':
      return { flags: await page.page.evaluate(() => window.client.allFlags()) };
    case 'details':
      return {
        results: await page.page.evaluate((evaluations) =>
          evaluations.map((e) => window.client.variationDetail(e.flagKey, e.default)), command.evaluations),
      };
    case 'identify':
      return {
        flags: await page.page.evaluate(async (context) => {
          await window.client.identify(context);
          return window.client.allFlags();
        }, command.context),
      };
    case 'waitFor': {
      try {
        await page.page.waitForFunction(
          ([key, value]) => JSON.stringify(window.client.variation(key, null)) === JSON.stringify(value),
          [command.flagKey, command.value], { timeout: command.timeoutMs || 5000 });
        return { reached: true };
      } catch (e) {
        return { reached: false };
      }
    }
    case 'click':
      // The SDK fetches its goals after it is ready and only then listens for clicks; a click
      // before that is not a goal event, so wait until the goals are in place.
      await page.page.evaluate(() => window.client.waitUntilGoalsReady());
      await page.page.click(command.selector);
      return {};
    case 'flush':
      await page.page.evaluate(() => window.client.flush());
      return {};
    case 'received':
      return { responses: page.received, events: await page.page.evaluate(() => window.__events) };
    case 'close':
      await page.context.close();
      pages.delete(command.id);
      return {};
    case 'quit':
      return { quit: true };
    default:
      return { error: `unknown command ${command.cmd}` };
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await handle(JSON.parse(line));
  } catch (e) {
    answer = { error: String(e && e.stack || e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
  if (answer.quit) break;
}
await browser.close();
