// NUT-10 secrets must mean to the gate what they mean to the mint. cdk (serde_json) refuses duplicate keys
// and lone surrogates and then treats the proof as unlocked, so the gate reads secrets with a strict parser
// and refuses refund conditions cdk cannot parse. Also: every secret shape cashu-ts and nutshell produce
// still passes, and the strict parser agrees with JSON.parse on valid input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createP2PKsecret, createRandomSecretKey, getPubKeyFromPrivKey } from '@cashu/cashu-ts';
import { checkP2pkLock } from '../../src/rails/cashu/p2pk-lock.js';
import { parseStrictJson, StrictJsonError, type JsonValue } from '../../src/rails/cashu/strict-json.js';
import { FUZZ_SEED, Rng } from '../fuzz/rng.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const PUB = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
const OTHER = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
const REF = '03' + 'ce'.repeat(32); // on the curve
const REF2 = '02' + '01'.repeat(32); // on the curve
const OFF = '03' + 'cd'.repeat(32); // well-formed hex, but x³+7 has no square root
const now = 1_800_000_000;
const opts = { nowSecs: now, minLocktimeSecs: 3600 };
const LATER = String(now + 7200);

const check = (s: string) => checkP2pkLock(s, PUB, opts);
const ok = (s: string) => assert.equal(check(s).ok, true, s);
const no = (s: string, re: RegExp) => {
  const r = check(s);
  assert.equal(r.ok, false, s);
  assert.match((r as { reason: string }).reason, re, s);
};
const refuses = (s: string, re: RegExp) => assert.throws(() => parseStrictJson(s), (e: unknown) => e instanceof StrictJsonError && re.test(e.message), s);
const STRICT = /strict NUT-10 JSON/;

test('strict JSON: RFC 8259 accepted, same values as JSON.parse', () => {
  const samples = [
    '0', '-0', '1.5e-3', '-12E+2', '1e2', '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"', '"\\u00e9\\u00E9é"', '"\\ud83d\\ude00😀"', 'true', 'false', 'null',
    '[]', '{}', ' \t\r\n[ 1 , "x" , { "a" : [ null ] } ] \n', '{"__proto__":1,"constructor":{"x":[]}}', '"\u2028\u2029"',
  ];
  for (const s of samples) assert.deepEqual(parseStrictJson(s), JSON.parse(s), s);
  const proto = parseStrictJson('{"__proto__":{"polluted":1}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.ok(Object.hasOwn(proto, '__proto__'));
});

test('strict JSON: duplicates, lone surrogates, BOM, trailing content, deep nesting and non-RFC input refused', () => {
  refuses('{"a":1,"a":1}', /duplicate key "a"/);
  refuses('{"data":"x","d\\u0061ta":"y"}', /duplicate key "data"/);
  refuses('{"\\u0064ata":"x","data":"y"}', /duplicate key/);
  refuses('[{"a":{"b":1,"c":{"d":1,"d":2}}}]', /duplicate key "d"/);
  assert.deepEqual(parseStrictJson('[{"a":1},{"a":1}]'), [{ a: 1 }, { a: 1 }]); // same key in sibling objects is fine
  refuses('"\\ud800"', /lone surrogate/);
  refuses('"\\udc00"', /lone surrogate/);
  refuses('"\\udc00\\ud800"', /lone surrogate/); // reversed pair
  refuses('"\\ud800x"', /lone surrogate/);
  refuses('"\ud800"', /lone surrogate/);
  refuses('"\udc00"', /lone surrogate/);
  refuses('"\\ud800\udc00"', /lone surrogate/); // escaped high + raw low: the raw text is not UTF-8 encodable
  refuses('\ufeff[]', /byte-order mark/);
  refuses('[] x', /trailing/);
  refuses('[]]', /trailing/);
  refuses('{"a":1}{}', /trailing/);
  assert.deepEqual(parseStrictJson('[[[[[[[[]]]]]]]]'), JSON.parse('[[[[[[[[]]]]]]]]')); // depth 8
  refuses('[[[[[[[[[]]]]]]]]]', /too deeply/);
  refuses('{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}}}', /too deeply/);
  refuses('['.repeat(100_000), /too deeply/);
  for (const s of ['', ' ', '[1,]', '{"a":1,}', "['a']", '{a:1}', '01', '1.', '.5', '+1', '-', '1e', '0x10', 'NaN', 'Infinity', '1e400', '"\t"', '"\\x41"', '"\\u12"', '"\\U0041"', '"abc', 'tru', 'nul', '[1 2]', '{"a" 1}', '[1]//c', '\u00a0[]', '\v[]']) {
    assert.throws(() => parseStrictJson(s), StrictJsonError, JSON.stringify(s));
  }
});

test('P2PK lock: crafted secrets that the mint reads differently are refused', () => {
  const n = '0123456789abcdef';
  // The PoC cases: duplicate data (either order), duplicate tags hiding an expired locktime, lone surrogates.
  no(`["P2PK",{"nonce":"${n}","data":"${OTHER}","data":"${PUB}"}]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}","data":"${OTHER}"}]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}","tags":[["locktime","1"]],"tags":[]}]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","d\\u0061ta":"${OTHER}","data":"${PUB}"}]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","nonce":"${n}","data":"${PUB}"}]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}","tags":[["x",{"a":1,"a":2}]]}]`, STRICT);
  no(`[{"a":1,"a":2},{"nonce":"${n}","data":"${PUB}"}]`, STRICT);
  for (const bad of ['\\ud800', '\\udc00', '\\uDBFF', '\ud800', '\udfff']) {
    no(`["P2PK",{"nonce":"${n}${bad}","data":"${PUB}"}]`, STRICT);
    no(`["P2PK",{"nonce":"${n}","data":"${PUB}","tags":[["sigflag","SIG_INPUTS${bad}"]]}]`, STRICT);
  }
  // A valid surrogate pair, escaped or raw, is an ordinary character.
  ok(`["P2PK",{"nonce":"${n}\\ud83d\\ude00","data":"${PUB}"}]`);
  ok(`["P2PK",{"nonce":"${n}😀","data":"${PUB}"}]`);
  // Escaped keys and values that decode to the right text are fine when not duplicated.
  ok(`["P2PK",{"nonce":"${n}","d\\u0061ta":"${PUB}"}]`);
  // BOM, trailing content, deep nesting.
  no(`\ufeff["P2PK",{"nonce":"${n}","data":"${PUB}"}]`, /not locked/);
  assert.equal(check(`["P2PK",{"nonce":"${n}","data":"${PUB}"}]`).ok, true);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}"}]x`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}"}]]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}"}],[]`, STRICT);
  no(`["P2PK",{"nonce":"${n}","data":"${PUB}","tags":[[[[[[[[["x"]]]]]]]]]}]`, STRICT);
});

