// The whole RKLLM API against a real server (in this process) running the built-in tiny model: over HTTP, and over
// TCP as the real-time transport.
import { expect } from 'chai';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { TINY_MODEL_PROMPTS } from '../../src/gguf/builtin.js';
import { writeLogitBoostLora } from '../helpers/lora-adapter.js';
import { TcpRpc } from '../helpers/live-rpc.js';
import { HttpRpc, type Chunk, type RpcResponse } from '../helpers/rpc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tinyModel, type TinyModel } from '../helpers/tiny-model.js';

const greedy = { top_k: 1, temperature: 0, repeat_penalty: 1 };
const CONTEXT = 1024;
const PROMPT = 'The Queen said';

function expectError(res: RpcResponse, code: number, pattern?: RegExp): void {
  expect(res.error, JSON.stringify(res.result)).to.not.equal(undefined);
  expect(res.error!.code, res.error!.message).to.equal(code);
  if (pattern) expect(res.error!.message).to.match(pattern);
}

const logSumExp = (values: number[]): number => {
  const max = Math.max(...values);
  return max + Math.log(values.reduce((sum, v) => sum + Math.exp(v - max), 0));
};

const argmax = (values: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
};

/** What the suite needs of a transport: requests, and a stream read to its final chunk. */
interface Client {
  call(method: string, params?: unknown): Promise<RpcResponse>;
  result(method: string, params?: unknown): Promise<any>;
  streamToEnd(params: Record<string, unknown>): Promise<Chunk>;
  close(): Promise<void>;
}

async function connect(transport: 'http' | 'tcp', server: TestServer): Promise<Client> {
  if (transport === 'http') {
    const http = new HttpRpc(server.url);
    return {
      call: (method, params) => http.call(method, params),
      result: (method, params) => http.result(method, params),
      streamToEnd: async (params) => (await http.drain((await http.start(params)).stream_id)).last,
      close: async () => undefined,
    };
  }
  const tcp = await TcpRpc.connect(server.addresses.tcp!);
  return {
    call: (method, params) => tcp.call(method, params),
    result: (method, params) => tcp.result(method, params),
    streamToEnd: async (params) => (await tcp.stream(params)).last,
    close: () => tcp.close(),
  };
}

