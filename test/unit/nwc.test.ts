// NWC (NIP-47) backend: URI validation, config schema, legacy environment, encryption negotiation, and
// start-up failures that need no wallet. Round trips through a real relay are in test/integration/nwc.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { PassThrough } from 'node:stream';
import { getPublicKey } from 'nostr-tools/pure';
import { NwcUriError, parseNwcUri, relayHost } from '../../src/rails/lightning/nwc/nwc-uri.js';
import { createNwcBackend, infoMethods, negotiateEncryption, nwcConfigSchema, nwcFromLegacyEnv } from '../../src/rails/lightning/nwc/nwc.js';
import { BackendCallError } from '../../src/rails/lightning/backend.js';
import { createLogger } from '../../src/util/log.js';
import { freePort } from '../integration/harness.js';

const SECRET = '7e1a8b3c6d5e0f9a2b7c4d1e8f3a6b5c0d9e2f7a4b1c8d3e6f5a0b9c2d4f9c2d';
const WALLET = getPublicKey(Buffer.from('11'.repeat(32), 'hex'));
const uri = (q: string, pk = WALLET) => `nostr+walletconnect://${pk}?${q}`;
const GOOD = uri(`relay=${encodeURIComponent('wss://relay.example.com/v1')}&relay=ws://127.0.0.1:7777&secret=${SECRET}&lud16=a@b.c`);

function assertNoSecret(text: string, what: string): void {
  assert.ok(!text.includes(SECRET), `${what} leaks the secret: ${text}`);
  assert.ok(!text.toUpperCase().includes(SECRET.toUpperCase()), `${what} leaks the secret (case-folded)`);
}

test('parseNwcUri: splits a valid URI; relays de-duplicated in order; client key derived', () => {
  const c = parseNwcUri(GOOD.replace('&lud16', `&relay=ws://127.0.0.1:7777&lud16`));
  assert.equal(c.walletPubkey, WALLET);
  assert.deepEqual(c.relays, ['wss://relay.example.com/v1', 'ws://127.0.0.1:7777/']);
  assert.equal(Buffer.from(c.secret).toString('hex'), SECRET);
  assert.equal(c.clientPubkey, getPublicKey(Buffer.from(SECRET, 'hex')));
  // Also without the "//", with upper-case hex and surrounding blanks.
  const c2 = parseNwcUri(`  nostr+walletconnect:${WALLET.toUpperCase()}?relay=wss://r.example&secret=${SECRET.toUpperCase()}  `);
  assert.equal(c2.walletPubkey, WALLET);
  assert.equal(Buffer.from(c2.secret).toString('hex'), SECRET);
  assert.equal(relayHost('wss://relay.example.com:444/path?token=x'), 'relay.example.com:444');
});

test('parseNwcUri: every malformed URI fails with a clear message that never quotes the secret', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /missing/],
    [`https://example.com/?secret=${SECRET}`, /must start with nostr\+walletconnect/],
    [`nostr+walletconnect://${WALLET}`, /no query string/],
    [uri(`relay=wss://r.example&secret=${SECRET}`, WALLET.slice(2)), /64 hex characters/],
    [uri(`relay=wss://r.example&secret=${SECRET}`, 'zz' + WALLET.slice(2)), /64 hex characters/],
    [uri(`relay=wss://r.example&secret=${SECRET}`, '05'.repeat(32)), /not a valid secp256k1 x-only key/],
    [uri('relay=wss://r.example'), /secret parameter is missing/],
    [uri(`relay=wss://r.example&secret=${SECRET.slice(1)}`), /secret must be 64 hex/],
    [uri(`relay=wss://r.example&secret=${SECRET}&secret=${SECRET}`), /more than once/],
    [uri(`relay=wss://r.example&secret=${'00'.repeat(32)}`), /not a valid secp256k1 secret key/],
    [uri(`secret=${SECRET}`), /at least one relay/],
    [uri(`relay=https://r.example&secret=${SECRET}`), /relay #1 .* must be a wss:\/\/ or ws:\/\//],
    [uri(`relay=${SECRET}&secret=${SECRET}`), /relay #1 is not a valid URL/],
    [uri(`relay=wss://u:p@r.example&secret=${SECRET}`), /must not carry user:password/],
  ];
  for (const [input, re] of cases) {
    let err: unknown;
    try {
      parseNwcUri(input);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof NwcUriError, `expected NwcUriError for ${re}`);
    assert.match(err.message, re);
    assertNoSecret(err.message, `error for ${re}`);
    assertNoSecret(inspect(err), `inspected error for ${re}`);
    assertNoSecret(JSON.stringify(err), `serialised error for ${re}`);
  }
});

