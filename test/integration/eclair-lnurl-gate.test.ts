// End to end through real nginx with the Eclair and LNURL backends talking to their protocol peers:
// unpaid → 402 with the peer's invoice, pay at the peer, retry with the preimage → 200.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import type { BackendContext } from '../../src/rails/lightning/backend.js';
import { createEclairBackend, eclairConfigSchema } from '../../src/rails/lightning/http/eclair.js';
import { createLnurlBackend, lnurlConfigSchema, LnurlMetadataCache } from '../../src/rails/lightning/http/lnurl.js';
import { createLogger } from '../../src/util/log.js';
import { startEclairPeer } from '../peers/eclair-peer.js';
import { startLnurlPeer } from '../peers/lnurl-peer.js';

const nginxBin = requireTool('nginx');
const opensslBin = requireTool('openssl');
const cleanup = new Cleanup();
after(() => cleanup.run());

function ctx(): BackendContext {
  const dir = mkdtempSync(join(tmpdir(), 'l402-e2e-backend-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }), 'rm backend dir');
  return { configDir: dir, dataDir: dir, log: createLogger('silent'), timeoutMs: 3000 };
}

const hashOf = (bolt11: string): string =>
  (lightBolt11.decode(bolt11).sections.find((s) => s.name === 'payment_hash') as { value: string }).value;

/** The L402 round trip through nginx, paying with `settle`. */
async function payThroughNginx(s: Stack, settle: (bolt11: string) => Buffer): Promise<string> {
  s.upstream.reset();
  const r = await http1(`${s.origin}/premium`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const body = JSON.parse(r.body) as { macaroon: string; invoice: string; payment_hash: string; amount_msat: number };
  assert.match(String(r.headers['www-authenticate']), new RegExp(`^L402 macaroon="[^"]+", invoice="${body.invoice}"`));
  assert.equal(body.amount_msat, 10_000);
  assert.equal(hashOf(body.invoice), body.payment_hash);
  assert.equal(s.upstream.hits, 0);

  // Not paid yet: a made-up preimage is refused and the upstream stays untouched.
  const forged = await http1(`${s.origin}/premium`, { headers: { accept: 'application/json', authorization: `L402 ${body.macaroon}:${randomBytes(32).toString('hex')}` } });
  assert.equal(forged.status, 401, forged.body);
  assert.equal(s.upstream.hits, 0);

  const preimage = settle(body.invoice).toString('hex');
  const paid = await http1(`${s.origin}/premium`, { headers: { authorization: `L402 ${body.macaroon}:${preimage}` } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal(s.upstream.hits, 1);
  return body.invoice;
}

test('eclair backend through nginx: 402 with the node\'s invoice, pay at the node, 200; node down → 503', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  const peer = cleanup.use(await startEclairPeer({ password: 'eclair-e2e-pw', authFailDelayMs: 100 }), 'eclair peer');
  const backend = createEclairBackend(eclairConfigSchema.parse({ type: 'eclair', url: peer.url, password: 'eclair-e2e-pw' }), ctx());
  const s = await startStack(cleanup, { backend });
  const invoice = await payThroughNginx(s, (b) => peer.settle(b));
  assert.equal(peer.calls.createinvoice, 2, 'one invoice per challenge (the 401 re-challenges too)');
  const st = await backend.lookupInvoice!(Buffer.from(hashOf(invoice), 'hex'));
  assert.equal(st.state, 'settled');

  peer.faults.down = true;
  s.upstream.reset();
  const r = await http1(`${s.origin}/premium`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 503, r.body);
  assert.ok(r.headers['retry-after']);
  assert.equal(s.upstream.hits, 0);
  assert.ok(!s.logs.join('\n').includes('eclair-e2e-pw'), 'password never logged');
});

test('lnurl backend through nginx: 402 with the LNURL service\'s invoice, pay at the service, 200', { skip: nginxBin && opensslBin ? false : 'nginx or openssl not installed' }, async () => {
  const peer = cleanup.use(await startLnurlPeer({}), 'lnurl peer');
  const cfg = lnurlConfigSchema.parse({ type: 'lnurl', address: peer.address('shop'), ca_cert_path: peer.caCertPath, allow_private: true });
  const backend = createLnurlBackend(cfg, ctx(), { cache: new LnurlMetadataCache() });
  const s = await startStack(cleanup, { backend });
  await payThroughNginx(s, (b) => peer.settle(b));
  assert.equal(peer.counts.metadata, 1, 'metadata fetched once for both challenges');
  assert.equal(peer.counts.callback, 2);
});
