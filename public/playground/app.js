// The playground: runs prompts over the server's WebSocket transport (JSON-RPC 2.0, one message
// per frame) and shows the chunks of rkllm_run_async as they arrive.
const $ = (id) => document.getElementById(id);
const ui = {
  connection: $('connection'),
  keyForm: $('key-form'),
  key: $('api-key'),
  runForm: $('run-form'),
  prompt: $('prompt'),
  maxNewTokens: $('max-new-tokens'),
  temperature: $('temperature'),
  topK: $('top-k'),
  send: $('send'),
  stop: $('stop'),
  output: $('output'),
  stats: $('stats'),
  error: $('error'),
};

/** Replies by JSON-RPC id: a stream answers its request many times. */
const handlers = new Map();
let socket = null;
let nextId = 1;
/** The run on screen: its request id, stream id and times. */
let current = null;

function showError(message) {
  ui.error.textContent = message;
}

function setReady(ready) {
  ui.send.disabled = !ready || current !== null;
  ui.stop.disabled = current === null;
}

function send(id, method, params) {
  socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
}

function call(method, params) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    handlers.set(id, (message) => {
      handlers.delete(id);
      if (message.error) reject(new Error(`${message.error.message} (${message.error.code})`));
      else resolve(message.result);
    });
    send(id, method, params);
  });
}

function connect(config, key) {
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${host}:${config.ws_port}`;
  ui.connection.textContent = `Connecting to ${url}…`;
  const own = new WebSocket(url);
  socket = own;
  socket.addEventListener('open', async () => {
    if (key !== undefined) {
      try {
        await call('authenticate', { api_key: key });
      } catch (err) {
        showError(`The key was refused: ${err.message}`);
        socket.close();
        ui.keyForm.hidden = false;
        return;
      }
      ui.keyForm.hidden = true;
    }
    showError('');
    ui.connection.textContent = `Connected to ${url}`;
    setReady(true);
  });
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    handlers.get(message.id)?.(message);
  });
  socket.addEventListener('close', () => {
    if (socket !== own) return;
    ui.connection.textContent = config.keys_required
      ? 'Disconnected: enter a key to connect.'
      : 'Disconnected: reload the page to connect again.';
    if (config.keys_required) ui.keyForm.hidden = false;
    for (const handler of [...handlers.values()]) handler({ error: { code: 0, message: 'the connection closed' } });
    setReady(false);
  });
}

function number(input) {
  return input.value.trim() === '' ? undefined : Number(input.value);
}

function runParams() {
  const params = { prompt_input: ui.prompt.value };
  const fields = { max_new_tokens: number(ui.maxNewTokens), temperature: number(ui.temperature), top_k: number(ui.topK) };
  for (const [field, value] of Object.entries(fields)) if (value !== undefined) params[field] = value;
  return params;
}

function statistics(run, chunk, endedAt) {
  const parts = [];
  if (run.firstAt !== null) parts.push(`Time to first token: ${Math.round(run.firstAt - run.sentAt)} ms`);
  const perf = chunk?.perf;
  let rate;
  if (perf && perf.generate_time_ms > 0) rate = (perf.generate_tokens * 1000) / perf.generate_time_ms;
  else if (run.firstAt !== null && endedAt > run.firstAt) rate = (run.chunks * 1000) / (endedAt - run.firstAt);
  if (rate !== undefined) parts.push(`${rate.toFixed(1)} tokens/s`);
  parts.push(`Finish reason: ${chunk?.finish_reason ?? 'error'}`);
  return parts.join(' · ');
}

function finish(chunk, error) {
  const run = current;
  handlers.delete(run.id);
  current = null;
  ui.output.setAttribute('aria-busy', 'false');
  ui.stats.textContent = statistics(run, chunk, performance.now());
  if (error) showError(`${error.message} (${error.code})`);
  setReady(socket?.readyState === WebSocket.OPEN);
}

function run() {
  const id = nextId++;
  current = { id, streamId: null, sentAt: performance.now(), firstAt: null, chunks: 0 };
  ui.output.textContent = '';
  ui.stats.textContent = '';
  showError('');
  ui.output.setAttribute('aria-busy', 'true');
  setReady(true);
  handlers.set(id, (message) => {
    if (message.error) return finish(null, message.error);
    const chunk = message.result.chunk;
    current.streamId = chunk.stream_id;
    if (chunk.delta !== '') {
      current.firstAt ??= performance.now();
      current.chunks++;
      ui.output.append(chunk.delta);
    }
    if (chunk.end) finish(chunk, chunk.error);
  });
  send(id, 'rkllm_run_async', runParams());
}

function stop() {
  if (!current) return;
  ui.stop.disabled = true;
  call('rkllm_abort', current.streamId ? { stream_id: current.streamId } : { request_id: current.id }).catch((err) =>
    showError(err.message),
  );
}

async function start() {
  ui.runForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!current && socket?.readyState === WebSocket.OPEN) run();
  });
  ui.prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) ui.runForm.requestSubmit();
  });
  ui.stop.addEventListener('click', stop);
  const config = await (await fetch('/playground/config.json')).json();
  if (config.ws_port === null) {
    ui.connection.textContent = 'The WebSocket transport is off.';
    showError('The playground streams over WebSocket: start the server with it enabled (--ws PORT).');
    return;
  }
  if (!config.keys_required) return connect(config);
  ui.connection.textContent = 'This server needs an API key.';
  ui.keyForm.hidden = false;
  ui.key.focus();
  ui.keyForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (socket && socket.readyState !== WebSocket.CLOSED) socket.close();
    connect(config, ui.key.value);
  });
}

start().catch((err) => showError(`The playground could not start: ${err.message}`));