test('P2PK lock: every secret shape cashu-ts and nutshell produce still passes', () => {
  ok(createP2PKsecret(PUB));
  ok(createP2PKsecret(PUB, []));
  ok(createP2PKsecret(PUB, [['sigflag', 'SIG_INPUTS']]));
  ok(createP2PKsecret(PUB, [['n_sigs', '1']]));
  // The tag order cashu-ts' P2PK builder uses: locktime, pubkeys/n_sigs, refund/n_sigs_refund, sigflag.
  assert.deepEqual(check(createP2PKsecret(PUB, [['locktime', LATER]])), { ok: true, locktime: now + 7200 });
  assert.deepEqual(check(createP2PKsecret(PUB, [['locktime', LATER], ['refund', REF]])), { ok: true, locktime: now + 7200 });
  assert.deepEqual(check(createP2PKsecret(PUB, [['locktime', LATER], ['refund', REF, REF2], ['n_sigs_refund', '2']])), { ok: true, locktime: now + 7200 });
  ok(createP2PKsecret(PUB, [['locktime', LATER], ['refund', REF, REF2], ['n_sigs_refund', '1']]));
  ok(createP2PKsecret(PUB, [['locktime', LATER], ['refund', REF.toUpperCase()]]));
  // nutshell: json.dumps with its default ", " and ": " separators; also pretty-printed.
  const body = { nonce: 'ab'.repeat(16), data: PUB, tags: [['sigflag', 'SIG_INPUTS'], ['locktime', LATER], ['refund', REF]] };
  const nutshell = `["P2PK", {"nonce": "${body.nonce}", "data": "${PUB}", "tags": [["sigflag", "SIG_INPUTS"], ["locktime", "${LATER}"], ["refund", "${REF}"]]}]`;
  assert.deepEqual(JSON.parse(nutshell), ['P2PK', body]);
  assert.deepEqual(check(nutshell), { ok: true, locktime: now + 7200 });
  ok(JSON.stringify(['P2PK', body], null, 2));
  ok(`["P2PK" ,{"nonce":"n","data":"${PUB}","tags":null}] \r\n\t`);
  no(` ["P2PK",{"nonce":"n","data":"${PUB}"}]`, /not locked/); // unchanged rule: the secret must start with '['
});

test('P2PK lock: refund keys must be compressed points and n_sigs_refund a count cdk can parse', () => {
  const sec = (...tags: string[][]) => JSON.stringify(['P2PK', { nonce: 'n1', data: PUB, tags: [['locktime', LATER], ...tags] }]);
  const uncompressed = '04' + '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798' + '483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8';
  for (const bad of ['zz' + 'ce'.repeat(32), REF.slice(0, 64), REF + 'ce', '04' + 'ce'.repeat(32), '05' + 'ce'.repeat(32), uncompressed, OFF, '', ` ${REF}`]) {
    no(sec(['refund', bad]), /malformed refund keys/);
    no(sec(['refund', REF, bad]), /malformed refund keys/);
  }
  no(sec(['refund']), /malformed refund keys/);
  for (const n of ['0', '3', 'two', '-1', '+1', '01', '1.0', ' 1', '1e0', '', '99999999999999999999']) {
    no(sec(['refund', REF, REF2], ['n_sigs_refund', n]), /malformed refund keys/);
  }
  no(sec(['refund', REF], ['n_sigs_refund', '2']), /malformed refund keys/);
  no(sec(['refund', REF], ['n_sigs_refund']), /malformed refund keys/);
  no(sec(['refund', REF, REF2], ['n_sigs_refund', '1', '2']), /malformed refund keys/);
  ok(sec(['refund', REF, REF2], ['n_sigs_refund', '2']));
  ok(sec(['refund', REF], ['n_sigs_refund', '1']));
  // Earlier rules still come first.
  no(JSON.stringify(['P2PK', { nonce: 'n1', data: PUB, tags: [['refund', OFF]] }]), /refund keys without a locktime/);
});

