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
