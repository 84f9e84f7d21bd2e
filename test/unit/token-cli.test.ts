// What `l402d token` accepts as a credential, and what it refuses (in-process; the commands themselves run
// against real stores in test/integration/revocation*.test.ts and console.test.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config.js';
import { gateConfig, parseTarget } from '../../src/cli/token.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { mintLocalCredential, ROUTES_YAML, TEST_ROOT_KEY } from '../integration/gate-fixture.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { ngxL402Credential } from '../peers/ngx-l402-credentials.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const cfg = parseConfig(`root_key: ${TEST_ROOT_KEY}\n${ROUTES_YAML}`, { env: {} });
const route = (m: string) => cfg.routes.find((r) => r.match === m)!;

test('token ids and payment hashes (64 hex, any case), ngx_l402 ids, macaroons with or without scheme and preimage', async () => {
  assert.deepEqual(parseTarget('AB'.repeat(32), cfg), { value: 'ab'.repeat(32) });
  assert.deepEqual(parseTarget(`ngx_l402:${'cd'.repeat(32)}`, cfg), { value: 'cd'.repeat(32), paymentHash: 'cd'.repeat(32) });
  const c = await mintLocalCredential(route('/timed/'), '/timed/a');
  const id = decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!;
  const want = { value: id.tokenId.toString('hex'), tokenId: id.tokenId.toString('hex'), paymentHash: c.hash };
  for (const form of [c.macaroon, c.auth, `${c.macaroon}:${c.preimage}`, ` LSAT ${c.macaroon} `]) {
    const t = parseTarget(form, cfg);
    assert.deepEqual({ value: t.value, tokenId: t.tokenId, paymentHash: t.paymentHash }, want);
    // The minted expiry (the invoice's, an hour here, plus macaroon_timeout 120), so the revocation can be dropped after it.
    assert.ok(t.validUntil! > Date.now() / 1000 + 3700 && t.validUntil! <= Date.now() / 1000 + 3721);
  }
  const forever = await mintLocalCredential(route('/forever'), '/forever');
  assert.equal(parseTarget(forever.macaroon, cfg).validUntil, undefined);
});

test('refused: Cashu ids, another gate\'s macaroon, garbage; never echoing the argument', async () => {
  const refuses = (arg: string, re: RegExp, c = cfg) => {
    assert.throws(() => parseTarget(arg, c), (e: Error) => e instanceof UsageError && re.test(e.message) && !e.message.includes(arg));
  };
  refuses('cashu:0123abcd', /Cashu payment pays for one request/);
  const other = parseConfig(`root_key: ${'9e'.repeat(8)}${TEST_ROOT_KEY.slice(16)}\n${ROUTES_YAML}`, { env: {} });
  refuses((await mintLocalCredential(route('/forever'), '/forever')).macaroon, /not signed by this config's root_key/, other);
  refuses('not-a-credential', /the macaroon does not decode/);
  refuses('???', /give a token id or payment hash/);
  refuses('ab'.repeat(31), /give a token id|does not decode/);
  // ngx_l402's V1 macaroons: only with ngx_l402_root_key, and only its own.
  const ngxCfg = parseConfig(`root_key: ${TEST_ROOT_KEY}\nngx_l402_root_key: "the ROOT_KEY ngx_l402 ran with: 8d1c0a"\n${ROUTES_YAML}`, { env: {} });
  const ngx = ngxL402Credential('the ROOT_KEY ngx_l402 ran with: 8d1c0a', '/premium');
  const mac = ngx.authorization.replace(/^L402 /, '').split(':')[0]!;
  assert.deepEqual(parseTarget(mac, ngxCfg), { value: ngx.paymentHash.toString('hex'), paymentHash: ngx.paymentHash.toString('hex') });
  refuses(ngxL402Credential('another ngx_l402 ROOT_KEY, 32 chars+', '/premium').authorization, /not signed by ngx_l402_root_key/, ngxCfg);
});

test('the commands need the running gate\'s config and a shared store', () => {
  const d = mkdtempSync(join(tmpdir(), 'l402-token-cli-'));
  dirs.push(d);
  const saved = process.env.L402_CONFIG;
  delete process.env.L402_CONFIG;
  try {
    assert.throws(() => gateConfig('token list', undefined), /token list: give the running gate's config/);
    const mem = join(d, 'mem.yaml');
    writeFileSync(mem, `data_dir: ${d}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: memory }\n${ROUTES_YAML}`);
    assert.throws(() => gateConfig('token revoke', mem), /store.type is memory/);
    const ok = join(d, 'ok.yaml');
    writeFileSync(ok, `data_dir: ${d}\nroot_key: ${TEST_ROOT_KEY}\n${ROUTES_YAML}`);
    assert.equal(gateConfig('stats', ok).store.type, 'sqlite');
  } finally {
    if (saved !== undefined) process.env.L402_CONFIG = saved;
  }
});
