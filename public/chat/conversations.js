// What the chat keeps in the browser's localStorage: the conversations, which one is open, the
// settings and the API key. Nothing is sent anywhere but to this server's /v1 API.
const CONVERSATIONS = 'rkllm-mcp.chat.conversations';
const CURRENT = 'rkllm-mcp.chat.current';
const SETTINGS = 'rkllm-mcp.chat.settings';
const API_KEY = 'rkllm-mcp.chat.api-key';

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled (a private window): the chat still works, it is just not kept.
  }
}

/** A new, empty conversation. It is kept (and listed) once it has a message. */
export function newConversation() {
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  return { id, title: '', updated: Date.now(), messages: [] };
}

/** A conversation's title: its first message, shortened. */
export function titleFor(text) {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > 48 ? `${line.slice(0, 47)}…` : line;
}

/** The kept conversations, the most recently updated first. */
export function loadConversations() {
  const list = read(CONVERSATIONS, []);
  if (!Array.isArray(list)) return [];
  return list.filter((c) => c && typeof c.id === 'string' && Array.isArray(c.messages)).sort((a, b) => (b.updated ?? 0) - (a.updated ?? 0));
}

/** Keeps the conversations that have messages, without what only a reply in progress has. */
export function saveConversations(list) {
  const kept = list
    .filter((c) => c.messages.length > 0)
    .map((c) => ({ ...c, messages: c.messages.map(({ pending, ...message }) => message) }));
  write(CONVERSATIONS, kept);
}

export const loadCurrentId = () => read(CURRENT, null);
export const saveCurrentId = (id) => write(CURRENT, id);

/** The settings: model, system prompt, max new tokens, temperature (strings as typed). */
export function loadSettings() {
  const settings = read(SETTINGS, {});
  return typeof settings === 'object' && settings !== null ? settings : {};
}
export const saveSettings = (settings) => write(SETTINGS, settings);

export const loadApiKey = () => read(API_KEY, '');
export const saveApiKey = (key) => write(API_KEY, key === '' ? undefined : key);