test('config schema: uri validated at parse time, issues name the problem and never quote the secret', () => {
  assert.deepEqual(nwcConfigSchema.parse({ type: 'nwc', uri: GOOD }), { type: 'nwc', uri: GOOD });
  const bad = nwcConfigSchema.safeParse({ type: 'nwc', uri: uri(`relay=http://r.example&secret=${SECRET}`) });
  assert.equal(bad.success, false);
  const text = JSON.stringify(bad.error!.issues);
  assert.match(text, /wss:\/\/ or ws:\/\//);
  assertNoSecret(text, 'zod issues');
  assertNoSecret(inspect(bad.error, { depth: 10 }), 'zod error');
  const neither = nwcConfigSchema.safeParse({ type: 'nwc' });
  assert.equal(neither.success, false);
  assert.match(JSON.stringify(neither.error!.issues), /NWC connection URI is required/);
  const both = nwcConfigSchema.safeParse({ type: 'nwc', uri: GOOD, uri_file: 'nwc.uri' });
  assert.match(JSON.stringify(both.error!.issues), /either `uri` or `uri_file`/);
  assert.equal(nwcConfigSchema.safeParse({ type: 'nwc', uri: GOOD, relays: [] }).success, false, 'strict: unknown keys refused');
});

test('legacy environment: NWC_URI becomes lightning.uri', () => {
  assert.deepEqual(nwcFromLegacyEnv({ LN_CLIENT_TYPE: 'NWC', NWC_URI: `  ${GOOD}\n` }), { type: 'nwc', uri: GOOD });
  assert.deepEqual(nwcFromLegacyEnv({ LN_CLIENT_TYPE: 'NWC' }), { type: 'nwc' });
  assert.equal(nwcConfigSchema.safeParse(nwcFromLegacyEnv({ NWC_URI: GOOD })).success, true);
  assert.equal(nwcConfigSchema.safeParse(nwcFromLegacyEnv({})).success, false);
});

test('encryption negotiation follows NIP-47: NIP-44 v2 when offered, no tag means NIP-04', () => {
  const tags = (v?: string) => ({ tags: v === undefined ? [['notifications', 'payment_received']] : [['encryption', v]] });
  assert.equal(negotiateEncryption(tags('nip44_v2 nip04')).encryption, 'nip44_v2');
  assert.equal(negotiateEncryption(tags('nip04 nip44_v2')).encryption, 'nip44_v2');
  assert.equal(negotiateEncryption(tags('nip04,nip44_v2')).encryption, 'nip44_v2');
  assert.equal(negotiateEncryption(tags('nip44_v2')).encryption, 'nip44_v2');
  assert.equal(negotiateEncryption(tags('nip04')).encryption, 'nip04');
  assert.equal(negotiateEncryption(tags(undefined)).encryption, 'nip04');
  assert.equal(negotiateEncryption(tags('nip99_future')).encryption, undefined);
  assert.deepEqual(infoMethods({ content: 'pay_invoice make_invoice,lookup_invoice  get_info' }), ['pay_invoice', 'make_invoice', 'lookup_invoice', 'get_info']);
});

test('start-up: unreadable uri_file and unreachable relays fail fast with an actionable message, no secret', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-nwc-unit-'));
  try {
    const sink = new PassThrough();
    const logs: string[] = [];
    sink.on('data', (b: Buffer) => logs.push(b.toString()));
    const ctx = { configDir: dir, dataDir: dir, log: createLogger('debug', sink), timeoutMs: 2000 };

    await assert.rejects(createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri_file: 'missing.uri' }), ctx), /uri_file: cannot read .*missing\.uri: no such file \(ENOENT\)/);

    const dead1 = await freePort();
    const dead2 = await freePort();
    writeFileSync(join(dir, 'nwc.uri'), `\n${uri(`relay=ws://127.0.0.1:${dead1}&relay=ws://127.0.0.1:${dead2}&secret=${SECRET}`)}\n`);
    const t0 = Date.now();
    let err: unknown;
    try {
      await createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri_file: 'nwc.uri' }), ctx);
    } catch (e) {
      err = e;
    }
    assert.ok(Date.now() - t0 < 1500, 'refused connections fail fast, not at the timeout');
    assert.ok(err instanceof Error);
    assert.match(err.message, new RegExp(`could not reach any relay .*127\\.0\\.0\\.1:${dead1}: .*ECONNREFUSED.*127\\.0\\.0\\.1:${dead2}`));
    assertNoSecret(inspect(err), 'start-up error');

    writeFileSync(join(dir, 'bad.uri'), uri(`relay=wss://r.example&secret=${SECRET.slice(2)}`));
    await assert.rejects(createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri_file: 'bad.uri' }), ctx), (e: Error) => {
      assert.match(e.message, /uri_file .*bad\.uri: NWC URI: secret must be 64 hex/);
      assertNoSecret(inspect(e), 'uri_file error');
      return true;
    });
    assertNoSecret(logs.join(''), 'logs');
    assert.ok(BackendCallError, 'backend module loads');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
