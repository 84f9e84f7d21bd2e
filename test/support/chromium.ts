// Headless Chromium (Debian's /usr/bin/chromium) through playwright-core, for the browser tests: a fresh
// profile per launch, removed by the test's cleanup; no network beyond what the page asks for.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { requireTool } from './processes.js';
import type { Cleanup } from './waits.js';

export const chromiumBin = requireTool('chromium');
export const NO_CHROMIUM = 'chromium not installed (Debian package chromium, /usr/bin/chromium)';

/** A persistent context on a throwaway profile; every wait (steps, navigations) bounded by `stepMs`. */
export async function launchChromium(cleanup: Cleanup, stepMs: number, o: { extraHTTPHeaders?: Record<string, string> } = {}): Promise<BrowserContext> {
  if (!chromiumBin) throw new Error(NO_CHROMIUM);
  const profile = mkdtempSync(join(tmpdir(), 'l402-chromium-'));
  cleanup.add(() => rmSync(profile, { recursive: true, force: true }), 'rm chromium profile');
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumBin,
    headless: true,
    timeout: 20_000,
    ...(o.extraHTTPHeaders ? { extraHTTPHeaders: o.extraHTTPHeaders } : {}),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanup.add(() => browser.close(), 'chromium');
  browser.setDefaultTimeout(stepMs);
  browser.setDefaultNavigationTimeout(stepMs);
  return browser;
}
