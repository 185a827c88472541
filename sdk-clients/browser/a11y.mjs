// Every dashboard page, checked in Debian's headless chromium (playwright-core) at 1280 and
// 390 px: axe-core's rules (serious and critical violations are reported), horizontal
// overflow (`scrollWidth > innerWidth`), header items cut off at 1280 px, console errors
// (a Content-Security-Policy refusal is one) and the page's size. axe runs through the
// DevTools protocol, so the page's own CSP stays in force for everything else.
// Open dialogs are checked the same way ("dialogs": the review dialog of a flag's kill
// switch, say). Run by crates/flagstaff/tests/it/dashboard_a11y.rs with {"base", "user",
// "pages", "dialogs"?, "screenshots"?} on stdin; prints one JSON report; a failed navigation
// throws.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { launch, readInput } from './common.mjs';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { base, user, pages, dialogs = [], screenshots } = await readInput();
const browser = await launch();
const report = { pages: [], dialogs: [] };

for (const width of [1280, 390]) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  let consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/sign-in`);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  for (const path of pages) {
    consoleErrors = [];
    const response = await page.goto(`${base}${path}`);
    const bytes = (await response.body()).length;
    await page.waitForLoadState('networkidle').catch(() => {});
    await page.evaluate(axeSource);
    const axe = await page.evaluate(async () => {
      const result = await window.axe.run(document, { resultTypes: ['violations'] });
      return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    const layout = await page.evaluate(() => {
      const tabs = document.querySelector('header .tabs');
      const box = tabs ? tabs.getBoundingClientRect() : null;
      const hidden = tabs && window.innerWidth >= 1000
        ? [...tabs.querySelectorAll('a')]
          .filter((a) => { const r = a.getBoundingClientRect(); return r.right > Math.min(box.right, window.innerWidth) + 1 || r.width === 0; })
          .map((a) => a.textContent.trim())
        : [];
      // What sticks out on the right, outermost first (for the failure message).
      const name = (e) => e.tagName.toLowerCase() + (e.id ? `#${e.id}` : '') + (e.className && typeof e.className === 'string' ? `.${e.className.trim().split(/\s+/).join('.')}` : '');
      const offenders = [];
      for (const e of document.body.querySelectorAll('*')) {
        if (offenders.length >= 5) break;
        if (e.getBoundingClientRect().right > window.innerWidth + 1 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > window.innerWidth + 1)) {
          offenders.push(`${name(e.parentElement)} > ${name(e)}`);
        }
      }
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, hiddenTabs: hidden, offenders };
    });
    if (screenshots) {
      const name = path.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '');
      await page.screenshot({ path: `${screenshots}/${width}-${name}.png`, fullPage: false });
    }
    report.pages.push({ path, width, status: response.status(), bytes, axe, ...layout, consoleErrors });
    // On a phone the sections sit behind "Menu": hidden at first, shown by the button.
    if (width < 760 && report.menu === undefined) {
      const visible = () => page.evaluate(() => document.querySelector('header .tabs').getBoundingClientRect().height > 0);
      const before = await visible();
      await page.click('.menu-toggle');
      report.menu = { hiddenAtFirst: !before, shownByButton: await visible(),
        expanded: await page.getAttribute('.menu-toggle', 'aria-expanded') };
    }
  }
  // Dialogs, open: `{path, open, dialog}` — go to the page, click `open`, wait until `dialog`
  // is open and filled, run axe on the dialog alone, check the page does not scroll sideways,
  // then close it with Escape.
  for (const { path, open, dialog } of dialogs) {
    consoleErrors = [];
    await page.goto(`${base}${path}`);
    await page.click(open);
    await page.waitForSelector(`${dialog}[open]`);
    await page.waitForFunction((d) => document.querySelector(d).textContent.trim().length > 0, dialog);
    await page.waitForLoadState('networkidle').catch(() => {});
    await page.evaluate(axeSource);
    const axe = await page.evaluate(async (d) => {
      const result = await window.axe.run(document.querySelector(d), { resultTypes: ['violations'] });
      return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    }, dialog);
    const layout = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    if (screenshots) {
      const name = `${path}-${dialog}`.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '');
      await page.screenshot({ path: `${screenshots}/${width}-${name}.png`, fullPage: false });
    }
    await page.keyboard.press('Escape');
    const closed = await page.evaluate((d) => !document.querySelector(d).open, dialog);
    report.dialogs.push({ path, dialog, width, axe, ...layout, closedByEscape: closed, consoleErrors });
  }
  await context.close();
}
await browser.close();
process.stdout.write(JSON.stringify(report));
