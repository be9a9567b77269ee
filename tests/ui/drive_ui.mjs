// Drives the web UI (/ui/) in headless Chromium: the study list, a search, a study page with its
// thumbnails (pixels read back), a folder upload, a delete with confirmation and, when the page
// offers one, "open in viewer" (the OHIF Viewer draws the study).
//
// usage: node drive_ui.mjs <server base url> <scenario.json> <out dir>
// scenario: {"search": "Alpha", "folder": "/path", "deleteStudy": "1.2...", "viewerStudy": "1.2..."|null,
//            "viewerOnly": false, "token": "<bearer token>"|null}
// Writes <out dir>/report.json and screenshots (list.png, search.png, study.png, upload.png,
// deleted.png, viewer.png). Exit status 0 when every step was reached; the caller judges the report.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(join(process.cwd(), 'tests', 'viewer', 'package.json'));
const { chromium } = require('playwright-core');

const [base, scenarioPath, outDir] = process.argv.slice(2);
const scenario = JSON.parse(readFileSync(scenarioPath, 'utf8'));
const STEP = 20_000;
const report = { step: 'launch', consoleErrors: [], pageErrors: [] };
const save = () => writeFileSync(join(outDir, 'report.json'), JSON.stringify(report, null, 1));
const profile = mkdtempSync(join(tmpdir(), 'ui-chromium-'));
let context = null;
let failed = null;
setTimeout(async () => {
  report.error = `gave up at step ${report.step}`;
  save();
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}, 100_000).unref();

const rowTexts = (page, selector) =>
  page.$$eval(selector, (rows) => rows.map((r) => Array.from(r.cells, (c) => c.textContent.trim())));

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') report.consoleErrors.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => report.pageErrors.push(String(e).slice(0, 300)));

  if (!scenario.viewerOnly) {
  report.step = 'list';
  await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  report.landedOn = page.url();
  if (scenario.token) {
    // Without the token the page says what is missing; with it, everything below works.
    await page.waitForSelector('#message.error:not([hidden])', { timeout: STEP });
    report.withoutToken = await page.textContent('#message');
    await page.click('header .token summary');
    await page.fill('#token', scenario.token);
    await page.locator('#token').dispatchEvent('change');
  }
  await page.waitForFunction(() => document.querySelectorAll('#studies tbody tr').length >= 2, null, { timeout: STEP });
  report.list = await rowTexts(page, '#studies tbody tr');
  await page.screenshot({ path: join(outDir, 'list.png') });

  report.step = 'search';
  await page.fill('input[name=PatientName]', scenario.search);
  await page.click('#search button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#studies tbody tr').length === 1, null, { timeout: STEP });
  report.searched = await rowTexts(page, '#studies tbody tr');
  await page.screenshot({ path: join(outDir, 'search.png') });

  report.step = 'study page';
  await page.click('#studies tbody tr');
  await page.waitForSelector('img.thumb[data-loaded="true"]', { timeout: STEP });
  report.studyUrl = page.url();
  report.series = await rowTexts(page, '#series tbody tr');
  // The thumbnail's pixels, read back through a canvas (same origin: not tainted).
  report.thumbnail = await page.$eval('img.thumb[data-loaded="true"]', (img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const rows = [];
    for (let y = 0; y < canvas.height; y++) {
      let sum = 0;
      for (let x = 0; x < canvas.width; x++) sum += data[(y * canvas.width + x) * 4];
      rows.push(sum / canvas.width);
    }
    return { width: canvas.width, height: canvas.height, rowMeans: rows };
  });
  report.viewerHref = await page.$eval('#open-viewer', (a) => (a.checkVisibility() ? a.href : null));
  await page.screenshot({ path: join(outDir, 'study.png') });

  report.step = 'upload';
  await page.click('nav a[href="#/upload"]');
  await page.setInputFiles('#folder', scenario.folder);
  await page.waitForSelector('#upload-summary[data-done="true"]', { timeout: STEP * 3 });
  report.uploads = await rowTexts(page, '#uploads tbody tr');
  report.uploadSummary = await page.textContent('#upload-summary');
  await page.screenshot({ path: join(outDir, 'upload.png') });

  report.step = 'delete series';
  await page.goto(`${base}/ui/#/study/${scenario.deleteStudy}`);
  await page.waitForFunction(() => document.querySelectorAll('#series tbody tr').length === 2, null,
    { timeout: STEP });
  page.once('dialog', async (dialog) => {
    report.seriesConfirmation = dialog.message();
    await dialog.accept();
  });
  await page.click('#series tbody tr:first-child button.danger');
  await page.waitForFunction(() => document.querySelectorAll('#series tbody tr').length === 1, null,
    { timeout: STEP });
  report.seriesAfterDelete = await rowTexts(page, '#series tbody tr');

  report.step = 'delete';
  await page.waitForSelector('#series tbody tr', { timeout: STEP });
  page.once('dialog', async (dialog) => {
    report.confirmation = dialog.message();
    await dialog.accept();
  });
  await page.click('#delete-study');
  await page.waitForFunction(() => location.hash === '#/' && !document.querySelector('#message').hidden, null,
    { timeout: STEP });
  report.afterDelete = await page.textContent('#message');
  await page.waitForFunction(
    (uid) => !document.querySelector('#studies-view').hidden && !document.body.dataset.busy
      && !document.querySelector(`#studies tbody tr[data-study="${uid}"]`)
      && document.querySelectorAll('#studies tbody tr').length > 0,
    scenario.deleteStudy, { timeout: STEP });
  report.listAfterDelete = await rowTexts(page, '#studies tbody tr');
  await page.screenshot({ path: join(outDir, 'deleted.png') });
  }

  if (scenario.viewerStudy) {
    report.step = 'viewer';
    await page.goto(`${base}/ui/#/study/${scenario.viewerStudy}`);
    await page.waitForSelector('#open-viewer:not([hidden])', { timeout: STEP });
    const [viewer] = await Promise.all([context.waitForEvent('page'), page.click('#open-viewer')]);
    viewer.on('pageerror', (e) => report.pageErrors.push('viewer: ' + String(e).slice(0, 300)));
    await viewer.waitForLoadState('domcontentloaded');
    const canvas = viewer.locator('.cornerstone-canvas, [data-viewport-uid] canvas').first();
    await canvas.waitFor({ state: 'visible', timeout: STEP * 2 });
    report.viewerUrl = viewer.url();
    await viewer.getByRole('button', { name: /Skip all/i }).click({ timeout: 3000 }).catch(() => {});
    await viewer.waitForTimeout(2500);
    await canvas.screenshot({ path: join(outDir, 'viewport.png') });
    await viewer.screenshot({ path: join(outDir, 'viewer.png') });
  }
  report.step = 'done';
} catch (err) {
  failed = err;
  report.error = String(err).slice(0, 1000);
} finally {
  save();
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
