// Deterministic config fuzzing: random YAML mutations of real config files. parseConfig must either return a
// config or throw ConfigError (whose message names a line or key), never anything else, and stay fast.
// Seed: L402_FUZZ_SEED (default below).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { FUZZ_SEED, Rng } from './rng.js';

const SEED = FUZZ_SEED;
const ROOT_KEY = '4f9c2d7e1a8b3c6d5e0f9a2b7c4d1e8f3a6b5c0d9e2f7a4b1c8d3e6f5a0b9c2d';
const ENV = { ROOT_KEY, REDIS_PASSWORD: 'hunter2-redis-secret' };


const FULL = `# a full config
listen: 127.0.0.1:8402
data_dir: ./data
root_key: \${ROOT_KEY}
previous_root_keys: []
service: l402
store: { type: sqlite, path: ./data/l402.db }
lightning:
  type: dev
invoice:
  memo: "L402 payment"
  expiry_secs: 3600
challenge: { lsat: false }
log: { level: info }
timeouts:
  backend_ms: 4000
  store_ms: 1000
rate_limit:
  trusted_proxies: [10.0.0.0/8, "::1/128"]
  on_store_error: closed
metrics:
  listen: 127.0.0.1:9402
  token: 0123456789abcdef0123
manifest:
  enabled: true
  name: Example
  contact: ops@example.com
nginx_cache: { max_secs: 5 }
pricing: { dynamic: true, cache_ms: 2000, legacy_keys: false }
dry_run: { invoice_sample_rate: 0.25 }
retry_after_secs: 5
routes:
  - match: /premium
    id: premium
    amount_msat: 10000
    methods: [GET, POST]
    invoice_rate_limit: 2r/m
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 120 }
  - { match: "= /exact", amount_msat: 1, indefinite_access: true, manifest_hide: true }
  - { match: "~* \\\\.(mp4|webm)$", amount_msat: 3000, dry_run: true, payment_page: false }
  - match: ^~ /static/
    amount_msat: "7"
    auto_detect_payment: on
`;

const REDIS = `store:
  type: redis
  url: redis://:\${REDIS_PASSWORD}@127.0.0.1:6379/0
  prefix: "l402:"
lightning: { type: dev }
pricing: { legacy_keys: true }
routes:
  - { match: /a, amount_msat: 1 }
`;

const MINIMAL = `lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`;

const ANCHORS = `previous_root_keys: &keys []
lightning: { type: dev }
routes:
  - { match: &p /a, amount_msat: &amt 1000, access: timed, macaroon_timeout: &t 60 }
  - { match: /b, amount_msat: *amt, access: timed, macaroon_timeout: *t }
`;

const BASES = [FULL, REDIS, MINIMAL, ANCHORS];

const VALUES = [
  '', '~', 'null', '-1', '0', '1', '65535', '65536', '99999999999999999999', '1e309', '0x1F', '0o17', '.inf', '-.inf', '.nan', 'yes',
  'no', 'on', 'true', '"x"', "'x'", '[]', '{}', '[a, b]', '{a: 1}', '*p', '*amt', '*keys', '*nope', '&a x', '!!binary aGk=', '!!str 1', '!!int "x"',
  '!!float', '!!set {a}', '!!omap [a: 1]', '!!timestamp 2001-01-01', '!!js/function "f"', '!custom x', '|', '>-', 'x'.repeat(5000),
  '${ROOT_KEY}', '${NOPE}', '$${X}', '${}', 'é', '"\\u0000"', '"\\x00\\x7f"', '\t', '/premium', '~ (', '~ [', '~ ^(a+)+$', '= /x',
  '^~ /x', '= ', 'unix:/tmp/x', '[::1]:80', '127.0.0.1:0', '127.0.0.1:99999', 'localhost:8402', '2r/m', '0r/s', '-1r/s', '1r/x',
  '999999999999r/s', 'redis://x', 'rediss://', 'http://x', 'ftp://x', 'memory', 'sqlite', 'redis', 'dev', 'lnd', 'cln', 'nwc',
  'per-request', 'timed', 'indefinite', 'GET', 'get', '[GET, BREW]', '0.5', '1.5', '-0', '"10000"', '" 10000 "', '1_000',
  '10.0.0.0/33', '::/129', 'x/8', '"a: b"', '- x', '# comment', ':', '? x', '@x', '`x`', '%x', '"unterminated', "'unterminated",
  '{ a: [1, 2', '[ {', '&a [*a]', '<<: *d', '"\\ud800"', '__proto__', 'constructor',
];

