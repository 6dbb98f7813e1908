// GET /health through the engine's life: loading, ready, a runtime that restarts and then fails for good.
import { expect } from 'chai';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../../src/server.js';
import { TWIN_MODELS, buildTwin, slowLoad } from '../helpers/rkllm-twin.js';
import { HttpRpc } from '../helpers/rpc.js';
import { scratchDir } from '../helpers/server-process.js';
import { captureLog, startTestServer, testSettings, type TestServer } from '../helpers/server.js';

interface Health {
  status: number;
  body: { status: string; reason?: string };
}

async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}health`);
  return { status: res.status, body: (await res.json()) as Health['body'] };
}

/** Only HTTP: health is an HTTP endpoint. */
const HTTP_ONLY = { tcp: { enabled: false }, udp: { enabled: false }, ws: { enabled: false } };

describe('GET /health', function () {
  this.timeout(120_000);
  let library: string;
  before(async () => {
    library = await buildTwin('1.3');
  });

  it('answers 503 "loading" while the model loads (and requests an engine-unavailable error), then 200 "ready"', async () => {
    // Loading (in the runtime's worker process) waits until the test opens the twin's gate.
    const slow = slowLoad();
    const log = captureLog();
    // load_wait_ms 0: requests are refused at once rather than waiting for the model (test/integration/load-wait.test.ts).
    const settings = testSettings({
      ...HTTP_ONLY,
      engine: { kind: 'rkllm', model_path: TWIN_MODELS.story, load_wait_ms: 0, rkllm: { library } },
    });
    slow.apply();
    const starting = startServer(settings, log.log);
    try {
      const bound = await log.line('transports bound');
      const url = `http://${bound.addresses.http}/`;
      expect(await health(url)).to.deep.equal({ status: 503, body: { status: 'loading', reason: 'the model is loading' } });
      const refused = await new HttpRpc(url).call('rkllm_is_running', {}, 'early');
      expect(refused).to.deep.include({ id: 'early' });
      expect(refused.error).to.deep.include({ code: -32004 });
      slow.finish();
      await starting;
      expect(log.lines.filter((l) => String(l.msg).includes('listening for connections'))).to.have.lengthOf(1);
      expect(await health(url)).to.deep.equal({ status: 200, body: { status: 'ready' } });
    } finally {
      // Whatever happened, let the load finish so that the server can be closed.
      slow.finish();
      await (await starting).close();
    }
  });

  describe('after an engine failure', () => {
    let server: TestServer;
    let dir: string;
    before(async () => {
      dir = scratchDir();
      const model = join(dir, 'model.rkllm');
      copyFileSync(TWIN_MODELS.story, model);
      server = await startTestServer({
        settings: {
          ...HTTP_ONLY,
          engine: {
            kind: 'rkllm',
            model_path: model,
            rkllm: { library, restart_delay_ms: 300, restart_max_delay_ms: 300, max_restarts: 1 },
          },
        },
      });
    });
    after(async () => {
      await server?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('answers 503 "restarting" while the runtime restarts, then 503 "failed" when it cannot, naming no file', async () => {
      expect(await health(server.url)).to.deep.equal({ status: 200, body: { status: 'ready' } });
      rmSync(join(dir, 'model.rkllm'));
      const http = new HttpRpc(server.url);
      const { stream_id } = await http.start({ prompt_input: 'crash now [crash:1]', max_new_tokens: 20 });
      expect((await http.drain(stream_id)).last.finish_reason).to.equal('error');
      const seen: Health[] = [];
      for (let i = 0; i < 400 && seen.at(-1)?.body.status !== 'failed'; i++) {
        seen.push(await health(server.url));
        await sleep(10);
      }
      const statuses = [...new Set(seen.map((h) => h.body.status))];
      expect(statuses).to.deep.equal(['restarting', 'failed']);
      expect(seen.every((h) => h.status === 503)).to.equal(true);
      expect(seen.at(-1)!.body).to.deep.equal({ status: 'failed', reason: 'the engine failed: its runtime could not be restarted' });
      expect(JSON.stringify(seen)).not.to.include(dir);
    });
  });
});
