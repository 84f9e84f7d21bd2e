// The LNC adapter: config schema, ngx_l402 env mapping, and the start-up refusal, with the pairing phrase
// (a bearer credential) kept out of every message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import {
  createLncBackend, lncConfigSchema, lncFromLegacyEnv, LncUnavailableError, LNC_DEFAULT_MAILBOX, wantsLncFromLegacyEnv,
} from '../../src/rails/lightning/lnc.js';
import { createLogger } from '../../src/util/log.js';

// Words chosen so none of them occurs in any message by accident.
const PHRASE = 'walrus kiwi yacht zebra jungle vivid urge quartz maple fjord';
const WORDS = PHRASE.split(' ');

function assertNoPhrase(text: string, where: string): void {
  const lower = text.toLowerCase();
  for (const w of WORDS) assert.ok(!lower.includes(w), `${where} leaks pairing phrase word "${w}": ${text}`);
}

test('schema: 10-word phrase (whitespace normalised), default mailbox, strict', () => {
  const c = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: `  ${WORDS.slice(0, 5).join('  ')}\n${WORDS.slice(5).join(' ')} ` });
  assert.deepEqual(c, { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: LNC_DEFAULT_MAILBOX });
  assert.equal(LNC_DEFAULT_MAILBOX, 'mailbox.terminal.lightning.today:443');
  assert.equal(lncConfigSchema.parse({ type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'wss://mailbox.example.org:443/' }).mailbox_server, 'mailbox.example.org:443');
  for (const bad of [
    { type: 'lnc' },
    { type: 'lnc', pairing_phrase: 42 },
    { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'no-port.example' },
    { type: 'lnc', pairing_phrase: PHRASE, macaroon_path: 'x' },
  ]) {
    assert.equal(lncConfigSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});

test('schema: a malformed phrase is rejected without echoing it', () => {
  for (const phrase of [WORDS.slice(0, 9).join(' '), `${PHRASE} extra`, PHRASE.replace('kiwi', 'k1w1')]) {
    const r = lncConfigSchema.safeParse({ type: 'lnc', pairing_phrase: phrase });
    assert.equal(r.success, false);
    const text = JSON.stringify(r.error!.issues) + r.error!.message + String(r.error);
    assert.match(text, /10-word LNC pairing phrase \(value not shown\)/);
    assertNoPhrase(text.replace(/k1w1/g, ''), 'schema error');
  }
});

test('legacy env: ngx_l402 LND + LNC_PAIRING_PHRASE selects lnc and maps its variables', () => {
  const env = { LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: PHRASE, LNC_MAILBOX_SERVER: 'mailbox.example.org:443' };
  assert.equal(wantsLncFromLegacyEnv(env), true);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: ' lnc ' }), true, "ngx_l402's docs also name LNC");
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND' }), false);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: '  ' }), false);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'NWC', LNC_PAIRING_PHRASE: PHRASE }), false);
  const raw = lncFromLegacyEnv(env);
  assert.deepEqual(raw, { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'mailbox.example.org:443' });
  assert.deepEqual(lncConfigSchema.parse(raw), { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'mailbox.example.org:443' });
  assert.equal(lncConfigSchema.parse(lncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: PHRASE })).mailbox_server, LNC_DEFAULT_MAILBOX);
});

test('factory: fails at start with what is missing and what to do instead, never the phrase', () => {
  const cfg = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: PHRASE });
  const ctx = { configDir: '/', dataDir: '/tmp', log: createLogger('silent'), timeoutMs: 1000 };
  let caught: unknown;
  try {
    createLncBackend(cfg, ctx);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof LncUnavailableError, 'throws LncUnavailableError');
  const msg = caught.message;
  assert.match(msg, /lightning\.type lnc \(Lightning Node Connect via mailbox\.terminal\.lightning\.today:443\) cannot start in this build/);
  assert.match(msg, /@lightninglabs\/lnc-web package is not installed/, 'the package really is absent here');
  assert.match(msg, /Go WebAssembly client \(lnc-<version>\.wasm\), which no npm package ships/);
  assert.match(msg, /type: lnd, address: <host>:10009, tls_cert_path: .*macaroon_path/);
  assert.match(msg, /socks5_proxy: 127\.0\.0\.1:9050/);
  assert.match(msg, /LN_CLIENT_TYPE=LND with LND_ADDRESS, CERT_FILE_PATH, MACAROON_FILE_PATH, SOCKS5_PROXY/);
  assert.match(msg, /pairing phrase was not used and is not shown/);
  for (const [where, text] of [
    ['message', msg],
    ['String(err)', String(caught)],
    ['stack', caught.stack ?? ''],
    ['inspect(err)', inspect(caught, { depth: 5 })],
    ['JSON', JSON.stringify(caught)],
  ] as const) {
    assertNoPhrase(text, where);
  }
});
