// The chat: conversations with the server's model through its OpenAI API. Each turn is a
// POST /v1/chat/completions with stream: true and the whole history; the reply streams in as
// server-sent events. Conversations and settings are kept in localStorage (conversations.js).
import {
  loadApiKey,
  loadConversations,
  loadCurrentId,
  loadSettings,
  newConversation,
  saveApiKey,
  saveConversations,
  saveCurrentId,
  saveSettings,
  titleFor,
} from './conversations.js';
import { copyText, renderMarkdown } from './markdown.js';

const $ = (id) => document.getElementById(id);
const ui = {
  newChat: $('new-chat'),
  list: $('conversations'),
  keyField: $('api-key-field'),
  key: $('api-key'),
  model: $('model'),
  system: $('system-prompt'),
  maxNewTokens: $('max-new-tokens'),
  temperature: $('temperature'),
  title: $('title'),
  status: $('status'),
  messages: $('messages'),
  empty: $('empty'),
  error: $('error'),
  composer: $('composer'),
  message: $('message'),
  send: $('send'),
  stop: $('stop'),
};

const state = {
  conversations: loadConversations(),
  /** The open conversation: one of `conversations`, or a new one not kept until its first message. */
  current: null,
  settings: loadSettings(),
  apiKey: loadApiKey(),
  modelsLoaded: false,
  /** The reply being generated: { conversation, reply, element, controller }. */
  inFlight: null,
};

function showError(message) {
  ui.error.textContent = message;
}

function headers() {
  const h = { 'content-type': 'application/json' };
  if (state.apiKey) h.authorization = `Bearer ${state.apiKey}`;
  return h;
}

/** The message of an error answer (OpenAI's `{"error": {"message"}}`), or its status. */
async function errorOf(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return `${body.error.message} (HTTP ${res.status})`;
  } catch {
    // Not JSON: the status says enough.
  }
  return `HTTP ${res.status} ${res.statusText}`;
}

function updateControls() {
  const busy = state.inFlight !== null;
  ui.send.disabled = busy || !state.modelsLoaded;
  ui.stop.disabled = !busy;
  ui.messages.setAttribute('aria-busy', String(busy));
  for (const button of ui.messages.querySelectorAll('.regenerate')) button.disabled = busy;
}

// --- Rendering ------------------------------------------------------------------------------

