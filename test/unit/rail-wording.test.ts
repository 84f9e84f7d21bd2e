// Every answer describes exactly the rails it offers: a route that sells only Cashu never asks for an invoice
// or an L402 credential, a Lightning-only route never mentions Cashu, and a route selling both (or one whose
// Lightning backend is down) says what this answer carries. Walks every access mode, rail combination and
// outcome the decision can reach, in JSON and on the HTML page; and decide() never honours an L402 credential
// on a route that does not sell Lightning.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/config.js';
import { decide, type InvalidReason } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';
import type { CashuRail } from '../../src/rails/cashu/index.js';
import { Gate } from '../../src/server/gate.js';
import { describeReason } from '../../src/server/render.js';
import { createLogger } from '../../src/util/log.js';

let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-wording-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const cashu = { mode: 'standard', unit: 'sat', paymentRequest: (msat: number) => `creqAtest${Math.ceil(msat / 1000)}`, accept: async () => ({ ok: false, status: 400, reason: 'no' }) } as unknown as CashuRail;
const broken: LightningBackend = { kind: 'broken', createInvoice: async () => { throw new Error('down'); }, describe: () => 'broken', close: async () => {} };

const RAILS: ReadonlyArray<readonly string[]> = [['lightning'], ['cashu'], ['lightning', 'cashu']];
const ACCESS = ['per-request', 'timed', 'indefinite'] as const;
const LN_REASONS: InvalidReason[] = ['malformed_credential', 'malformed_macaroon', 'unknown_identifier', 'bad_signature', 'expired', 'wrong_route', 'wrong_path', 'wrong_method', 'wrong_service', 'wrong_preimage', 'unknown_caveat', 'malformed_caveat', 'missing_preimage', 'already_used', 'auto_detect_off', 'missing_capability'];

/** The (outcome, reason) pairs decide() (and the nginx endpoints) can give a route selling these rails. */
function reachable(rails: readonly string[]): Array<[string, string]> {
  const ln = rails.includes('lightning');
  const ca = rails.includes('cashu');
  const out: Array<[string, string]> = [['challenge', 'no_credential'], ['rate_limited', 'invoice_rate_limited'], ['unavailable', 'store_unavailable'], ['forbidden', 'no_route'], ['method_not_allowed', 'method_not_sold'], ['method_not_allowed', 'bad_method'], ['invalid', 'malformed_credential']];
  if (ln) out.push(['challenge', 'payment_pending'], ['unavailable', 'backend_unavailable'], ...LN_REASONS.map((r): [string, string] => ['invalid', r]));
  if (ca) out.push(['cashu_rejected', 'cashu_rejected'], ['unavailable', 'cashu_unavailable']);
  return out;
}

const LIGHTNING_WORDS = /L402|LSAT|invoice|macaroon|preimage|Lightning|WWW-Authenticate/i;
const CASHU_WORDS = /cashu|ecash|X-Cashu|creqA/i;