// ---- property: strict parsing agrees with JSON.parse on valid NUT-10-shaped text ---------------------------

const CHARS = ['a', 'Z', '0', ' ', '"', '\\', '/', '\b', '\f', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', 'é', '\u2028', '€', '\uffff', '😀', '𝄞'];

function randString(rng: Rng): string {
  let s = '';
  for (let n = rng.int(12); n > 0; n--) s += rng.chance(0.5) ? rng.pick(CHARS) : String.fromCharCode(0x20 + rng.int(0x5f));
  return s;
}

/** A number kept as its JSON text, so the property covers the number grammar, not just JSON.stringify's output. */
class Num {
  constructor(readonly text: string) {}
}

function randNumber(rng: Rng): Num {
  let s = rng.chance(0.3) ? '-' : '';
  s += rng.chance(0.2) ? '0' : String(1 + rng.int(9)) + String(rng.int(100000)).slice(0, rng.int(6));
  if (rng.chance(0.3)) s += '.' + String(rng.int(1000));
  if (rng.chance(0.3)) s += rng.pick(['e', 'E']) + rng.pick(['', '+', '-']) + String(rng.int(30));
  return new Num(s);
}

/** Serializes a string the long way: random \u escapes (either hex case), short escapes, surrogate pairs escaped whole. */
function encString(rng: Rng, s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.charCodeAt(0);
    const short = ({ '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' } as Record<string, string>)[ch];
    const u = Array.from({ length: ch.length }, (_, k) => '\\u' + ch.charCodeAt(k).toString(16).padStart(4, '0')).join('');
    const esc = rng.chance(0.5) ? u : u.toUpperCase().replace(/\\U/g, '\\u');
    if (short !== undefined) out += rng.chance(0.7) ? short : esc;
    else if (code < 0x20) out += esc;
    else if (ch === '/' && rng.chance(0.5)) out += '\\/';
    else out += rng.chance(0.15) ? esc : ch;
  }
  return out + '"';
}

const WS = ['', ' ', '\n', '\t', '\r\n  '];

/** Serializes `v` with random whitespace and escaping; `dup` repeats the first key of every non-empty object. */
function enc(rng: Rng, v: unknown, dup = false): string {
  const w = () => (rng.chance(0.3) ? rng.pick(WS) : '');
  if (typeof v === 'string') return encString(rng, v);
  if (v instanceof Num) return v.text;
  if (typeof v !== 'object' || v === null) return JSON.stringify(v);
  if (Array.isArray(v)) return '[' + w() + v.map((x) => enc(rng, x, dup)).join(w() + ',' + w()) + w() + ']';
  const entries = Object.entries(v as Record<string, unknown>);
  if (dup && entries.length > 0) entries.push([entries[0]![0], entries[0]![1]]);
  return '{' + w() + entries.map(([k, x]) => encString(rng, k) + w() + ':' + w() + enc(rng, x, dup)).join(w() + ',' + w()) + w() + '}';
}

/** A NUT-10-shaped value: [kind, {nonce, data, tags?: string[][]}], with the odd number, literal or extra key. */
function randSecret(rng: Rng): unknown {
  const scalar = () => (rng.chance(0.85) ? randString(rng) : rng.pick<unknown>([randNumber(rng), true, false, null]));
  const body: Record<string, unknown> = { nonce: randString(rng), data: rng.chance(0.5) ? hex(rng.bytes(33)) : randString(rng) };
  if (rng.chance(0.8)) body.tags = Array.from({ length: rng.int(5) }, () => Array.from({ length: rng.int(4) }, scalar));
  if (rng.chance(0.2)) body[randString(rng)] = scalar();
  return [rng.pick(['P2PK', 'HTLC', randString(rng)]), body];
}

test('property: on 2,000 random valid NUT-10-shaped texts strict JSON equals JSON.parse; duplicated keys always refused', () => {
  const rng = new Rng(FUZZ_SEED);
  for (let k = 0; k < 2000; k++) {
    const v = randSecret(rng);
    const text = rng.pick(WS) + enc(rng, v) + rng.pick(WS);
    const expected = JSON.parse(text) as JsonValue;
    assert.deepEqual(parseStrictJson(text), expected, text);
    const dup = enc(rng, v, true);
    assert.throws(() => parseStrictJson(dup), /duplicate key/, dup);
  }
});
