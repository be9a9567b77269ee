// Opens the OHIF Viewer in headless Chromium, finds a study in the study list, opens it in the
// Basic Viewer and waits until its images have been fetched and drawn.
//
// usage: node drive_ohif.mjs <viewer url> <dicomweb root> <patient name as listed> <out dir>
// Writes <out dir>/report.json (every request to the DICOMweb root with the server's answer,
// browser console errors, the step reached) and <out dir>/viewport.png (the image viewport).
// Exit status 0 when every step was reached; the caller judges the report.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [viewerUrl, dicomwebRoot, patientName, outDir] = process.argv.slice(2);
const STEP_TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 45_000;

const report = { step: 'launch', requests: [], consoleErrors: [], pageErrors: [] };
const pending = new Set();
const save = () => writeFileSync(join(outDir, 'report.json'), JSON.stringify(report, null, 1));

const profile = mkdtempSync(join(tmpdir(), 'ohif-chromium-'));
let context = null;
let failed = null;
// Whatever step hangs, leave a report and no browser behind before the caller gives up.
setTimeout(async () => {
  report.error = `gave up after ${OVERALL_TIMEOUT} ms at step ${report.step}`;
  save();
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}, OVERALL_TIMEOUT).unref();
try {
  // A new empty profile each run (Playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 900 },
  });
  if (process.env.DICOMWEB_TOKEN) {
    // The server runs with access control: send the bearer token, as OHIF does once signed in.
    await context.setExtraHTTPHeaders({ Authorization: `Bearer ${process.env.DICOMWEB_TOKEN}` });
  }
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') report.consoleErrors.push(msg.text().slice(0, 500));
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err).slice(0, 500)));
  page.on('request', (req) => {
    if (req.url().startsWith(dicomwebRoot)) pending.add(req);
  });
  page.on('requestfailed', (req) => {
    if (!pending.delete(req)) return;
    report.requests.push({
      method: req.method(),
      url: req.url(),
      accept: req.headers()['accept'] || '',
      status: 0,
      failure: req.failure()?.errorText || 'failed',
    });
  });
  page.on('requestfinished', async (req) => {
    if (!pending.delete(req)) return;
    const entry = { method: req.method(), url: req.url(), accept: req.headers()['accept'] || '' };
    report.requests.push(entry);
    try {
      const resp = await req.response();
      entry.status = resp ? resp.status() : 0;
      entry.contentType = resp ? (await resp.allHeaders())['content-type'] || '' : '';
      entry.bodyBytes = resp && req.method() !== 'OPTIONS' ? (await resp.body()).length : 0;
    } catch (err) {
      entry.error = String(err).slice(0, 200);
    }
  });

  report.step = 'study list';
  await page.goto(viewerUrl + '/', { waitUntil: 'domcontentloaded' });
  const row = page.getByText(patientName, { exact: false }).first();
  await row.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });

  report.step = 'open study';
  await row.click();
  const mode = page.getByRole('button', { name: /Basic Viewer/i }).first();
  await mode.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  await mode.click();
  await page.waitForURL(/\/viewer\?/, { timeout: STEP_TIMEOUT });
  report.viewerUrl = page.url();

  report.step = 'frames';
  const isFrame = (r) => /\/frames\/\d/.test(r.url) && r.method === 'GET';
  const deadline = Date.now() + STEP_TIMEOUT;
  while (!report.requests.some((r) => isFrame(r) && r.status === 200 && r.bodyBytes > 0)) {
    if (Date.now() > deadline) throw new Error('no frame was answered 200 with a body');
    await page.waitForTimeout(100);
  }

  report.step = 'render';
  // Cornerstone draws into a <canvas> inside the viewport element; wait until one has a size,
  // then give it a moment to paint the decoded frame and screenshot the viewport (a screenshot
  // works for WebGL and CPU rendering alike, unlike reading the canvas back).
  const canvas = page.locator('.cornerstone-canvas, [data-viewport-uid] canvas').first();
  await canvas.waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  await page.waitForFunction(
    () => !document.querySelector('.loading-indicator, [data-cy="loading-indicator"]'),
    null,
    { timeout: STEP_TIMEOUT },
  ).catch(() => {});
  // OHIF's first-visit tour pops over the viewport; dismiss it so the screenshot shows the image.
  await page.getByRole('button', { name: /Skip all/i }).click({ timeout: 3000 }).catch(() => {});
  await page.waitForTimeout(1500);
  await canvas.screenshot({ path: join(outDir, 'viewport.png') });
  await page.screenshot({ path: join(outDir, 'page.png') });
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