const LINES = [
  'routes: *d', 'routes: *nope', '<<: *d', 'x: &x [*x]', '- { match: "~ (", amount_msat: 1 }', '- { match: /y, amount_msat: 1, <<: *d }',
  '__proto__: { listen: "0.0.0.0:1" }', 'constructor: { prototype: 1 }', '? [a, b]', ': 1', '---', '...', '%YAML 1.1', '%TAG ! tag:x,2000:',
  'a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
  'routes: []', 'routes:', '  - match: /dup', '  - { match: /premium, amount_msat: 1 }', 'listen: unix:/tmp/l402.sock', '\t- tab',
  'lightning: { type: lnd, address: "127.0.0.1:10009", macaroon_path: /nope, tls_cert_path: /nope }', 'lightning: { type: nwc, uri: "nostr+walletconnect://x" }',
  'lightning: { type: eclair, url: "http://127.0.0.1:8080", password: "${NOPE}" }', 'lightning: { type: cln, rpc_path: /tmp/x }', 'lightning: { type: nope }',
  'metrics: { listen: 127.0.0.1:8402 }', 'store: { type: memory, extra: 1 }', 'nginx_cache: { max_secs: 301 }', 'x'.repeat(300) + ': 1',
];

function mutate(rng: Rng, text: string): string {
  let lines = text.split('\n');
  switch (rng.int(9)) {
    case 0: {
      // Replace one scalar value.
      const candidates = lines.map((l, i) => [l, i] as const).filter(([l]) => /:\s*\S/.test(l));
      if (candidates.length === 0) break;
      const [l, i] = rng.pick(candidates);
      const parts = [...l.matchAll(/:\s*([^,{}\[\]\n]+)/g)];
      const m = rng.pick(parts);
      if (!m || m.index === undefined) break;
      const start = m.index + m[0].length - m[1]!.length;
      lines[i] = l.slice(0, start) + rng.pick(VALUES) + l.slice(start + m[1]!.length);
      break;
    }
    case 1:
      lines.splice(rng.int(lines.length), 1);
      break;
    case 2: {
      const i = rng.int(lines.length);
      lines.splice(i, 0, lines[i]!);
      break;
    }
    case 3: {
      const i = rng.int(lines.length);
      lines[i] = rng.chance(0.5) ? ' '.repeat(1 + rng.int(4)) + lines[i] : lines[i]!.replace(/^ {1,4}/, '');
      break;
    }
    case 4:
      lines.splice(rng.int(lines.length + 1), 0, rng.pick(LINES));
      break;
    case 5: {
      const i = rng.int(lines.length);
      const j = rng.int(lines.length);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      break;
    }
    case 6:
      lines = lines.slice(0, rng.int(lines.length + 1));
      break;
    case 7: {
      // One character flipped, inserted or deleted anywhere.
      const s = lines.join('\n');
      const i = rng.int(s.length + 1);
      const ch = rng.pick(['"', "'", ':', '-', '[', ']', '{', '}', '&', '*', '!', '|', '>', '#', '%', '@', '`', '\t', ' ', '\n', '\u0000', '\u00e9', '\ufeff', '\r']);
      const op = rng.int(3);
      return op === 0 ? s.slice(0, i) + ch + s.slice(i) : op === 1 ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + ch + s.slice(i + 1);
    }
    default: {
      // Nest a line deeper under a new key.
      const i = rng.int(lines.length);
      lines.splice(i, 1, 'nested:', '  ' + (lines[i] ?? ''));
    }
  }
  return lines.join('\n');
}