test('every answer, for every access mode and rail combination, names exactly the rails it offers', async () => {
  let checked = 0;
  for (const rails of RAILS) {
    for (const access of ACCESS) {
      for (const backend of rails.includes('lightning') ? [wallet, broken] : [wallet]) {
        const cfg = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /r, amount_msat: 2000, access: ${access}, macaroon_timeout: ${access === 'timed' ? 600 : 0}, rails: [${rails.join(', ')}] }\n`, { env: {} });
        const gate = new Gate({ config: cfg, store: new MemoryStore(), backend, rootKeys: [randomBytes(32)], log: createLogger('silent'), cashu });
        for (const [outcome, reason] of reachable(rails)) {
          for (const html of [false, true]) {
            const path = outcome === 'forbidden' ? '/elsewhere' : '/r';
            const h = { accept: html ? 'text/html' : 'application/json' };
            const r = await gate.render(outcome, reason, { path, method: 'GET', credentials: {} }, h, { detail: outcome === 'cashu_rejected' ? 'token already spent' : undefined });
            const what = `${rails.join('+')} ${access} ${backend.kind} ${outcome}/${reason} ${html ? 'html' : 'json'} -> ${r.status}`;
            const ln = r.headers.some(([k]) => k === 'WWW-Authenticate');
            const ca = r.headers.some(([k]) => k === 'X-Cashu');
            // A payment outcome offers payment, unless nothing can be offered (only Lightning, its backend down: 503).
            const payment = ['challenge', 'invalid', 'cashu_rejected'].includes(outcome) && path === '/r';
            const offers = payment && (rails.includes('cashu') || backend === wallet);
            assert.equal(r.status === 503, (payment && !offers) || outcome === 'unavailable', `${what}: status`);
            assert.equal(ln, offers && outcome !== 'cashu_rejected' && rails.includes('lightning') && backend === wallet, `${what}: Lightning challenge (a Cashu rejection carries X-Cashu only, NUT-24)`);
            assert.equal(ca, offers && rails.includes('cashu'), `${what}: X-Cashu`);
            // What is said: an answer that offers payment names no rail it does not offer; any other answer
            // (a 503 naming the part that is down, a 403, 405, 429) no rail the route does not sell.
            // A refused credential's own description (what the client sent, e.g. "The preimage does not match
            // the invoice.") is about that credential, not an offer: the rest is checked.
            const own = outcome === 'invalid' ? describeReason(reason) : '\u0000';
            const text = (html ? r.body.replace(/<script[\s\S]*?<\/script>/g, '').replace(/Content-Security-Policy[^>]*>/, '') : String(JSON.parse(r.body).detail)).split(own).join('');
            const sayLn = offers ? ln : rails.includes('lightning');
            const sayCa = offers ? ca : rails.includes('cashu');
            if (!sayLn) assert.doesNotMatch(text, LIGHTNING_WORDS, `${what}: ${text.slice(0, 400)}`);
            if (!sayCa) assert.doesNotMatch(text, CASHU_WORDS, `${what}: ${text.slice(0, 400)}`);
            if (ln) assert.match(text, /Authorization: L402 &lt;macaroon&gt;:&lt;preimage&gt;|Authorization: L402 <macaroon>:<preimage>/, what);
            if (ca) assert.match(text, /X-Cashu/, what);
            if (!html) {
              const methods = JSON.parse(r.body).methods as string[] | undefined;
              assert.deepEqual(methods ?? [], [...(ln ? ['L402'] : []), ...(ca ? ['Cashu'] : [])], what);
            }
            if (html && offers) {
              assert.equal(r.body.includes('id="invoice"'), ln, `${what}: invoice panel`);
              assert.equal(r.body.includes('id="cashu-form"'), ca, `${what}: Cashu form`);
              if (ln || ca) assert.match(r.body, /id="price-sats">2 sats?</, `${what}: the price`);
            }
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 300, `walked ${checked} answers`);
});

test('decide(): a route that sells only Cashu honours no L402 credential, even a valid one for its route id', async () => {
  const both = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /r, amount_msat: 2000, access: indefinite }\n`, { env: {} });
  const only = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /r, amount_msat: 2000, access: indefinite, rails: [cashu] }\n`, { env: {} });
  const key = randomBytes(32);
  const c = await createChallenge(both.routes[0]!, { path: '/r', method: 'GET', amountMsat: 2000 }, { backend: wallet, rootKey: key, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
  const auth = `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}`;
  const run = (cfg: typeof both) => decide({ path: '/r', method: 'GET', credentials: { authorization: auth } }, { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [key], store: new MemoryStore(), storeTimeoutMs: 500, cashu });
  assert.equal((await run(both)).outcome, 'allow');
  const refused = await run(only);
  assert.deepEqual([refused.outcome, refused.reason], ['challenge', 'no_credential']);
});

test('a dry-run route that sells only Cashu never samples a Lightning challenge', async () => {
  for (const rails of [['cashu'], ['lightning', 'cashu']]) {
    const cfg = parseConfig(`lightning: { type: dev }\ndry_run: { invoice_sample_rate: 1 }\nroutes:\n  - { match: /r, amount_msat: 2000, dry_run: true, rails: [${rails.join(', ')}] }\n`, { env: {} });
    const gate = new Gate({ config: cfg, store: new MemoryStore(), backend: wallet, rootKeys: [randomBytes(32)], log: createLogger('silent'), cashu });
    const req = { path: '/r', method: 'GET', credentials: {} };
    const d = await gate.decide(req);
    assert.ok(d.outcome === 'allow' && d.reason === 'dry_run');
    const headers = await gate.dryRunHeaders(d, req);
    assert.equal(headers.some(([k]) => k === 'X-L402-Dry-Run-Challenge'), rails.includes('lightning'), rails.join('+'));
  }
});