function statsText(stats) {
  const parts = [];
  if (stats.ttftMs !== undefined) parts.push(`Time to first token: ${stats.ttftMs} ms`);
  if (stats.tokensPerSecond !== undefined) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s`);
  parts.push(`${stats.tokens} token${stats.tokens === 1 ? '' : 's'}`);
  if (stats.finish) parts.push(stats.finish === 'stopped' ? 'stopped' : `finish: ${stats.finish}`);
  return parts.join(' · ');
}

function button(text, className, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = text;
  if (label) b.setAttribute('aria-label', label);
  return b;
}

/** Fills a message's element from the message: its text, and for a reply its statistics and actions. */
function fillMessage(element, message, isLast) {
  element.replaceChildren();
  const who = document.createElement('p');
  who.className = 'who';
  who.textContent = message.role === 'user' ? 'You' : 'Assistant';
  const content = document.createElement('div');
  content.className = 'content';
  // User text is only ever text: typed HTML stays characters on the screen.
  if (message.role === 'user') content.textContent = message.content;
  else renderMarkdown(content, message.content);
  element.append(who, content);
  if (message.pending) {
    element.classList.add('pending');
    return;
  }
  element.classList.remove('pending');
  if (message.error) {
    const error = document.createElement('p');
    error.className = 'message-error';
    error.textContent = message.error;
    element.append(error);
  }
  if (message.role !== 'assistant') return;
  if (message.stats) {
    const stats = document.createElement('p');
    stats.className = 'stats';
    stats.textContent = statsText(message.stats);
    element.append(stats);
  }
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(button('Copy', 'copy-reply', 'Copy reply'));
  if (isLast) {
    const regenerate = button('Regenerate', 'regenerate');
    regenerate.disabled = state.inFlight !== null;
    actions.append(regenerate);
  }
  element.append(actions);
}

function messageElement(message, index, messages) {
  const element = document.createElement('article');
  element.className = `message ${message.role}`;
  element.dataset.index = String(index);
  fillMessage(element, message, index === messages.length - 1);
  return element;
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function renderMessages() {
  const { messages } = state.current;
  const elements = messages.map(messageElement);
  ui.messages.replaceChildren(ui.empty, ...elements);
  ui.empty.hidden = messages.length > 0;
  const flight = state.inFlight;
  if (flight && flight.conversation === state.current) flight.element = elements[messages.indexOf(flight.reply)];
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderList() {
  const items = state.conversations.map((conversation) => {
    const item = document.createElement('li');
    const open = button(conversation.title || 'Untitled', 'open-conversation');
    if (conversation === state.current) open.setAttribute('aria-current', 'true');
    open.addEventListener('click', () => switchTo(conversation));
    const remove = button('×', 'delete-conversation', `Delete: ${conversation.title || 'Untitled'}`);
    remove.addEventListener('click', () => deleteConversation(conversation));
    item.append(open, remove);
    return item;
  });
  ui.list.replaceChildren(...items);
}

function render() {
  ui.title.textContent = state.current.title || 'New chat';
  renderList();
  renderMessages();
  updateControls();
}

function save() {
  saveConversations(state.conversations);
  saveCurrentId(state.conversations.includes(state.current) ? state.current.id : null);
}

// --- Conversations --------------------------------------------------------------------------

function switchTo(conversation) {
  state.current = conversation;
  saveCurrentId(conversation.id);
  showError('');
  render();
}

function startNew() {
  if (state.current && state.current.messages.length === 0) return ui.message.focus();
  switchTo(newConversation());
  ui.message.focus();
}

function deleteConversation(conversation) {
  if (state.inFlight?.conversation === conversation) state.inFlight.controller.abort();
  state.conversations = state.conversations.filter((c) => c !== conversation);
  if (state.current === conversation) state.current = state.conversations[0] ?? newConversation();
  save();
  render();
}

// --- Generation -----------------------------------------------------------------------------

/** The request's messages: the system prompt, then every user and assistant turn with text. */
function history(conversation) {
  const messages = [];
  const system = ui.system.value.trim();
  if (system) messages.push({ role: 'system', content: system });
  for (const m of conversation.messages) {
    if (m.pending || (m.role === 'assistant' && m.content === '')) continue;
    messages.push({ role: m.role, content: m.content });
  }
  return messages;
}

function requestBody(conversation) {
  const body = { model: ui.model.value, messages: history(conversation), stream: true, stream_options: { include_usage: true } };
  const maxTokens = Number.parseInt(ui.maxNewTokens.value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  if (ui.temperature.value.trim() !== '') body.temperature = Number(ui.temperature.value);
  return body;
}

/** Reads an OpenAI event stream, calling `onEvent` with each event's parsed data, up to `[DONE]`. */
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value, { stream: !done });
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = done ? '' : events.pop();
    for (const event of events) {
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (data === '') continue;
      if (data === '[DONE]') return;
      onEvent(JSON.parse(data));
    }
    if (done) return;
  }
}

/** The shortest time between the first token and the end over which a rate of generation is measured. */
const MIN_SPAN_MS = 20;

/** Streams the next reply of `conversation` into a new assistant message. */
async function generate(conversation) {
  const body = requestBody(conversation);
  const reply = { role: 'assistant', content: '', pending: true };
  conversation.messages.push(reply);
  conversation.updated = Date.now();
  const flight = { conversation, reply, element: null, controller: new AbortController() };
  state.inFlight = flight;
  showError('');
  render();
  const sentAt = performance.now();
  let firstAt;
  let chunks = 0;
  let finish;
  let usage;
  let frame = 0;
  const paint = () => {
    frame = 0;
    if (!flight.element?.isConnected) return;
    const follow = nearBottom();
    fillMessage(flight.element, reply, true);
    if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify(body),
      signal: flight.controller.signal,
    });
    if (!res.ok) throw new Error(await errorOf(res));
    await readEvents(res, (event) => {
      if (event.error) throw new Error(event.error.message);
      if (event.usage) usage = event.usage;
      const choice = event.choices?.[0];
      if (!choice) return;
      const text = choice.delta?.content;
      if (text) {
        firstAt ??= performance.now();
        chunks++;
        reply.content += text;
        frame ||= requestAnimationFrame(paint);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
  } catch (err) {
    if (flight.controller.signal.aborted) finish = 'stopped';
    else reply.error = err.message;
  }
  if (frame) cancelAnimationFrame(frame);
  const endedAt = performance.now();
  const tokens = usage?.completion_tokens ?? chunks;
  const stats = { tokens, finish };
  if (firstAt !== undefined) {
    stats.ttftMs = Math.round(firstAt - sentAt);
    // The rate of generation: the tokens after the first, over the time since the first. A reply
    // that arrived nearly all at once (a fast model, or a proxy that buffers) has no such time to
    // measure: then all the tokens over the time since sending.
    if (endedAt - firstAt >= MIN_SPAN_MS && tokens > 1) stats.tokensPerSecond = ((tokens - 1) * 1000) / (endedAt - firstAt);
    else if (tokens > 0 && endedAt > sentAt) stats.tokensPerSecond = (tokens * 1000) / (endedAt - sentAt);
  }
  reply.stats = stats;
  delete reply.pending;
  state.inFlight = null;
  conversation.updated = Date.now();
  if (state.conversations.includes(conversation)) save();
  if (state.current === conversation) render();
  else updateControls();
  if (reply.error && state.current === conversation) showError(reply.error);
}

function send() {
  const text = ui.message.value.trim();
  if (text === '' || state.inFlight || !state.modelsLoaded) return;
  const conversation = state.current;
  if (!state.conversations.includes(conversation)) state.conversations.unshift(conversation);
  if (!conversation.title) conversation.title = titleFor(text);
  conversation.messages.push({ role: 'user', content: text });
  ui.message.value = '';
  save();
  void generate(conversation);
}

function regenerate() {
  const conversation = state.current;
  if (state.inFlight || conversation.messages.at(-1)?.role !== 'assistant') return;
  conversation.messages.pop();
  save();
  void generate(conversation);
}

// --- Models and settings --------------------------------------------------------------------

const NEEDS_KEY = 'This server needs an API key: enter it in Settings.';

async function loadModels() {
  state.modelsLoaded = false;
  updateControls();
  ui.status.textContent = 'Loading the list of models…';
  const res = await fetch('/v1/models', { headers: headers() });
  if (res.status === 503) {
    // The server is still loading the model: ask again in a moment.
    ui.status.textContent = 'The server is loading the model…';
    const wait = Number(res.headers.get('retry-after')) || 1;
    setTimeout(() => loadModels().catch((err) => showError(err.message)), wait * 1000);
    return;
  }
  if (!res.ok) {
    ui.status.textContent = res.status === 401 ? NEEDS_KEY : 'No models.';
    if (res.status !== 401) showError(`The list of models: ${await errorOf(res)}`);
    return;
  }
  const { data } = await res.json();
  ui.model.replaceChildren(
    ...data.map((m) => {
      const option = document.createElement('option');
      option.value = option.textContent = m.id;
      return option;
    }),
  );
  if (data.some((m) => m.id === state.settings.model)) ui.model.value = state.settings.model;
  state.modelsLoaded = data.length > 0;
  ui.status.textContent = data.length > 0 ? '' : 'The server lists no models.';
  showError('');
  updateControls();
}

function bindSettings() {
  const fields = { model: ui.model, system: ui.system, maxNewTokens: ui.maxNewTokens, temperature: ui.temperature };
  for (const [name, input] of Object.entries(fields)) {
    if (name !== 'model' && typeof state.settings[name] === 'string') input.value = state.settings[name];
    input.addEventListener('change', () => {
      state.settings[name] = input.value;
      saveSettings(state.settings);
    });
  }
}

// --- Start ----------------------------------------------------------------------------------

function bindEvents() {
  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  ui.message.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener('click', () => state.inFlight?.controller.abort());
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.inFlight) state.inFlight.controller.abort();
  });
  ui.newChat.addEventListener('click', startNew);
  ui.messages.addEventListener('click', (event) => {
    const target = event.target.closest('button');
    if (!target) return;
    if (target.classList.contains('regenerate')) return regenerate();
    let text;
    if (target.classList.contains('copy-code')) text = target.parentElement.querySelector('pre').textContent;
    else if (target.classList.contains('copy-reply'))
      text = state.current.messages[Number(target.closest('.message').dataset.index)].content;
    else return;
    copyText(text).then(
      () => {
        target.textContent = 'Copied';
        setTimeout(() => (target.textContent = target.classList.contains('copy-code') ? 'Copy code' : 'Copy'), 1500);
      },
      (err) => showError(`Could not copy: ${err.message}`),
    );
  });
  ui.key.addEventListener('change', () => {
    state.apiKey = ui.key.value.trim();
    saveApiKey(state.apiKey);
    loadModels().catch((err) => showError(err.message));
  });
}

async function start() {
  const id = loadCurrentId();
  state.current = state.conversations.find((c) => c.id === id) ?? newConversation();
  bindSettings();
  bindEvents();
  render();
  const config = await (await fetch('/playground/config.json')).json();
  if (config.keys_required) {
    ui.keyField.hidden = false;
    ui.key.value = state.apiKey;
    if (!state.apiKey) {
      ui.status.textContent = NEEDS_KEY;
      return;
    }
  }
  await loadModels();
}

start().catch((err) => showError(`The chat could not start: ${err.message}`));
