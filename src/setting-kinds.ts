/**
 * The kinds a setting can be. A setting is declared once, as a leaf of one of these kinds, and
 * everything else comes from that declaration: its TypeScript type (`ValueOf`), its default, its
 * JSON Schema, how its environment variable is read, and its row in docs/settings.md.
 */

/** How an environment variable's text becomes the value: "nullable" is a string where an empty value gives null; "map" is `key=value,...`. */
export type EnvType = 'string' | 'number' | 'boolean' | 'list' | 'nullable' | 'map';

/** One setting. */
export interface Leaf<T> {
  readonly kind: 'leaf';
  readonly default: T;
  /** The JSON Schema of its value. */
  readonly schema: Readonly<Record<string, unknown>>;
  readonly env: EnvType;
  /** Its type and bounds as the docs show them. */
  readonly type: string;
  readonly doc: string;
}

/** A group of settings (an object in settings.json). */
export interface Section<C extends Children> {
  readonly kind: 'section';
  readonly doc: string;
  readonly children: C;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a section of any shape
export type Node = Leaf<unknown> | Section<any>;
export type Children = { readonly [key: string]: Node };

/** The value a declaration describes: a leaf's type, or an object of its children's values. */
export type ValueOf<N> = N extends Leaf<infer T> ? T : N extends Section<infer C> ? { -readonly [K in keyof C]: ValueOf<C[K]> } : never;

type Schema = Record<string, unknown>;

function leaf<T>(value: T, schema: Schema, env: EnvType, type: string, doc: string): Leaf<T> {
  return { kind: 'leaf', default: value, schema, env, type, doc };
}

export function section<C extends Children>(doc: string, children: C): Section<C> {
  return { kind: 'section', doc, children };
}

/** An integer from `min` to `max`. */
export function integer(value: number, min: number, max: number, doc: string): Leaf<number> {
  return leaf(value, { type: 'integer', minimum: min, maximum: max }, 'number', `integer, ${min} to ${max}`, doc);
}

/** A number from `min` (or above `above`) to `max`. */
export function number(value: number, bounds: { min: number; max: number } | { above: number; max: number }, doc: string): Leaf<number> {
  const [low, shown] =
    'min' in bounds ? [{ minimum: bounds.min }, `${bounds.min}`] : [{ exclusiveMinimum: bounds.above }, `above ${bounds.above}`];
  return leaf(value, { type: 'number', ...low, maximum: bounds.max }, 'number', `number, ${shown} to ${bounds.max}`, doc);
}

export function boolean(value: boolean, doc: string): Leaf<boolean> {
  return leaf(value, { type: 'boolean' }, 'boolean', 'boolean', doc);
}

export function string(value: string, doc: string, bounds: { minLength?: number; maxLength?: number } = {}): Leaf<string> {
  const shown = [
    ...(bounds.minLength === undefined ? [] : [bounds.minLength === 1 ? 'not empty' : `at least ${bounds.minLength} characters`]),
    ...(bounds.maxLength === undefined ? [] : [`at most ${bounds.maxLength} characters`]),
  ];
  return leaf(value, { type: 'string', ...bounds }, 'string', ['string', ...shown].join(', '), doc);
}

/** A string or null (the default); an empty environment variable gives null. */
export function nullableString(doc: string, pattern?: string): Leaf<string | null> {
  const schema = { type: ['string', 'null'], ...(pattern === undefined ? {} : { pattern }) };
  const shown = pattern === undefined ? 'string or null' : `string matching \`${pattern}\`, or null`;
  return leaf<string | null>(null, schema, 'nullable', shown, doc);
}

export function oneOf<const V extends string>(values: readonly V[], value: NoInfer<V>, doc: string): Leaf<V> {
  return leaf(value, { enum: values }, 'string', `one of ${values.map((v) => `\`${v}\``).join(', ')}`, doc);
}

/** A list of distinct strings, each matching `item`; comma separated in an environment variable. */
export function stringList(doc: string, item: { minLength: number; maxLength: number; pattern: string }, maxItems: number): Leaf<string[]> {
  const schema = { type: 'array', uniqueItems: true, maxItems, items: { type: 'string', ...item } };
  const shown = `list of at most ${maxItems} distinct strings of ${item.minLength} to ${item.maxLength} characters`;
  return leaf<string[]>([], schema, 'list', shown, doc);
}

/** An object of names (1 to 256 characters) to names, empty by default; `key=value` pairs, comma separated, in an environment variable. */
export function stringMap(doc: string, maxItems: number): Leaf<Record<string, string>> {
  const name = { type: 'string', minLength: 1, maxLength: 256 };
  const schema = { type: 'object', maxProperties: maxItems, propertyNames: name, additionalProperties: name };
  return leaf<Record<string, string>>({}, schema, 'map', `object of at most ${maxItems} names to names (1 to 256 characters each)`, doc);
}

/** Every leaf under `node`, with its path, in declaration order. */
export function leavesOf(node: Node, path: string[] = []): Array<{ path: string[]; leaf: Leaf<unknown> }> {
  if (node.kind === 'leaf') return [{ path, leaf: node }];
  return Object.entries(node.children as Children).flatMap(([key, child]) => leavesOf(child, [...path, key]));
}

/** Every section under `node` (itself included), with its path, in declaration order. */
export function sectionsOf(node: Node, path: string[] = []): Array<{ path: string[]; section: Section<Children> }> {
  if (node.kind === 'leaf') return [];
  const children = Object.entries(node.children as Children);
  return [{ path, section: node as Section<Children> }, ...children.flatMap(([key, child]) => sectionsOf(child, [...path, key]))];
}

/** A fresh copy of the defaults under `node`. */
export function defaultsOf<N extends Node>(node: N): ValueOf<N> {
  if (node.kind === 'leaf') return structuredClone(node.default) as ValueOf<N>;
  const children = Object.entries(node.children as Children).map(([key, child]) => [key, defaultsOf(child)]);
  return Object.fromEntries(children) as ValueOf<N>;
}

/** The JSON Schema of the values under `node`: sections refuse unknown keys. */
export function schemaOf(node: Node): Schema {
  if (node.kind === 'leaf') return { ...node.schema };
  const properties = Object.fromEntries(Object.entries(node.children as Children).map(([key, child]) => [key, schemaOf(child)]));
  return { type: 'object', additionalProperties: false, properties };
}
