// Cashu through real nginx (NUT-24): X-Cashu challenge on the 402, tokens from real cashu-ts wallets in
// X-Cashu or Authorization: Cashu, 400 with a fresh request for every rejection, one pass per token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createRandomSecretKey, decodePaymentRequest, getEncodedToken, getPubKeyFromPrivKey } from '@cashu/cashu-ts';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let mint: CashuMintPeer;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const gateKey = hex(createRandomSecretKey());

before(async () => {
  if (skip) return;
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'l402-cashu-gate-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  s = await startStack(cleanup, {
    extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"], p2pk: { private_key: ${gateKey} } }\n`,
    // Served by the paid `location /premium` of the stack (the longer route match decides).
    extraRoutes: '  - { match: /premium/capsold/, amount_msat: 2000, capabilities: [read, write] }\n',
  });
});
after(() => cleanup.run());

async function token(amount: number): Promise<string> {
  const { wallet, proofs } = await mint.fundedWallet(amount + 8);
  const { send } = await wallet.ops.send(amount, proofs).run();
  return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
}

const get = (path: string, headers: Record<string, string> = {}) => http1(s.origin + path, { headers: { accept: 'application/json', ...headers } });

test('the 402 carries a NUT-18 X-Cashu request for the price, in the mint unit', { skip }, async () => {
  const r = await get('/premium');
  assert.equal(r.status, 402);
  const pr = decodePaymentRequest(String(r.headers['x-cashu']));
  assert.equal(Number(pr.amount), 10);
  assert.equal(pr.unit, 'sat');
  assert.deepEqual(pr.mints, [mint.url]);
  assert.match(String(r.headers['access-control-expose-headers']), /X-Cashu/);
  assert.ok(String(r.headers['www-authenticate']).startsWith('L402 '), 'Lightning stays offered');
  assert.equal(JSON.parse(r.body).cashu_request, r.headers['x-cashu']);
  // Prices convert to the mint unit (rounding up is unit-tested).
  const lim = await get('/limited');
  assert.equal(Number(decodePaymentRequest(String(lim.headers['x-cashu'])).amount), 1);
});

test('a token pays for exactly one request; rejections are 400 with a fresh X-Cashu, never a pass', { skip }, async () => {
  s.upstream.reset();
  const t = await token(10);
  const ok = await get('/premium', { 'x-cashu': t });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(s.upstream.hits, 1);
  for (const [headers, why] of [
    [{ 'x-cashu': t }, /spent|already/i],
    [{ 'x-cashu': await token(5) }, /amount|insufficient|less|price/i],
    [{ 'x-cashu': 'cashuBnotatoken' }, /./],
    [{ 'x-cashu': 'creqAabc' }, /payment request/],
  ] as const) {
    const r = await get('/premium', headers);
    assert.equal(r.status, 400, `${why}: ${r.status} ${r.body}`);
    assert.ok(r.headers['x-cashu'], 'fresh X-Cashu on a rejection');
    const body = JSON.parse(r.body);
    assert.equal(body.reason, 'cashu_rejected');
    assert.match(body.detail, why);
  }
  assert.equal(s.upstream.hits, 1);
  // ngx_l402 clients: Authorization: Cashu <token>.
  assert.equal((await get('/premium', { authorization: `Cashu ${await token(10)}` })).status, 200);
  assert.equal(s.upstream.hits, 2);
});

test('a Cashu payment on a route that sells capabilities hands the upstream the whole set, as an L402 payer of the route gets', { skip }, async () => {
  const ok = await get('/premium/capsold/x', { 'x-cashu': await token(2) });
  assert.equal(ok.status, 200, ok.body);
  const h = s.upstream.requests.at(-1)!.headers;
  assert.equal(h['x-l402-rail'], 'cashu');
  assert.equal(h['x-l402-capabilities'], 'read,write');
});

test('two concurrent requests with one token: exactly one passes', { skip }, async () => {
  s.upstream.reset();
  const t = await token(10);
  const rs = await Promise.all(Array.from({ length: 6 }, () => get('/premium', { 'x-cashu': t })));
  assert.equal(rs.filter((r) => r.status === 200).length, 1, rs.map((r) => r.status).join(','));
  assert.ok(rs.every((r) => r.status === 200 || r.status === 400 || r.status === 503));
  assert.equal(s.upstream.hits, 1);
});

test('the manifest lists the Cashu rail', { skip }, async () => {
  const m = JSON.parse((await http1(s.origin + '/.well-known/l402-services')).body);
  const c = m.payment_methods.find((p: { type: string }) => p.type === 'cashu');
  assert.deepEqual(c.mints, [mint.url]);
  assert.equal(c.challenge_header, 'X-Cashu');
  assert.ok(getPubKeyFromPrivKey(Buffer.from(gateKey, 'hex')));
});

test('P2PK mode through nginx: the request locks to our key; only tokens locked to it pass', { skip }, async () => {
  const local = new Cleanup();
  try {
    const p2 = await startStack(local, { extraYaml: `cashu: { mode: p2pk, mints: ["${mint.url}"], p2pk: { private_key: ${gateKey} } }\n` });
    const pub = hex(getPubKeyFromPrivKey(Buffer.from(gateKey, 'hex')));
    const r = await http1(p2.origin + '/premium', { headers: { accept: 'application/json' } });
    const pr = decodePaymentRequest(String(r.headers['x-cashu']));
    assert.equal(pr.nut10?.kind, 'P2PK');
    assert.equal(pr.nut10?.data, pub);
    const lockedTo = async (pubkey: string) => {
      const { wallet, proofs } = await mint.fundedWallet(18);
      const { send } = await wallet.ops.send(10, proofs).asP2PK({ pubkey, locktime: Math.floor(Date.now() / 1000) + 7 * 86400, refundKeys: [] }).run();
      return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
    };
    const other = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
    const wrong = await http1(p2.origin + '/premium', { headers: { accept: 'application/json', 'x-cashu': await lockedTo(other) } });
    assert.equal(wrong.status, 400);
    const ok = await http1(p2.origin + '/premium', { headers: { 'x-cashu': await lockedTo(pub) } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(p2.upstream.hits, 1);
  } finally {
    await local.run();
  }
});
