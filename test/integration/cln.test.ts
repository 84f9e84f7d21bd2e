// End to end through a real nginx: the CLN and BOLT12 backends talking to the CLN peer.
// Unpaid → 402 carrying the node's invoice; the node settles it; the preimage buys exactly one 200.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack } from './gate-fixture.js';
import type { BackendContext, LightningBackend } from '../../src/rails/lightning/backend.js';
import { clnConfigSchema, createClnBackend } from '../../src/rails/lightning/cln/cln.js';
import { bolt12ConfigSchema, createBolt12Backend, decodeBolt12Invoice } from '../../src/rails/lightning/cln/bolt12.js';
import { createLogger } from '../../src/util/log.js';
import { startClnPeer, type ClnPeer } from '../peers/cln-peer.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';

const ctx = (): BackendContext => ({ configDir: tmpdir(), dataDir: tmpdir(), log: createLogger('silent'), timeoutMs: 3000 });

function challengeOf(h: Record<string, string | string[] | undefined>): string {
  const v = h['www-authenticate'];
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

async function payFlow(peer: ClnPeer, backend: LightningBackend, cleanup: Cleanup, expectPrefix: RegExp): Promise<{ invoice: string; origin: string }> {
  const s = await startStack(cleanup, { backend });
  s.upstream.reset();
  const unpaid = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
  assert.equal(unpaid.status, 402, unpaid.body);
  const body = JSON.parse(unpaid.body) as { invoice: string; macaroon: string; payment_hash: string; amount_msat: number };
  assert.match(body.invoice, expectPrefix);
  assert.ok(challengeOf(unpaid.headers).includes(`invoice="${body.invoice}"`), 'the challenge header carries the node invoice');
  assert.equal(s.upstream.hits, 0);
  // It is the peer's invoice: the peer can settle it, and its preimage matches the challenge.
  const preimage = peer.settle(body.invoice);
  assert.equal(createHash('sha256').update(preimage).digest('hex'), body.payment_hash);
  const paid = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage.toString('hex')}` } });
  assert.equal(paid.status, 200, paid.body);
  assert.deepEqual(JSON.parse(paid.body), { ok: true, path: '/premium' });
  assert.equal(s.upstream.hits, 1);
  const replay = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage.toString('hex')}`, accept: 'application/json' } });
  assert.equal(replay.status, 401, 'per-request credentials are single use');
  assert.equal(s.upstream.hits, 1);
  return { invoice: body.invoice, origin: s.origin };
}

test('cln over the unix socket: 402 with the node invoice, settle at the node, 200; node down → 503', { skip }, async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const peer = await startClnPeer();
  cleanup.add(() => peer.stop(), 'cln peer');
  const backend = createClnBackend(clnConfigSchema.parse({ type: 'cln', rpc_path: peer.socketPath }), ctx());
  const { origin } = await payFlow(peer, backend, cleanup, /^lnbcrt100n1/);
  const call = peer.calls.find((c) => c.method === 'invoice')!;
  assert.equal(call.transport, 'rpc');
  assert.equal(call.params.amount_msat, 10000);
  assert.match(call.params.label as string, /^l402-[0-9a-f]{32}$/);
  await peer.down();
  const down = await http1(origin + '/premium', { headers: { accept: 'application/json' } });
  assert.equal(down.status, 503, 'fails closed when the node is unreachable');
  assert.ok(down.headers['retry-after']);
  await peer.up();
});

test('cln over clnrest (HTTPS + rune): the same paid flow', { skip }, async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const peer = await startClnPeer({ rest: true });
  cleanup.add(() => peer.stop(), 'cln peer');
  const backend = createClnBackend(
    clnConfigSchema.parse({ type: 'cln', transport: 'rest', rest_url: peer.restUrl, rune: peer.rune, ca_cert_path: peer.caPath }),
    ctx(),
  );
  await payFlow(peer, backend, cleanup, /^lnbcrt100n1/);
  assert.ok(peer.calls.some((c) => c.method === 'invoice' && c.transport === 'rest'));
});

test('bolt12: 402 with an lni invoice fetched from the offer, settle at the node, 200', { skip }, async (t) => {
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const peer = await startClnPeer();
  cleanup.add(() => peer.stop(), 'cln peer');
  const offer = peer.createOffer({ description: 'premium via BOLT12' });
  const backend = createBolt12Backend(bolt12ConfigSchema.parse({ type: 'bolt12', offer, rpc_path: peer.socketPath, network: 'regtest' }), ctx());
  const { invoice } = await payFlow(peer, backend, cleanup, /^lni1/);
  const d = decodeBolt12Invoice(invoice);
  assert.equal(d.amountMsat, 10000n);
  assert.equal(d.nodeId.toString('hex'), peer.nodeId);
  const fetch = peer.calls.find((c) => c.method === 'fetchinvoice')!;
  assert.equal(fetch.params.offer, offer);
  assert.equal(fetch.params.amount_msat, 10000);
});