const CASES = 8_000;

test(`parseConfig: ${CASES} mutated YAML documents return or throw ConfigError, nothing else (seed ${SEED})`, () => {
  const rng = new Rng(SEED ^ 0xc0f1);
  // The bases themselves are valid: mutations start from configs operators really write.
  for (const b of BASES) parseConfig(b, { env: ENV, baseDir: '/srv/l402' });
  let ok = 0;
  let refused = 0;
  // First example of each distinct failure, and how often it happened.
  const failures = new Map<string, { n: number; example: string }>();
  const fail = (kind: string, example: string) => {
    const f = failures.get(kind) ?? { n: 0, example };
    f.n++;
    failures.set(kind, f);
  };
  const started = Date.now();
  for (let i = 0; i < CASES; i++) {
    let text = rng.pick(BASES);
    for (let k = 1 + rng.int(4); k > 0; k--) text = mutate(rng, text);
    const t0 = Date.now();
    try {
      const cfg = parseConfig(text, { env: ENV, baseDir: '/srv/l402', source: 'fuzz.yaml' });
      assert.ok(cfg.routes.length >= 1 && typeof cfg.listen === 'string');
      ok++;
    } catch (e) {
      if (e instanceof ConfigError) {
        refused++;
        // An operator can act on the message: it names the file.
        if (!e.message.includes('fuzz.yaml')) fail('ConfigError without the source name', `#${i}: ${e.message.slice(0, 200)}`);
        // The secret expanded from the environment never leaks into the message.
        if (e.message.includes(ENV.REDIS_PASSWORD) || e.message.includes(ROOT_KEY)) fail('secret in a ConfigError', `#${i}: ${e.message.slice(0, 300)}`);
      } else {
        const err = e as Error;
        fail(`${err?.constructor?.name}: ${String(err?.message).replace(/: \w+$/, '').slice(0, 80)}`, `#${i}\n--- input ---\n${text.slice(0, 300)}`);
      }
    }
    if (Date.now() - t0 > 2_000) fail('slow', `#${i}: took ${Date.now() - t0} ms\n${text.slice(0, 300)}`);
  }
  const report = [...failures].map(([kind, f]) => `${kind} (x${f.n}), e.g. ${f.example}`);
  assert.deepEqual(report, [], `seed ${SEED}: ${ok} accepted, ${refused} refused`);
  assert.ok(ok > 100 && refused > 1000, `mutations must reach both sides: ${ok} accepted, ${refused} refused`);
  assert.ok(Date.now() - started < 50_000, 'bounded');
});

// Found by the fuzzer: the YAML library throws ReferenceError from toJS() for these.
test('parseConfig: YAML alias problems are ConfigErrors (undefined alias, alias bomb)', () => {
  const bomb = 'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nroutes: [{ match: /x, amount_msat: 1 }]\n';
  for (const text of ['routes: *nope\n', 'routes:\n  - *r\n', bomb]) {
    assert.throws(() => parseConfig(text, { env: {}, source: 'l402.yaml' }), (e: unknown) => e instanceof ConfigError && /l402\.yaml/.test(e.message), JSON.stringify(text.slice(0, 40)));
  }
});

// Found by the fuzzer: accepted by the schema, then startGate fails with a RangeError from listen().
test('parseConfig: listen and metrics.listen ports outside 1-65535 are refused with the key name', () => {
  for (const listen of ['127.0.0.1:65536', '127.0.0.1:99999']) {
    assert.throws(() => parseConfig(`listen: "${listen}"\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), (e: unknown) => e instanceof ConfigError && /listen/.test(e.message), listen);
    assert.throws(
      () => parseConfig(`metrics: { listen: "${listen}" }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }),
      (e: unknown) => e instanceof ConfigError && /metrics\.listen/.test(e.message),
      listen,
    );
  }
});
