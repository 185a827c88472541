// What the browser scripts (dashboard.mjs, support.mjs, sso.mjs) share: their JSON input on
// stdin, Debian's headless chromium through playwright-core, and small helpers. A failed
// expectation throws, which fails the Rust test that runs the script.
import { chromium } from 'playwright-core';

export async function readInput() {
  return JSON.parse(await new Promise((resolve) => {
    let text = '';
    process.stdin.on('data', (d) => { text += d; });
    process.stdin.on('end', () => resolve(text));
  }));
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.FLAGSTAFF_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

export function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

// The text of the first element matching `selector`, with whitespace collapsed.
export async function text(page, selector) {
  return (await page.locator(selector).first().textContent() || '').replace(/\s+/g, ' ').trim();
}

// A 1280×900 page signed in as `user` ({email, password}) through the sign-in form, and the
// console errors the page reports from then on.
export async function signedInPage(browser, base, user) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  return { page, consoleErrors };
}
