/**
 * One headless Chromium (Debian's, through puppeteer-core) for every page suite of this process:
 * `test/playground/pages.test.ts` launches it before its suites and closes it after them, so the
 * browser process starts once, from one test file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

let shared: { browser: Promise<Browser>; profile: string } | undefined;

/** The browser, launched on first use with a fresh profile. */
export function sharedBrowser(): Promise<Browser> {
  if (!shared) {
    const profile = mkdtempSync(join(tmpdir(), 'rkllm-mcp-chromium-'));
    shared = { profile, browser: puppeteer.launch({ executablePath: CHROMIUM, args: ARGS, userDataDir: profile, headless: true }) };
  }
  return shared.browser;
}

/** Closes the browser and removes its profile. */
export async function closeSharedBrowser(): Promise<void> {
  if (!shared) return;
  const { browser, profile } = shared;
  shared = undefined;
  await (await browser).close();
  rmSync(profile, { recursive: true, force: true });
}
