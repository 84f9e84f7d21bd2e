/// <reference lib="es2024.string" />
// Strict JSON for NUT-10 secrets. A secret means what the mint's parser says it means, and the strictest
// mainstream one (serde_json, in cdk) refuses duplicate keys and lone surrogates, then treats the proof as
// a plain anyone-can-spend secret. JSON.parse accepts both (keeping the last duplicate), so reading a
// secret with it lets a payer show us one lock and the mint another. This parser accepts exactly RFC 8259
// JSON and refuses anything two parsers could read differently.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export class StrictJsonError extends Error {
  override name = 'StrictJsonError';
}

const ESCAPES = new Map([['"', '"'], ['\\', '\\'], ['/', '/'], ['b', '\b'], ['f', '\f'], ['n', '\n'], ['r', '\r'], ['t', '\t']]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

/**
 * Parses `text` as RFC 8259 JSON, or throws StrictJsonError. Also refuses duplicate object keys (compared
 * after decoding escapes), strings that are not well-formed UTF-16 after decoding, a byte-order mark,
 * trailing content, non-finite numbers, and nesting deeper than `maxDepth`. One pass, no backtracking, and
 * recursion bounded by `maxDepth`: work is linear in the input length.
 */
export function parseStrictJson(text: string, maxDepth = 8): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new StrictJsonError(`${what} at offset ${i}`);
  };
  const ws = () => {
    for (let c = text[i]; c === ' ' || c === '\t' || c === '\n' || c === '\r'; c = text[++i]);
  };

  function value(depth: number): JsonValue {
    ws();
    const c = text[i];
    if (c === '{') return object(depth + 1);
    if (c === '[') return array(depth + 1);
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    return fail(c === undefined ? 'unexpected end of JSON' : 'unexpected character');
  }

  function object(depth: number): JsonValue {
    if (depth > maxDepth) fail('JSON nested too deeply');
    i++;
    // fromEntries defines own properties, so a "__proto__" key stays data, as with JSON.parse.
    const entries: Array<[string, JsonValue]> = [];
    const keys = new Set<string>();
    ws();
    if (text[i] === '}') {
      i++;
      return {};
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail('expected a string key');
      const key = string();
      if (keys.has(key)) fail(`duplicate key ${JSON.stringify(key.slice(0, 24))}`);
      keys.add(key);
      ws();
      if (text[i] !== ':') fail("expected ':'");
      i++;
      entries.push([key, value(depth)]);
      ws();
      if (text[i] === '}') {
        i++;
        return Object.fromEntries(entries);
      }
      if (text[i] !== ',') fail("expected ',' or '}'");
      i++;
    }
  }

  function array(depth: number): JsonValue {
    if (depth > maxDepth) fail('JSON nested too deeply');
    i++;
    const out: JsonValue[] = [];
    ws();
    if (text[i] === ']') {
      i++;
      return out;
    }
    for (;;) {
      out.push(value(depth));
      ws();
      if (text[i] === ']') {
        i++;
        return out;
      }
      if (text[i] !== ',') fail("expected ',' or ']'");
      i++;
    }
  }

  function string(): string {
    i++;
    let out = '';
    let start = i; // copy unescaped runs in one slice each, not char by char
    for (;;) {
      const code = text.charCodeAt(i);
      if (Number.isNaN(code)) fail('unterminated string');
      if (code === 0x22) break;
      if (code < 0x20) fail('control character in string');
      if (code !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[i + 1] ?? '';
      if (e === 'u') {
        const hex = text.slice(i + 2, i + 6);
        if (!HEX4.test(hex)) fail('malformed \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else {
        const ch = ESCAPES.get(e);
        if (ch === undefined) fail('invalid escape');
        out += ch;
        i += 2;
      }
      start = i;
    }
    out += text.slice(start, i);
    i++;
    // Escaped surrogates must pair up exactly as UTF-8 would need them to (serde_json refuses the rest).
    if (!out.isWellFormed()) fail('lone surrogate in string');
    return out;
  }

  function number(): number {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('malformed number');
    i = NUMBER.lastIndex;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) fail('number out of range');
    return n;
  }

  if (text.charCodeAt(0) === 0xfeff) fail('byte-order mark');
  // Raw lone surrogates anywhere (they cannot be encoded as UTF-8, so no other parser sees the same text).
  if (!text.isWellFormed()) fail('lone surrogate in JSON text');
  const result = value(0);
  ws();
  if (i !== text.length) fail('trailing content after JSON');
  return result;
}
