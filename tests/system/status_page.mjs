// status_page.mjs: load upperd's status page (GET / on the stats address)
// in Debian's headless Chromium, driven by playwright-core (no browser
// download), and print what it rendered as one JSON document on stdout.
//
//   node status_page.mjs URL ROWS SCREENSHOT.png
//
// It waits until the table #workers has ROWS body rows and every rate
// cell shows a number (so the page has drawn at least two /stats samples),
// then reads each row's cells by class (the page's contract: each cell's
// class is the /stats field it shows, rate cells keep the raw counter in
// data-total), the summary line, every request the page made, and every
// console error.  It also loads the page once more with JavaScript off and
// reports the visible text (what a text browser shows).
// Exit status: 0 with JSON on stdout; non-zero with the reason on stderr.

import { chromium } from 'playwright-core';

const [url, rowsArg, shot] = process.argv.slice(2);
const want = Number(rowsArg);
if (!url || !(want > 0) || !shot) {
  console.error('usage: node status_page.mjs URL ROWS SCREENSHOT.png');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = Number(process.env.STATUS_PAGE_WAIT_MS || 20000);

// A hard bound on the whole run, whatever hangs.
const watchdog = setTimeout(() => {
  console.error('status_page.mjs: gave up after ' + (WAIT_MS + 20000) + ' ms');
  process.exit(3);
}, WAIT_MS + 20000);

// launch() gives Chromium a fresh temporary --user-data-dir (under
// $TMPDIR) and removes it on close.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});

const out = { requests: [], console_errors: [], page_errors: [] };
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 400 } });
  const page = await ctx.newPage();
  page.on('request', (r) => out.requests.push(r.method() + ' ' + r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') {
      out.console_errors.push({ text: m.text(), url: (m.location() || {}).url || '' });
    }
  });
  page.on('pageerror', (e) => out.page_errors.push(String(e)));

  const resp = await page.goto(url, { waitUntil: 'load', timeout: WAIT_MS });
  out.status = resp.status();
  out.content_type = resp.headers()['content-type'] || '';
  out.title = await page.title();

  await page.waitForFunction((n) => {
    const rows = document.querySelectorAll('#workers tbody tr[data-slot]');
    if (rows.length !== n) return false;
    for (const tr of rows) {
      const c = tr.querySelector('.tcp_connections_accepted');
      if (!c || c.textContent === '-' || c.textContent === '') return false;
    }
    return true;
  }, want, { timeout: WAIT_MS, polling: 100 });

  const snap = await page.evaluate(() => {
    const text = (el) => (el ? el.textContent.trim() : null);
    const rows = [];
    for (const tr of document.querySelectorAll('#workers tbody tr')) {
      const cells = {};
      const totals = {};
      for (const td of tr.cells) {
        cells[td.className] = td.textContent.trim();
        if (td.hasAttribute('data-total')) {
          totals[td.className] = td.getAttribute('data-total');
        }
      }
      rows.push({ data_slot: tr.getAttribute('data-slot'),
                  row_class: tr.className, cells, totals });
    }
    const summary = {};
    for (const id of ['version', 'pid', 'uptime', 'workers_running',
                      'workers_configured', 'worker_restarts']) {
      summary[id] = text(document.getElementById(id));
    }
    const headers = [...document.querySelectorAll('#workers thead th')]
      .map((th) => th.textContent.trim());
    return { rows, summary, headers,
             error_line: text(document.getElementById('error')) };
  });
  Object.assign(out, snap);
  await page.screenshot({ path: shot, fullPage: true });
  out.screenshot = shot;
  await ctx.close();

  // The same page without JavaScript: what lynx or w3m would show.
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const p2 = await nojs.newPage();
  await p2.goto(url, { waitUntil: 'load', timeout: WAIT_MS });
  out.nojs_text = await p2.evaluate(() => document.body.innerText);
  out.nojs_links = await p2.evaluate(() =>
    [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')));
  await nojs.close();
} catch (e) {
  console.error('status_page.mjs: ' + (e && e.stack ? e.stack : e));
  console.error('partial: ' + JSON.stringify(out));
  await browser.close().catch(() => {});
  process.exit(1);
}
await browser.close();
clearTimeout(watchdog);
process.stdout.write(JSON.stringify(out) + '\n');