for (const transport of ['http', 'tcp'] as const)
  describe(`The RKLLM API over ${transport}`, function () {
    this.timeout(120_000);
    let server: TestServer;
    let rpc: Client;
    let tiny: TinyModel;
    let dir: string;

    const run = (params: Record<string, unknown>) => rpc.result('rkllm_run', { max_new_tokens: 40, ...greedy, ...params });
    /** A run on an empty KV cache, so that perf.prefill_tokens counts the whole input (nothing is reused). */
    const cold = async (params: Record<string, unknown>) => {
      await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 0 });
      return run(params);
    };

    before(async () => {
      tiny = await tinyModel();
      dir = mkdtempSync(join(tmpdir(), 'rkllm-api-'));
      server = await startTestServer({
        settings: { engine: { parallel: 2, max_context_len: CONTEXT }, folders: { prompt_caches: dir, lora_adapters: dir } },
      });
      rpc = await connect(transport, server);
    });

    after(async () => {
      await rpc.close();
      await server.close();
    });

    describe('constants, defaults and the method list', () => {
      it('rkllm_get_constants returns every enum and constant of rkllm.h', async () => {
        const res = await rpc.result('rkllm_get_constants', {});
        expect(res.enums.LLMCallState).to.deep.equal({
          RKLLM_RUN_NORMAL: 0,
          RKLLM_RUN_WAITING: 1,
          RKLLM_RUN_FINISH: 2,
          RKLLM_RUN_ERROR: 3,
        });
        expect(res.enums.RKLLMInputType).to.deep.equal({
          RKLLM_INPUT_PROMPT: 0,
          RKLLM_INPUT_TOKEN: 1,
          RKLLM_INPUT_EMBED: 2,
          RKLLM_INPUT_MULTIMODAL: 3,
        });
        expect(res.enums.RKLLMInferMode).to.deep.equal({
          RKLLM_INFER_GENERATE: 0,
          RKLLM_INFER_GET_LAST_HIDDEN_LAYER: 1,
          RKLLM_INFER_GET_LOGITS: 2,
        });
        expect(res.constants).to.deep.equal({ CPU0: 1, CPU1: 2, CPU2: 4, CPU3: 8, CPU4: 16, CPU5: 32, CPU6: 64, CPU7: 128 });
      });

      it('rkllm_createDefaultParam returns every RKLLMParam field, extend_param included', async () => {
        const param = await rpc.result('rkllm_createDefaultParam', {});
        expect(param).to.have.keys([
          'model_path',
          'max_context_len',
          'max_new_tokens',
          'top_k',
          'n_keep',
          'top_p',
          'temperature',
          'repeat_penalty',
          'frequency_penalty',
          'presence_penalty',
          'mirostat',
          'mirostat_tau',
          'mirostat_eta',
          'skip_special_token',
          'is_async',
          'img_start',
          'img_end',
          'img_content',
          'extend_param',
        ]);
        expect(param.extend_param).to.have.keys([
          'base_domain_id',
          'embed_flash',
          'enabled_cpus_num',
          'enabled_cpus_mask',
          'n_batch',
          'use_cross_attn',
        ]);
      });

      it('rkllm_list_functions lists every method with a strict schema and the engine support', async () => {
        const res = await rpc.result('rkllm_list_functions', {});
        const names = res.functions.map((f: { name: string }) => f.name);
        for (const name of [
          'rkllm_createDefaultParam',
          'rkllm_init',
          'rkllm_load_lora',
          'rkllm_load_prompt_cache',
          'rkllm_release_prompt_cache',
          'rkllm_destroy',
          'rkllm_run',
          'rkllm_run_async',
          'rkllm_abort',
          'rkllm_is_running',
          'rkllm_clear_kv_cache',
          'rkllm_get_kv_cache_size',
          'rkllm_set_chat_template',
          'rkllm_set_function_tools',
          'rkllm_set_cross_attn_params',
          'rkllm_list_functions',
          'rkllm_get_constants',
        ]) {
          expect(names).to.include(name);
        }
        for (const f of res.functions) {
          expect(f.description, f.name).to.be.a('string').that.is.not.empty;
          expect(f.params.type, f.name).to.equal('object');
          expect(f.params.additionalProperties, f.name).to.equal(false);
        }
        expect(res.functions.find((f: { name: string }) => f.name === 'rkllm_set_cross_attn_params').supported).to.equal(false);
        expect(res.functions.find((f: { name: string }) => f.name === 'rkllm_load_lora').supported).to.equal(true);
        expect(res.engine.name).to.equal('llama.cpp');
        expect(res.engine.features).to.include({
          input_embed: true,
          input_multimodal: false,
          cross_attn: false,
          infer_logits: true,
          lora: true,
        });
      });

      it('every method refuses an unknown field with -32602 naming it', async () => {
        const { functions } = await rpc.result('rkllm_list_functions', {});
        for (const { name } of functions) {
          const res = await rpc.call(name, { promt_input: 'typo' });
          expectError(res, -32602, /unknown field "promt_input"/);
        }
      });
    });

    describe('input types', () => {
      it('TOKEN input gives the same text as the equivalent prompt', async () => {
        const prompt = await cold({ prompt_input: PROMPT });
        const tokens = await cold({ input_type: 1, token_input: { input_ids: tiny.tokenIds(PROMPT) } });
        expect(tokens.text).to.equal(prompt.text);
        expect(tokens.perf.prefill_tokens).to.equal(prompt.perf.prefill_tokens);
      });

      it("EMBED input of the tokens' embedding rows gives the same text as the prompt", async () => {
        const ids = tiny.tokenIds(PROMPT);
        const prompt = await run({ prompt_input: PROMPT });
        const embed = await run({ input_type: 2, embed_input: { embed: await tiny.embeddingRows(ids), n_tokens: ids.length } });
        expect(embed.text).to.equal(prompt.text);
      });

      it('EMBED input that is no row of the embedding table is not supported by this engine (-32005)', async () => {
        const res = await rpc.call('rkllm_run', {
          input_type: 2,
          embed_input: { embed: Array.from({ length: tiny.embdSize }, (_, i) => i / 7), n_tokens: 1 },
        });
        expectError(res, -32005, /EMBED input .* not supported by the llama\.cpp engine: vector 0/);
        expect(res.error!.data).to.include({ engine: 'llama.cpp', feature: 'input_embed' });
      });

      it('MULTIMODAL input is not supported by this engine (-32005)', async () => {
        const res = await rpc.call('rkllm_run', { input_type: 3, multimodal_input: { prompt: 'x' } });
        expectError(res, -32005, /MULTIMODAL input .* not supported by the llama\.cpp engine/);
        expect(res.error!.data).to.include({ engine: 'llama.cpp', feature: 'input_multimodal' });
      });
    });

    describe('inference modes', () => {
      it('GET_LAST_HIDDEN_LAYER returns the last hidden state with embd_size and num_tokens', async () => {
        const res = await run({ prompt_input: PROMPT, mode: 1 });
        const layer = res.last_hidden_layer;
        expect(layer.embd_size).to.equal(tiny.embdSize);
        expect(layer.num_tokens).to.equal(1);
        expect(layer.hidden_states).to.have.lengthOf(layer.embd_size * layer.num_tokens);
        expect(layer.hidden_states.every(Number.isFinite)).to.equal(true);
        expect(res.text).to.equal('');
        expect(res.perf.prefill_tokens).to.equal(1 + tiny.tokenIds(PROMPT).length);
      });

      it('GET_LOGITS returns normalised log-probabilities over the vocabulary, and says so', async () => {
        const res = await run({ prompt_input: PROMPT, mode: 2 });
        const { logits, vocab_size, num_tokens, normalization } = res.logits;
        expect(normalization).to.equal('log_softmax');
        expect(vocab_size).to.equal(tiny.vocabSize);
        expect(num_tokens).to.equal(1);
        expect(logits).to.have.lengthOf(vocab_size * num_tokens);
        expect(Math.abs(logSumExp(logits))).to.be.below(1e-3);
        const next = await run({ prompt_input: PROMPT, max_new_tokens: 1 });
        expect(argmax(logits)).to.equal(tiny.tokenIds(next.text)[0]);
      });

      it('the logits are the log-softmax of output.weight applied to the last hidden state', async () => {
        const { last_hidden_layer: hidden } = await run({ prompt_input: PROMPT, mode: 1 });
        const { logits } = (await run({ prompt_input: PROMPT, mode: 2 })).logits;
        const weight = await tiny.outputWeight();
        const raw = Array.from({ length: tiny.vocabSize }, (_, token) =>
          hidden.hidden_states.reduce((sum: number, h: number, i: number) => sum + h * weight[token * tiny.embdSize + i]!, 0),
        );
        const norm = logSumExp(raw);
        // Compare the likely tokens; far-off ones are floored by float32 underflow.
        for (let token = 0; token < tiny.vocabSize; token++) {
          if (logits[token] > -20) expect(logits[token]).to.be.closeTo(raw[token]! - norm, 1e-2);
        }
      });

      it('rkllm_run_async delivers the outputs in the final chunk', async () => {
        const last = await rpc.streamToEnd({ prompt_input: PROMPT, mode: 2 });
        expect(last.end).to.equal(true);
        expect((last as any).logits.vocab_size).to.equal(tiny.vocabSize);
      });

      it('flat and nested parameters both validate', async () => {
        const flat = await run({ input_type: 1, token_input: { input_ids: tiny.tokenIds(PROMPT) }, mode: 2 });
        const nested = await rpc.result('rkllm_run', {
          input: { input_type: 1, token_input: { input_ids: tiny.tokenIds(PROMPT) } },
          infer_params: { mode: 2, sampling_params: greedy },
        });
        expect(nested.logits.logits).to.deep.equal(flat.logits.logits);
      });
    });

    describe('conversation', () => {
      it('keep_history 1 continues the conversation on the next run; 0 starts fresh', async () => {
        const first = await run({ prompt_input: 'Alice said', keep_history: 1, max_new_tokens: 20 });
        const second = await run({ prompt_input: ' and then', keep_history: 1, max_new_tokens: 20 });
        const whole = await cold({ prompt_input: `Alice said${first.text} and then`, max_new_tokens: 20 });
        expect(second.text).to.equal(whole.text);
        expect(second.perf.prefill_tokens).to.be.below(whole.perf.prefill_tokens);
        const fresh = await run({ prompt_input: ' and then', keep_history: 0, max_new_tokens: 20 });
        const alone = await run({ prompt_input: ' and then', max_new_tokens: 20 });
        expect(fresh.text).to.equal(alone.text);
      });

      it('rkllm_set_chat_template wraps prompts: more prompt tokens, and the output of the wrapped prompt', async () => {
        const template = { system_prompt: 'A story. ', prompt_prefix: 'Q: ', prompt_postfix: ' A:' };
        const plain = await cold({ prompt_input: PROMPT });
        await rpc.result('rkllm_set_chat_template', template);
        try {
          const wrapped = await cold({ prompt_input: PROMPT });
          // Each part is tokenized on its own.
          const parts = [template.system_prompt, template.prompt_prefix, PROMPT, template.prompt_postfix];
          expect(plain.perf.prefill_tokens).to.equal(1 + tiny.tokenIds(PROMPT).length);
          expect(wrapped.perf.prefill_tokens).to.equal(1 + parts.reduce((sum, part) => sum + tiny.tokenIds(part).length, 0));
          expect(wrapped.perf.prefill_tokens).to.be.above(plain.perf.prefill_tokens);
          await rpc.result('rkllm_set_chat_template', { system_prompt: '', prompt_prefix: '', prompt_postfix: '' });
          const spelled = await run({
            prompt_input: `${template.system_prompt}${template.prompt_prefix}${PROMPT}${template.prompt_postfix}`,
          });
          expect(wrapped.text).to.equal(spelled.text);
          expect(wrapped.text).to.not.equal(plain.text);
        } finally {
          await rpc.result('rkllm_set_chat_template', { system_prompt: '', prompt_prefix: '', prompt_postfix: '' });
        }
      });

      it('a chat template that overflows the context is refused with -32602', async () => {
        const res = await rpc.call('rkllm_set_chat_template', {
          system_prompt: 'x'.repeat(CONTEXT),
          prompt_prefix: '',
          prompt_postfix: '',
        });
        expectError(res, -32602, /leaves no room for a prompt/);
      });

      it('rkllm_set_function_tools puts the tools in the system prompt; role "tool" feeds a result back', async () => {
        const tools = JSON.stringify([
          { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
        ]);
        const plain = await cold({ prompt_input: PROMPT });
        await rpc.result('rkllm_set_function_tools', { system_prompt: 'You can use tools.', tools, tool_response_str: 'result' });
        try {
          const offered = await cold({ prompt_input: PROMPT });
          expect(offered.perf.prefill_tokens).to.be.greaterThan(plain.perf.prefill_tokens + tools.length);
          await rpc.result('rkllm_set_function_tools', { system_prompt: '', tools: '', tool_response_str: 'result' });
          const fed = await cold({ role: 'tool', prompt_input: '12:00' });
          const spelled = await cold({ prompt_input: '<result>\n12:00\n</result>' });
          expect(fed.text).to.equal(spelled.text);
          expect(fed.perf.prefill_tokens).to.equal(spelled.perf.prefill_tokens);
        } finally {
          await rpc.result('rkllm_set_function_tools', { system_prompt: '', tools: '', tool_response_str: '' });
        }
        const withdrawn = await cold({ prompt_input: PROMPT });
        expect(withdrawn.perf.prefill_tokens).to.equal(plain.perf.prefill_tokens);
      });

      it('a tools string that is not a JSON array is refused with -32602', async () => {
        expectError(
          await rpc.call('rkllm_set_function_tools', { system_prompt: '', tools: '{not json', tool_response_str: 'r' }),
          -32602,
          /not JSON/,
        );
        expectError(
          await rpc.call('rkllm_set_function_tools', { system_prompt: '', tools: '{"a":1}', tool_response_str: 'r' }),
          -32602,
          /JSON array/,
        );
      });

      it('enable_thinking is accepted; the tiny model has no <think> token, so it changes nothing', async () => {
        const on = await cold({ prompt_input: PROMPT, enable_thinking: true });
        const off = await cold({ prompt_input: PROMPT, enable_thinking: false });
        expect(on.text).to.equal(off.text);
        expect(on.perf.prefill_tokens).to.equal(off.perf.prefill_tokens);
      });
    });

    describe('LoRA adapters', () => {
      let bang: number;

      before(async () => {
        bang = tiny.tokenIds('!')[0]!;
        await writeLogitBoostLora(join(dir, 'bang.gguf'), tiny.path, { tokens: [bang], boost: 10 });
      });

      it('a run that names a loaded adapter in lora_params changes its output; others do not', async () => {
        const base = await run({ prompt_input: PROMPT });
        await rpc.result('rkllm_load_lora', { lora_adapter_path: 'bang.gguf', lora_adapter_name: 'bang' });
        const adapted = await run({ prompt_input: PROMPT, lora_params: { lora_adapter_name: 'bang' } });
        expect(adapted.text).to.equal('!'.repeat(40));
        expect((await run({ prompt_input: PROMPT })).text).to.equal(base.text);
        await rpc.result('rkllm_load_lora', { lora_adapter_path: 'bang.gguf', lora_adapter_name: 'off', scale: 0 });
        expect((await run({ prompt_input: PROMPT, lora_params: { lora_adapter_name: 'off' } })).text).to.equal(base.text);
      });

      it('refuses an unknown adapter name, a duplicate name and a missing file with -32602', async () => {
        expectError(
          await rpc.call('rkllm_run', { prompt_input: PROMPT, lora_params: { lora_adapter_name: 'nope' } }),
          -32602,
          /names no loaded adapter/,
        );
        expectError(
          await rpc.call('rkllm_load_lora', { lora_adapter_path: 'bang.gguf', lora_adapter_name: 'bang' }),
          -32602,
          /already loaded/,
        );
        const missing = await rpc.call('rkllm_load_lora', { lora_adapter_path: 'missing.gguf', lora_adapter_name: 'm' });
        expectError(missing, -32602, /"lora_adapter_path" names no file/);
        expect(missing.error!.data.reason).to.equal('file_not_found');
      });
    });

    describe('prompt caches', () => {
      const prompt = TINY_MODEL_PROMPTS.long;

      it('a cached run needs fewer prefill tokens and gives the same text', async () => {
        const path = join(dir, 'alice.cache');
        const saved = await cold({
          prompt_input: prompt,
          prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: basename(path) },
        });
        expect(existsSync(path)).to.equal(true);
        const uncached = await cold({ prompt_input: prompt });
        expect(uncached.perf.prefill_tokens).to.equal(saved.perf.prefill_tokens);
        await rpc.result('rkllm_load_prompt_cache', { prompt_cache_path: basename(path) });
        await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 0 });
        const cached = await run({ prompt_input: prompt });
        expect(cached.perf.prefill_tokens).to.equal(1);
        expect(cached.text).to.equal(saved.text);
        await rpc.result('rkllm_release_prompt_cache', {});
        expect((await cold({ prompt_input: prompt })).perf.prefill_tokens).to.equal(saved.perf.prefill_tokens);
      });

      it('a prompt cache saved by one server serves another', async () => {
        const path = join(dir, 'shared.cache');
        const saved = await run({ prompt_input: prompt, prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: basename(path) } });
        // llama.cpp sequence state files load only into a context with as many sequences: same parallel setting.
        const other = await startTestServer({
          settings: { engine: { parallel: 2, max_context_len: CONTEXT }, folders: { prompt_caches: dir } },
        });
        try {
          const otherRpc = new HttpRpc(other.url);
          await otherRpc.result('rkllm_load_prompt_cache', { prompt_cache_path: basename(path) });
          const cached = await otherRpc.result('rkllm_run', { prompt_input: prompt, max_new_tokens: 40, ...greedy });
          expect(cached.perf.prefill_tokens).to.equal(1);
          expect(cached.text).to.equal(saved.text);
        } finally {
          await other.close();
        }
      });

      it('refuses a missing file and a file that is not a prompt cache with -32602', async () => {
        expectError(await rpc.call('rkllm_load_prompt_cache', { prompt_cache_path: 'none.cache' }), -32602, /names no file/);
        writeFileSync(join(dir, 'junk.cache'), 'not a cache');
        expectError(await rpc.call('rkllm_load_prompt_cache', { prompt_cache_path: 'junk.cache' }), -32602, /not a prompt cache/);
        const res = await rpc.call('rkllm_run', {
          prompt_input: PROMPT,
          prompt_cache_params: { save_prompt_cache: 1, prompt_cache_path: 'no/such/dir/x' },
        });
        expectError(res, -32602, /folder that does not exist: no\/such\/dir\/x$/);
      });
    });

    describe('KV cache', () => {
      it('rkllm_get_kv_cache_size reports the real cache, and rkllm_clear_kv_cache clears it', async () => {
        await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 0 });
        expect((await rpc.result('rkllm_get_kv_cache_size', {})).cache_sizes).to.deep.equal([0, 0]);
        const res = await run({ prompt_input: PROMPT, keep_history: 1, max_new_tokens: 10 });
        const sizes: number[] = (await rpc.result('rkllm_get_kv_cache_size', {})).cache_sizes;
        // The last generated token is sampled but not yet evaluated.
        expect(Math.max(...sizes)).to.equal(res.perf.prefill_tokens + res.perf.generate_tokens - 1);
        const cleared = await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 0 });
        expect(cleared.cache_sizes).to.deep.equal([0, 0]);
      });

      it('keep_system_prompt keeps BOS and the system prompt', async () => {
        await rpc.result('rkllm_set_chat_template', { system_prompt: 'SYS. ', prompt_prefix: '', prompt_postfix: '' });
        try {
          await run({ prompt_input: PROMPT, keep_history: 1, max_new_tokens: 5 });
          const { cache_sizes } = await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 1 });
          expect(Math.max(...cache_sizes)).to.equal(1 + 'SYS. '.length);
        } finally {
          await rpc.result('rkllm_set_chat_template', { system_prompt: '', prompt_prefix: '', prompt_postfix: '' });
          await rpc.result('rkllm_clear_kv_cache', { keep_system_prompt: 0 });
        }
      });

      it('start_pos/end_pos clear a range of one slot', async () => {
        await run({ prompt_input: PROMPT, keep_history: 1, max_new_tokens: 10 });
        const before: number[] = (await rpc.result('rkllm_get_kv_cache_size', {})).cache_sizes;
        const { cache_sizes } = await rpc.result('rkllm_clear_kv_cache', { start_pos: [2, 2], end_pos: [5, 5] });
        expect(cache_sizes).to.deep.equal(before.map((n) => (n > 2 ? n - (Math.min(n, 5) - 2) : n)));
      });

      it('refuses negative positions and unpaired ranges with -32602', async () => {
        expectError(await rpc.call('rkllm_clear_kv_cache', { start_pos: [-1], end_pos: [3] }), -32602, /start_pos/);
        expectError(await rpc.call('rkllm_clear_kv_cache', { start_pos: [1] }), -32602, /go together/);
      });
    });

    describe('unsupported by this engine', () => {
      it('rkllm_set_cross_attn_params answers -32005 naming the engine and the feature', async () => {
        const res = await rpc.call('rkllm_set_cross_attn_params', {
          encoder_k_cache: [0],
          encoder_v_cache: [0],
          encoder_mask: [0],
          encoder_pos: [0],
          num_tokens: 1,
        });
        expectError(res, -32005, /cross-attention .* not supported by the llama\.cpp engine/);
        expect(res.error!.data).to.include({ engine: 'llama.cpp', feature: 'cross_attn' });
      });

      it('mirostat sampling answers -32005', async () => {
        const res = await rpc.call('rkllm_run', { prompt_input: PROMPT, mirostat: 2 });
        expectError(res, -32005, /mirostat/);
      });

      it('an adapter with GET_LAST_HIDDEN_LAYER, and a prompt cache saved through an adapter, answer -32005', async () => {
        const path = join(dir, 'plain.gguf');
        await writeLogitBoostLora(path, tiny.path, { tokens: [], boost: 0 });
        await rpc.result('rkllm_load_lora', { lora_adapter_path: basename(path), lora_adapter_name: 'plain' });
        const lora = { lora_adapter_name: 'plain' };
        const hidden = await rpc.call('rkllm_run', { prompt_input: PROMPT, mode: 1, lora_params: lora });
        expectError(hidden, -32005, /LoRA adapters .* not supported by the llama\.cpp engine: GET_LAST_HIDDEN_LAYER/);
        const cache = { save_prompt_cache: 1, prompt_cache_path: 'lora.cache' };
        const saved = await rpc.call('rkllm_run', { prompt_input: PROMPT, lora_params: lora, prompt_cache_params: cache });
        expectError(saved, -32005, /prompt caches .* not supported by the llama\.cpp engine: a prompt cache is saved from the base model/);
      });
    });

    describe('bad input gets -32602 saying what is wrong, and the server keeps serving', () => {
      const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
        ['a wrong type', 'rkllm_run', { prompt_input: PROMPT, top_k: 'many' }, /"top_k" must be integer; got "many"/],
        [
          'a token id outside the vocabulary',
          'rkllm_run',
          { input_type: 1, token_input: { input_ids: [5, 99999] } },
          /input_ids\[1\]" must be a token id .*got 99999/,
        ],
        [
          'an embedding of the wrong length',
          'rkllm_run',
          { input_type: 2, embed_input: { embed: [0.5, 0.25, 1], n_tokens: 1 } },
          /n_tokens x n_embd = 1 x \d+ = \d+ values; got 3/,
        ],
        ['a negative position', 'rkllm_clear_kv_cache', { start_pos: -3, end_pos: 2 }, /start_pos/],
        ['a missing LoRA file', 'rkllm_load_lora', { lora_adapter_path: 'nonexistent/a.gguf', lora_adapter_name: 'x' }, /names no file/],
        ['a missing prompt cache', 'rkllm_load_prompt_cache', { prompt_cache_path: 'nonexistent/c.bin' }, /names no file/],
        [
          'a tools string that is not JSON',
          'rkllm_set_function_tools',
          { system_prompt: '', tools: 'tools!', tool_response_str: '' },
          /not JSON/,
        ],
        [
          'a chat template that overflows the context',
          'rkllm_set_chat_template',
          { system_prompt: '', prompt_prefix: 'y'.repeat(CONTEXT * 2), prompt_postfix: '' },
          /no room/,
        ],
        [
          'a wrong type in rkllm_init',
          'rkllm_init',
          { model_path: 'x', max_context_len: 'big' },
          /"max_context_len" must be integer; got "big"/,
        ],
      ];
      for (const [what, method, params, pattern] of cases) {
        it(what, async () => {
          expectError(await rpc.call(method, params), -32602, pattern);
          expect((await rpc.result('rkllm_is_running', {})).running).to.equal(false);
        });
      }
    });
  });
