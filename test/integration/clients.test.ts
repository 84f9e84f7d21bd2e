// Independent L402 clients pay through nginx: Alby's fetchWithL402 and Tierion's lsat-js (LSAT scheme).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { get } from 'node:http';
import { fetchWithL402, parseL402 } from '@getalby/lightning-tools/402/l402';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const require = createRequire(import.meta.url);
// lsat-js is CommonJS with types pointing at a git fork of js-macaroon; load it untyped.
const { Lsat } = require('lsat-js') as {
  Lsat: {
    fromHeader(h: string): { paymentHash: string; invoice: string; id: string; setPreimage(p: string): void; toToken(): string; isSatisfied(): boolean };
  };
};

/** Each WWW-Authenticate line separately (node joins repeated headers in `headers`). */
function challengeLines(url: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      res.resume();
      assert.equal(res.statusCode, 402);
      const out: string[] = [];
      for (let i = 0; i < res.rawHeaders.length; i += 2) if (res.rawHeaders[i]!.toLowerCase() === 'www-authenticate') out.push(res.rawHeaders[i + 1]!);
      resolve(out);
    }).on('error', reject);
  });
}

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
before(async () => {
  if (nginxBin) s = await startStack(cleanup, { extraYaml: 'challenge: { lsat: true }\n' });
});
after(() => cleanup.run());

test('@getalby/lightning-tools fetchWithL402 pays the challenge and gets the content', { skip }, async () => {
  s.upstream.reset();
  let paid = 0;
  const wallet = {
    async payInvoice({ invoice }: { invoice: string }) {
      paid++;
      return { preimage: s.wallet.pay(invoice).toString('hex') };
    },
  };
  const res = await fetchWithL402(s.origin + '/premium', {}, { wallet });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true, path: '/premium' });
  assert.equal(paid, 1);
  assert.equal(res.payment?.paid, true);
  assert.equal(res.payment?.amountSat, 10);
  assert.equal(s.upstream.hits, 1);
  // Its parser reads our challenge (macaroon= first, then version/token) consistently.
  const r = await http1(s.origin + '/premium');
  const p = parseL402(String([r.headers['www-authenticate']].flat()[0]));
  assert.equal(p.token, p.macaroon);
  assert.equal(p.version, '0');
});

test('lsat-js parses the LSAT challenge and its LSAT token passes', { skip }, async () => {
  s.upstream.reset();
  const all = await challengeLines(s.origin + '/premium');
  assert.ok(all[0]!.startsWith('L402 '), 'L402 challenge comes first');
  const lsatHeader = all.find((h) => h.startsWith('LSAT '));
  assert.ok(lsatHeader, 'LSAT challenge offered when configured');
  const lsat = Lsat.fromHeader(lsatHeader);
  const preimage = s.wallet.pay(lsat.invoice).toString('hex');
  assert.equal(lsat.paymentHash.length, 64);
  lsat.setPreimage(preimage);
  assert.ok(lsat.isSatisfied());
  const token = lsat.toToken();
  assert.match(token, /^LSAT /);
  const ok = await http1(s.origin + '/premium', { headers: { authorization: token } });
  assert.equal(ok.status, 200);
  assert.equal(s.upstream.hits, 1);
});
