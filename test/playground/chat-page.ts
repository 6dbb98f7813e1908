// The chat page at GET / (run by pages.test.ts), driven in real headless Chromium (Debian's chromium, through
// puppeteer-core) against a real server in this process, on the built-in tiny model. Controls are
// found by their accessible names. Screenshots go to .scratch/chat/.
import { expect } from 'chai';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, type Page } from 'puppeteer-core';
import { sharedBrowser } from '../helpers/browser.js';
import { startServer } from '../../src/server.js';
import { liveFixture } from '../helpers/fixture.js';
import { buildTwin, slowLoad, TWIN_MODELS } from '../helpers/rkllm-twin.js';
import { captureLog, startTestServer, testSettings, type TestServer } from '../helpers/server.js';

const SHOTS = fileURLToPath(new URL('../../../.scratch/chat/', import.meta.url));
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const KEY = 'chat-key-0123456789abcdef';
const COMPLETIONS = '/v1/chat/completions';

interface ChatMessage {
  role: string;
  content: string;
}
interface ChatBody {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  max_tokens?: number;
  temperature?: number;
}

/** A page in its own browser context (its own localStorage), recording console errors, page errors, failed requests and the chat requests' bodies. */
async function openPage(
  context: BrowserContext,
  url: string,
  viewport: Record<string, unknown> = DESKTOP,
): Promise<{ page: Page; problems: string[]; bodies: ChatBody[] }> {
  const page = await context.newPage();
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  await page.setViewport(viewport as { width: number; height: number });
  const problems: string[] = [];
  const bodies: ChatBody[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warn') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${String(err)}`));
  page.on('requestfailed', (req) => {
    // Stop aborts the chat request on purpose.
    if (!(req.url().endsWith(COMPLETIONS) && req.failure()?.errorText === 'net::ERR_ABORTED'))
      problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  page.on('request', (req) => {
    if (req.method() === 'POST' && req.url().endsWith(COMPLETIONS)) bodies.push(JSON.parse(req.postData() ?? '{}') as ChatBody);
  });
  await page.goto(url, { waitUntil: 'load' });
  return { page, problems, bodies };
}

const aria = (page: Page, name: string, role = '') =>
  page.locator(`::-p-aria([name=${JSON.stringify(name)}]${role ? `[role=${JSON.stringify(role)}]` : ''})`);

// Code that runs in the page is given as strings: this project compiles without the DOM's types.
const SEND_ENABLED = "!document.getElementById('send').disabled";
const replies = (n: number) => `document.querySelectorAll('#messages .message.assistant .stats').length === ${n}`;
const MESSAGES = `[...document.querySelectorAll('#messages .message')].map((m) => ({
  role: m.classList.contains('user') ? 'user' : 'assistant',
  text: m.querySelector('.content').textContent,
  stats: m.querySelector('.stats')?.textContent ?? null,
}))`;
const UNSAFE = `[...document.querySelectorAll('#messages *')].flatMap((el) =>
  [...el.attributes].filter((a) => /^on/i.test(a.name) || /^\\s*javascript:/i.test(a.value)).map((a) => el.tagName + ' ' + a.name))`;
const CONVERSATIONS = "[...document.querySelectorAll('#conversations .open-conversation')].map((b) => b.textContent)";

interface Shown {
  role: string;
  text: string;
  stats: string | null;
}

async function ready(page: Page): Promise<void> {
  await aria(page, 'Message').wait();
  await page.waitForFunction(SEND_ENABLED);
}

async function say(page: Page, text: string, repliesAfter: number): Promise<void> {
  await aria(page, 'Message').fill(text);
  await aria(page, 'Send', 'button').click();
  await page.waitForFunction(replies(repliesAfter), { timeout: 60_000 });
}

describe('The chat page', function () {
  this.timeout(180_000);
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    [server, browser] = await Promise.all([startTestServer({ settings: { engine: { parallel: 2 } } }), sharedBrowser()]);
  });
  beforeEach(async () => {
    context = await browser.createBrowserContext();
  });
  afterEach(async () => {
    await context?.close();
  });
  after(async () => {
    await server?.close();
  });

  it('is served at GET / with its vendored libraries, nothing from elsewhere, under a strict CSP', async () => {
    const res = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(res.status).to.equal(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("default-src 'self'");
    expect(csp).to.not.include('unsafe-inline');
    const html = await res.text();
    expect(html).to.include('<title>rkllm-mcp chat</title>');
    expect(html, 'nothing loaded from elsewhere').to.not.match(/(src|href)="(https?:)?\/\//);
    expect(html, 'no inline script').to.not.match(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html, 'a link to the playground').to.include('href="/complete"');
    for (const path of ['chat/app.js', 'chat/conversations.js', 'chat/markdown.js', 'vendor/marked.esm.js', 'vendor/purify.min.js']) {
      const file = await fetch(`${server.url}${path}`);
      expect(file.status, path).to.equal(200);
      expect(file.headers.get('content-type'), path).to.match(/^text\/javascript/);
      await file.arrayBuffer();
    }
    expect((await fetch(`${server.url}vendor/README.md`)).status, 'only the files the page uses').to.not.equal(200);
  });

  it('holds a two-turn conversation, sends the whole history, keeps it over a reload, and regenerates the last reply', async () => {
    const { page, problems, bodies } = await openPage(context, server.url);
    await ready(page);
    const models = (await page.$$eval('#model option', (options) => options.map((o) => o.textContent))) as string[];
    expect(models).to.include('rkllm-tiny');
    await aria(page, 'System prompt').fill('You are terse.');
    await aria(page, 'Max new tokens').fill('16');
    await aria(page, 'Temperature').fill('0');
    await say(page, 'Hello there', 1);
    await say(page, 'And then?', 2);

    expect(bodies).to.have.length(2);
    const [first, second] = bodies as [ChatBody, ChatBody];
    expect(first).to.deep.include({ model: 'rkllm-tiny', stream: true, max_tokens: 16, temperature: 0 });
    expect(first.messages).to.deep.equal([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hello there' },
    ]);
    // The first reply, as the server makes it (greedy, so the same) without streaming.
    const direct = (await (
      await fetch(`${server.url}v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...first, stream: false }),
      })
    ).json()) as { choices: Array<{ message: { content: string } }> };
    const reply = direct.choices[0]!.message.content;
    expect(reply.length).to.be.greaterThan(0);
    expect(second.messages, 'the second request carries the first exchange').to.deep.equal([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hello there' },
      { role: 'assistant', content: reply },
      { role: 'user', content: 'And then?' },
    ]);

    const shown = (await page.evaluate(MESSAGES)) as Shown[];
    expect(shown.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'user', 'assistant']);
    expect(shown[0]!.text).to.equal('Hello there');
    for (const m of [shown[1]!, shown[3]!]) {
      expect(m.stats).to.match(/Time to first token: \d+ ms/);
      expect(m.stats).to.match(/\d+\.\d tokens\/s/);
      expect(m.stats).to.include('16 tokens');
    }
    expect(await page.evaluate(CONVERSATIONS)).to.deep.equal(['Hello there']);
    await page.screenshot({ path: join(SHOTS, 'desktop-conversation.png') });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    await page.screenshot({ path: join(SHOTS, 'desktop-conversation-dark.png') });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);

    await page.reload({ waitUntil: 'load' });
    await ready(page);
    const again = (await page.evaluate(MESSAGES)) as Shown[];
    expect(again, 'the conversation survives a reload').to.deep.equal(shown);
    expect(await page.$eval('#system-prompt', (el) => (el as unknown as { value: string }).value)).to.equal('You are terse.');

    // Regenerate: the last reply is replaced, from the same history.
    await aria(page, 'Regenerate', 'button').click();
    await page.waitForFunction(`document.querySelectorAll('#messages .message').length === 4 && ${replies(2)}`, { timeout: 60_000 });
    expect(bodies).to.have.length(3);
    expect(bodies[2]!.messages).to.deep.equal(second.messages);
    expect(((await page.evaluate(MESSAGES)) as Shown[]).map((m) => m.role)).to.deep.equal(['user', 'assistant', 'user', 'assistant']);
    expect(problems).to.deep.equal([]);
  });

  it('keeps several conversations: New chat, switching, deleting', async () => {
    const { page, problems } = await openPage(context, server.url);
    await ready(page);
    await aria(page, 'Max new tokens').fill('4');
    await say(page, 'First chat', 1);
    await aria(page, 'New chat', 'button').click();
    await page.waitForFunction("document.querySelectorAll('#messages .message').length === 0");
    expect(await page.$eval('h1', (el) => el.textContent)).to.equal('New chat');
    await say(page, 'Second chat', 1);
    expect(await page.evaluate(CONVERSATIONS)).to.deep.equal(['Second chat', 'First chat']);
    await aria(page, 'First chat', 'button').click();
    await page.waitForFunction("document.querySelector('#messages .message.user .content')?.textContent === 'First chat'");
    await page.reload({ waitUntil: 'load' });
    await ready(page);
    expect(await page.$eval('#messages .message.user .content', (el) => el.textContent), 'the open one stays open').to.equal('First chat');
    await aria(page, 'Delete: Second chat', 'button').click();
    await page.waitForFunction(`${CONVERSATIONS}.join() === 'First chat'`);
    await aria(page, 'Delete: First chat', 'button').click();
    await page.waitForFunction(`${CONVERSATIONS}.length === 0 && document.querySelectorAll('#messages .message').length === 0`);
    await page.reload({ waitUntil: 'load' });
    await ready(page);
    expect(await page.evaluate(CONVERSATIONS)).to.deep.equal([]);
    expect(problems).to.deep.equal([]);
  });

  it('shows typed HTML as text, renders replies as sanitized Markdown, and copies code', async () => {
    const { page, problems } = await openPage(context, server.url);
    await context.overridePermissions(new URL(server.url).origin, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
    await ready(page);
    await aria(page, 'Max new tokens').fill('4');
    const typed = '<img src=x onerror="window.pwned=1"> <b>bold?</b>';
    await say(page, typed, 1);
    expect(await page.$eval('#messages .message.user .content', (el) => el.textContent)).to.equal(typed);
    expect(await page.$$('#messages img, #messages b')).to.have.length(0);

    // A reply with Markdown and HTML in it, answered in the server's place.
    const markdown = [
      'Some **bold** text <img src="data:," onerror="window.pwned=2"> and [a link](javascript:window.pwned=3).',
      '<script>window.pwned=4</script>',
      '```js',
      'const answer = 42;',
      '```',
    ].join('\n');
    const events = [markdown.slice(0, 30), markdown.slice(30)]
      .map((content) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`)
      .join('');
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      if (req.isInterceptResolutionHandled()) return;
      if (req.url().endsWith(COMPLETIONS))
        void req.respond({ status: 200, contentType: 'text/event-stream', body: `${events}data: [DONE]\n\n` });
      else void req.continue();
    });
    await say(page, 'Show me', 2);
    const reply = '#messages .message.assistant:last-of-type .content';
    expect(await page.$eval(`${reply} strong`, (el) => el.textContent)).to.equal('bold');
    // The HTML the reply wrote is shown as text; nothing runs.
    expect(await page.$eval(reply, (el) => el.textContent)).to.include('<img src="data:," onerror="window.pwned=2">');
    expect(await page.$$('#messages img, #messages script')).to.have.length(0);
    expect(await page.evaluate(UNSAFE), 'no handler attributes, no javascript: links').to.deep.equal([]);
    expect(await page.$eval(`${reply} a`, (el) => el.textContent)).to.equal('a link');
    expect(await page.evaluate('window.pwned')).to.equal(undefined);
    expect(await page.$eval(`${reply} pre code`, (el) => el.textContent)).to.equal('const answer = 42;\n');
    await page.locator(`${reply} ::-p-aria([name="Copy code"][role="button"])`).click();
    await page.waitForFunction(`document.querySelector('${reply} .copy-code').textContent === 'Copied'`);
    expect(await page.evaluate('navigator.clipboard.readText()')).to.equal('const answer = 42;\n');
    await page.screenshot({ path: join(SHOTS, 'desktop-markdown.png') });
    expect(problems).to.deep.equal([]);
  });

  it('Stop ends a reply in progress and the engine is freed', async () => {
    const { page, problems } = await openPage(context, server.url);
    await ready(page);
    await aria(page, 'Max new tokens').fill('2000');
    // Greedy: the built-in model then never writes its end-of-text token, so the reply lasts until Stop.
    await aria(page, 'Temperature').fill('0');
    await aria(page, 'Message').fill('Down, down, down');
    await aria(page, 'Send', 'button').click();
    await page.waitForFunction("document.querySelector('#messages .message.assistant.pending .content')?.textContent.length > 20");
    expect(await server.http.result('rkllm_is_running', {})).to.include({ running: true });
    await aria(page, 'Stop', 'button').click();
    await page.waitForFunction(replies(1), { timeout: 30_000 });
    const [, reply] = (await page.evaluate(MESSAGES)) as Shown[];
    expect(reply!.stats).to.include('stopped');
    expect(reply!.text.length).to.be.greaterThan(0);
    await page.waitForFunction(SEND_ENABLED);
    const deadline = Date.now() + 10_000;
    let state = await server.http.result('rkllm_is_running', {});
    while (state.running && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      state = await server.http.result('rkllm_is_running', {});
    }
    expect(state).to.deep.include({ running: false, active: 0, queued: 0 });
    await page.screenshot({ path: join(SHOTS, 'desktop-stopped.png') });
    expect(problems).to.deep.equal([]);
  });

  it('is usable on a phone', async () => {
    const { page, problems } = await openPage(context, server.url, PHONE);
    await ready(page);
    await aria(page, 'Max new tokens').fill('24');
    await say(page, 'Alice was beginning', 1);
    const width = (await page.evaluate('[document.documentElement.scrollWidth, window.innerWidth]')) as [number, number];
    expect(width[0]).to.be.at.most(width[1]);
    await page.screenshot({ path: join(SHOTS, 'phone-conversation.png'), fullPage: true });
    expect(problems).to.deep.equal([]);
  });

  it('loads while the model is still loading, and is ready once it is', async () => {
    const library = await buildTwin('1.3');
    // Loading waits until the test opens the twin's gate (as in completion-page.ts).
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
      const url = `http://${bound.addresses.http}/`;
      const { page, problems } = await openPage(context, url);
      await page.waitForFunction("/loading the model/.test(document.getElementById('status').textContent)");
      expect(await page.$eval('#send', (el) => (el as unknown as { disabled: boolean }).disabled)).to.equal(true);
      slow.finish();
      await ready(page);
      // While loading, /v1/models answers 503 (and Chromium logs each): those are expected.
      const expected = (p: string) => p === `HTTP 503: ${url}v1/models` || /status of 503/.test(p);
      expect(problems.filter((p) => !expected(p))).to.deep.equal([]);
      expect(problems.length).to.be.greaterThan(0);
      await page.close();
    } finally {
      slow.finish();
      await (await starting).close();
    }
  });

  describe('with API keys', () => {
    const fixture = liveFixture({ settings: { auth: { api_keys: [KEY] } } });

    it('asks for a key, keeps it in the browser, and sends it', async () => {
      const { page, problems } = await openPage(context, fixture.server.url);
      const key = aria(page, 'API key');
      await key.wait();
      await page.waitForFunction("/API key/.test(document.getElementById('status').textContent)");
      expect(await page.$eval('#send', (el) => (el as unknown as { disabled: boolean }).disabled)).to.equal(true);
      await key.fill(KEY);
      await page.keyboard.press('Tab');
      await ready(page);
      await page.reload({ waitUntil: 'load' });
      await ready(page);
      expect(await page.$eval('#api-key', (el) => (el as unknown as { value: string }).value)).to.equal(KEY);
      await aria(page, 'Max new tokens').fill('8');
      await say(page, 'Once', 1);
      expect(((await page.evaluate(MESSAGES)) as Shown[])[1]!.stats).to.include('8 tokens');
      expect(problems).to.deep.equal([]);
    });
  });
});
