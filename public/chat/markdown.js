// Assistant replies as Markdown: parsed by marked, sanitized by DOMPurify (both vendored in
// /vendor/, see its README), then each code block gets a copy button. HTML that a reply writes
// is shown as text, as in other chat apps; DOMPurify then removes anything unsafe that Markdown
// itself can make (a javascript: link).
import { marked } from '/vendor/marked.esm.js';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

marked.use({
  gfm: true,
  breaks: false,
  renderer: { html: ({ text, block }) => (block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text)) },
});

/** Links in replies open in a new tab, so the chat stays. */
function linksInNewTab(node) {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
}
let hooked = false;

/** Copies text to the clipboard; falls back to a selection where the Clipboard API is missing (plain http on another host). */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'offscreen';
  document.body.append(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

/** Fills `element` with `text` rendered as sanitized HTML. */
export function renderMarkdown(element, text) {
  if (!hooked) {
    globalThis.DOMPurify.addHook('afterSanitizeAttributes', linksInNewTab);
    hooked = true;
  }
  element.innerHTML = globalThis.DOMPurify.sanitize(marked.parse(text), { USE_PROFILES: { html: true } });
  for (const pre of element.querySelectorAll('pre')) {
    const block = document.createElement('div');
    block.className = 'code-block';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-code';
    copy.textContent = 'Copy code';
    pre.replaceWith(block);
    block.append(copy, pre);
  }
}
