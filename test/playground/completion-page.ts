// The completion playground at GET /complete (the chat at GET / is chat-page.ts; both run from pages.test.ts), driven in real headless Chromium (Debian's chromium, through
// puppeteer-core) against a real server in this process. Screenshots go to .scratch/playground/.
import { expect } from 'chai';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page } from 'puppeteer-core';
import { sharedBrowser } from '../helpers/browser.js';
import { startServer } from '../../src/server.js';
import { buildTwin, slowLoad, TWIN_MODELS } from '../helpers/rkllm-twin.js';
import { liveFixture } from '../helpers/fixture.js';
import { captureLog, startTestServer, testSettings, type TestServer } from '../helpers/server.js';

const SHOTS = fileURLToPath(new URL('../../../.scratch/playground/', import.meta.url));
/** A phone: an iPhone 12-sized viewport. */
const PHONE = { width: 390, height: 844, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const KEY = 'playground-key-0123456789abcdef';

/** A page that records every console error, page error and failed request. */
async function openPage(browser: Browser, url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  await page.setViewport(PHONE);
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warn') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${String(err)}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  await page.goto(url, { waitUntil: 'load' });
  return { page, problems };
}

async function setValue(page: Page, name: string, value: string): Promise<void> {
  const field = page.locator(`::-p-aria(${name})`);
  await field.fill(value);
}

const text = (page: Page, selector: string): Promise<string> => page.$eval(selector, (el) => el.textContent ?? '');

// Code that runs in the page is given as strings: this project compiles without the DOM's types.
const SEND_ENABLED = "!document.getElementById('send').disabled";
const FINISHED = "/Finish reason/.test(document.getElementById('stats').textContent)";
const HAS_OUTPUT = 'document.querySelector(\'[aria-label="Output"]\').textContent.length > 0';
const RECORD_STATES = `(() => {
  const output = document.querySelector('[aria-label="Output"]');
  window.states = [];
  new MutationObserver(() => window.states.push(output.textContent)).observe(output, { childList: true, characterData: true, subtree: true });
})()`;
const LAYOUT = `(() => {
  const box = (selector) => document.querySelector(selector).getBoundingClientRect().toJSON();
  return { scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth, send: box('#send'), stop: box('#stop'), prompt: box('#prompt') };
})()`;

interface Box {
  width: number;
  height: number;
  right: number;
}
const disabled = (page: Page, selector: string): Promise<boolean> =>
  page.$eval(selector, (el) => (el as unknown as { disabled: boolean }).disabled);

describe('The playground page', function () {
  this.timeout(180_000);
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    [server, browser] = await Promise.all([startTestServer({ settings: { engine: { parallel: 2 } } }), sharedBrowser()]);
  });
  after(async () => {
    await server?.close();
  });

  it('GET /complete answers the page, GET / to a browser the chat, and POST / stays JSON-RPC', async () => {
    const page = await fetch(`${server.url}complete`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    expect(page.headers.get('content-security-policy')).to.include("default-src 'self'");
    const html = await page.text();
    expect(html).to.include('<title>rkllm-mcp playground</title>');
    expect(html, 'nothing loaded from elsewhere').to.not.match(/(src|href)="(https?:)?\/\//);
    expect(html, 'a link to the chat').to.include('href="/"');
    const chat = await fetch(server.url, { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(await chat.text()).to.include('<title>rkllm-mcp chat</title>');
    const other = await fetch(server.url, { headers: { accept: 'application/json' } });
    expect(other.status).to.equal(405);
    expect((await server.http.result('rkllm_is_running', {})).running).to.equal(false);
    const config = (await (await fetch(`${server.url}playground/config.json`)).json()) as Record<string, unknown>;
    expect(config).to.deep.equal({ ws_port: Number(server.addresses.ws!.split(':')[1]), keys_required: false });
  });

  it('streams a greedy run token by token into Output, equal to rkllm_run, then shows its statistics', async () => {
    const params = { prompt_input: 'Alice was beginning', max_new_tokens: 120, temperature: 0, top_k: 1 };
    const expected = (await server.http.result('rkllm_run', params)).text as string;
    const { page, problems } = await openPage(browser, `${server.url}complete`);
    await page.locator('::-p-aria(Send)').setEnsureElementIsInTheViewport(false).wait();
    await page.waitForFunction(SEND_ENABLED);
    await setValue(page, 'Prompt', params.prompt_input);
    await setValue(page, 'Max new tokens', '120');
    await setValue(page, 'Temperature', '0');
    await setValue(page, 'Top K', '1');
    // Every state the Output region goes through, as the page sees it.
    await page.evaluate(RECORD_STATES);
    await page.locator('::-p-aria(Send)').click();
    await page.waitForFunction(FINISHED, { timeout: 60_000 });
    const output = await text(page, '[aria-label="Output"]');
    expect(output).to.equal(expected);
    const states = (await page.evaluate('window.states')) as string[];
    expect(states.length, 'the output filled in many steps').to.be.greaterThan(10);
    for (const state of states.filter((s) => s !== ''))
      expect(expected.startsWith(state), 'each step is a prefix of the text').to.equal(true);
    const stats = await text(page, '#stats');
    expect(stats).to.match(/Time to first token: \d+ ms/);
    expect(stats).to.match(/\d+(\.\d)? tokens\/s/);
    expect(stats).to.include('Finish reason: length');
    await page.screenshot({ path: join(SHOTS, 'phone-run.png'), fullPage: true });
    expect(problems).to.deep.equal([]);
    await page.close();
  });

  it('Stop aborts a long run; the engine is then free', async () => {
    const { page, problems } = await openPage(browser, `${server.url}complete`);
    await page.waitForFunction(SEND_ENABLED);
    await setValue(page, 'Prompt', 'Down, down, down');
    await setValue(page, 'Max new tokens', '2000');
    // Greedy: the built-in model then never writes its end-of-text token, so the run lasts until Stop.
    await setValue(page, 'Temperature', '0');
    await page.locator('::-p-aria(Send)').click();
    await page.waitForFunction(HAS_OUTPUT);
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: true });
    await page.locator('::-p-aria(Stop)').click();
    await page.waitForFunction(FINISHED, { timeout: 30_000 });
    expect(await text(page, '#stats')).to.include('Finish reason: abort');
    expect(await server.http.result('rkllm_is_running', {})).to.deep.include({ running: false, active: 0, queued: 0 });
    expect(await disabled(page, '#send')).to.equal(false);
    await page.screenshot({ path: join(SHOTS, 'phone-stopped.png'), fullPage: true });
    expect(problems).to.deep.equal([]);
    await page.close();
  });

  it('is usable on a phone: nothing wider than the screen, controls large enough to touch', async () => {
    const { page, problems } = await openPage(browser, `${server.url}complete`);
    const layout = (await page.evaluate(LAYOUT)) as { scrollWidth: number; width: number; send: Box; stop: Box; prompt: Box };
    expect(layout.width).to.equal(PHONE.width);
    expect(layout.scrollWidth).to.be.at.most(layout.width);
    for (const control of [layout.send, layout.stop]) {
      expect(control.height).to.be.at.least(40);
      expect(control.right).to.be.at.most(layout.width);
    }
    expect(layout.prompt.width).to.be.greaterThan(layout.width * 0.8);
    expect(await (await page.$('#key-form'))!.boundingBox(), 'no key asked for: the server has none').to.equal(null);
    expect(problems).to.deep.equal([]);
    await page.close();
  });

  describe('with API keys', () => {
    const fixture = liveFixture({ settings: { auth: { api_keys: [KEY] } } });

    it('asks for a key, authenticates the WebSocket with it, then runs', async () => {
      const { page, problems } = await openPage(browser, `${fixture.server.url}complete`);
      await page.locator('::-p-aria(API key)').wait();
      expect(await disabled(page, '#send')).to.equal(true);
      await setValue(page, 'API key', 'wrong-key-0123456789');
      await page.locator('::-p-aria(Use key)').click();
      await page.waitForFunction("/refused/.test(document.getElementById('error').textContent)");
      await setValue(page, 'API key', KEY);
      await page.locator('::-p-aria(Use key)').click();
      await page.waitForFunction(SEND_ENABLED);
      await setValue(page, 'Prompt', 'Once');
      await setValue(page, 'Max new tokens', '20');
      await page.locator('::-p-aria(Send)').click();
      await page.waitForFunction(FINISHED, { timeout: 60_000 });
      expect(await text(page, '#stats')).to.include('Finish reason: length');
      expect((await text(page, '[aria-label="Output"]')).length).to.be.greaterThan(0);
      await page.screenshot({ path: join(SHOTS, 'phone-keyed.png'), fullPage: true });
      expect(problems).to.deep.equal([]);
      await page.close();
    });
  });

  it('loads while the model is still loading', async () => {
    const library = await buildTwin('1.3');
    // Loading waits until the test opens the twin's gate (as in health.test.ts).
    const slow = slowLoad();
    const log = captureLog();
    const settings = testSettings({
      tcp: { enabled: false },
      udp: { enabled: false },
      engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, rkllm: { library } },
    });
    slow.apply();
    const starting = startServer(settings, log.log);
    try {
      const bound = await log.line('transports bound');
      const { page, problems } = await openPage(browser, `http://${bound.addresses.http}/complete`);
      await page.locator('::-p-aria(Prompt)').wait();
      await page.waitForFunction("/Connected/.test(document.getElementById('connection').textContent)");
      expect((await fetch(`http://${bound.addresses.http}/health`)).status, 'still loading').to.equal(503);
      expect(problems).to.deep.equal([]);
      await page.close();
    } finally {
      slow.finish();
      await (await starting).close();
    }
  });
});
