// One request, two credentials in different headers: l402d decides on one of them by a fixed order (on a route
// that sells Cashu, X-Cashu before the L402 credential in Authorization). nginx's auth cache must never let
// through, on a kept answer for the L402 credential, a request that l402d would decide on the other one: its key
// holds every header l402d reads a credential from. Real nginx with its auth cache on, real mint peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getEncodedToken } from '@cashu/cashu-ts';
import { Cleanup, freePort, http1, http2, requireTool } from './harness.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroon } from '../../src/protocol/macaroon.js';
import { startStack, type Stack } from './gate-fixture.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let mint: CashuMintPeer;
/** The same server block as s.origin, also listening for HTTP/2 (h2c). */
let h2Origin: string;

before(async () => {
  if (skip) return;
  const dir = mkdtempSync(join(tmpdir(), 'l402-cache-precedence-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  // The default auth cache (nginx_cache.max_secs 5): a timed credential's "paid" answer is kept.
  const h2 = await freePort();
  h2Origin = `http://127.0.0.1:${h2}`;
  s = await startStack(cleanup, { extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"] }\n`, extra: () => `listen 127.0.0.1:${h2} http2;` });
});
after(() => cleanup.run());

const get = (path: string, headers: Record<string, string> = {}) => http1(s.origin + path, { headers: { accept: 'application/json', ...headers } });

test('a kept "paid" answer for an L402 credential never passes a request that also carries ecash: l402d decides on the ecash', { skip }, async () => {
  const c = await s.buy('/timed/a');
  // Paid, and kept by nginx (the next identical request does not reach l402d).
  assert.equal((await get('/timed/a', { authorization: c.auth })).status, 200);
  assert.equal((await get('/timed/a', { authorization: c.auth })).status, 200);
  s.upstream.reset();
  // The same credential with ecash that does not pay: l402d reads X-Cashu first on this route and refuses it.
  const bad = await get('/timed/a', { authorization: c.auth, 'x-cashu': 'cashuBnot-a-token' });
  assert.equal(bad.status, 400, `a kept answer for the L402 credential let through a request decided on X-Cashu: ${bad.body}`);
  assert.equal((JSON.parse(bad.body) as { reason: string }).reason, 'cashu_rejected');
  // With ecash that pays, that ecash is what paid (the rail the upstream is told), not the kept L402 answer.
  const { wallet, proofs } = await mint.fundedWallet(5 + 8);
  const { send } = await wallet.ops.send(5, proofs).run();
  const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  const paid = await get('/timed/a', { authorization: c.auth, 'x-cashu': token });
  assert.equal(paid.status, 200, paid.body);
  assert.equal(s.upstream.requests.at(-1)?.headers['x-l402-rail'], 'cashu');
  // Spent: the same ecash again is refused, never answered from a kept answer.
  assert.equal((await get('/timed/a', { authorization: c.auth, 'x-cashu': token })).status, 400);
  // The L402 credential alone still opens the route.
  assert.equal((await get('/timed/a', { authorization: c.auth })).status, 200);
});

test('a kept answer for a gRPC call paid in `token` metadata never passes the same headers over HTTP/1.1, where l402d does not read them', { skip }, async () => {
  const c = await s.buy('/timed/b');
  // Aperture's metadata form: the hex macaroon with the preimage as a caveat, read on HTTP/2 gRPC calls only.
  const token = encodeMacaroon(attenuate(decodeMacaroonBase64(c.macaroon), `preimage=${c.preimage}`)).toString('hex');
  const headers = { 'content-type': 'application/grpc', token };
  for (let i = 0; i < 2; i++) assert.equal((await http2(h2Origin, '/timed/b', { headers })).status, 200, `HTTP/2 call ${i}`);
  // Over HTTP/1.1 a gRPC content type is not a gRPC call: l402d reads no credential from `token`, so it asks to pay.
  const plain = await http1(s.origin + '/timed/b', { headers: { ...headers, accept: 'application/json' } });
  assert.equal(plain.status, 402, `a kept answer let through a request l402d reads no credential in: ${plain.body}`);
});
