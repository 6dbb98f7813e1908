/**
 * Request ids beyond 2^53, echoed exactly. JSON.parse reads 9007199254740993 as 9007199254740992,
 * and Node 20's JSON.parse gives no access to the source text, so the parser looks for the raw
 * text of the top-level `"id"` members itself (only when a parsed id is an integer that a double
 * cannot hold exactly), keeps it in a `LargeId`, and `encodeJson` writes that text back.
 */
import { randomBytes } from 'node:crypto';

/** An integer id too large for a double, with its source text. Serialised by JSON.stringify as the nearest double. */
export class LargeId {
  /** Whether this process has ever made one: until then `encodeJson` is plain JSON.stringify. */
  static made = false;

  constructor(readonly text: string) {
    LargeId.made = true;
  }

  toJSON(): number {
    return Number(this.text);
  }
}

/** Whether a parsed id lost digits: an integer a double cannot hold exactly. */
export function lostDigits(id: unknown): boolean {
  return typeof id === 'number' && Number.isInteger(id) && !Number.isSafeInteger(id);
}

/**
 * The raw text of the number in the `"id"` member of each request object in `text` (already
 * known to be valid JSON): index 0 for a single object, the element index for a batch. The last
 * `"id"` of an object wins, as with JSON.parse. Only numbers are reported.
 */
export function rawIds(text: string): Map<number, string> {
  const found = new Map<number, string>();
  const batch = text.trimStart().startsWith('[');
  const objectDepth = batch ? 2 : 1;
  /** What follows a member's name: the colon, and the number its value starts with, if any. */
  const member = /[ \t\n\r]*:[ \t\n\r]*(-?\d[\d.eE+-]*)?/y;
  let depth = 0;
  let element = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      const start = i;
      i++;
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      if (depth !== objectDepth) continue;
      member.lastIndex = i;
      const value = member.exec(text);
      if (!value || JSON.parse(text.slice(start, i)) !== 'id') continue;
      if (value[1] !== undefined) found.set(batch ? element : 0, value[1]);
      i = member.lastIndex;
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === ',' && batch && depth === 1) element++;
    i++;
  }
  return found;
}

/** Replaces, in a parsed message, every id that lost digits by a LargeId holding its source text. */
export function keepLargeIds(message: unknown, text: string): unknown {
  const requests = Array.isArray(message) ? message : [message];
  const lossy = requests.some((r) => typeof r === 'object' && r !== null && lostDigits((r as { id?: unknown }).id));
  if (!lossy) return message;
  const raw = rawIds(text);
  requests.forEach((request, index) => {
    const source = raw.get(index);
    if (source === undefined || typeof request !== 'object' || request === null) return;
    const holder = request as { id?: unknown };
    if (lostDigits(holder.id) && /^-?\d+$/.test(source)) holder.id = new LargeId(source);
  });
  return message;
}

/** Marks a LargeId's place in JSON text; random, so that no client can forge one. Made on first use. */
let marker: string | undefined;

/**
 * JSON.stringify, writing every LargeId as its exact source text. Every reply goes through it, so
 * the replacer (several times slower than plain JSON.stringify) runs only in a process that has
 * met a large id at all.
 */
export function encodeJson(value: unknown): string {
  if (!LargeId.made) return JSON.stringify(value);
  const large: string[] = [];
  const mark = (marker ??= `\u0000large-id:${randomBytes(8).toString('hex')}:`);
  const text = JSON.stringify(value, function (this: Record<string, unknown>, key: string, item: unknown) {
    const original = this[key];
    if (!(original instanceof LargeId)) return item;
    large.push(original.text);
    return `${mark}${large.length - 1}`;
  });
  if (large.length === 0) return text;
  const escaped = JSON.stringify(mark).slice(1, -1);
  return text.replace(new RegExp(`"${escaped.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}(\\d+)"`, 'g'), (_, n: string) => large[Number(n)]!);
}
