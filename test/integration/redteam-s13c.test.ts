// Red team, session 13c: a Lightning backend that lies or answers oddly, through real nginx. The gate trusts
// its node only for what the node alone can know (the invoice it issued, whether that invoice is paid), checks
// the rest, and answers a backend failure with a bounded 503 and Retry-After: never a crash, a 5xx without
// Retry-After, or an unpaid request let through. One CLN peer and one stack for the file; each test sets the
// peer's fault and clears it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import type { BackendContext, LightningBackend } from '../../src/rails/lightning/backend.js';
import { clnConfigSchema, createClnBackend } from '../../src/rails/lightning/cln/cln.js';
import { createLndBackend, lndConfigSchema } from '../../src/rails/lightning/lnd/lnd.js';
import { createLogger } from '../../src/util/log.js';
import { startClnPeer, type ClnPeer, type Tamper } from '../peers/cln-peer.js';
import { startLndPeer, type LndPeer } from '../peers/lnd-peer.js';
import { startNwcPeer, type NwcPeer } from '../peers/nwc-peer.js';
import { createNwcBackend, nwcConfigSchema } from '../../src/rails/lightning/nwc/nwc.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { getEncodedToken } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail, type CashuRail } from '../../src/rails/cashu/index.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let peer: ClnPeer;
let lnd: LndPeer;
let nwc: NwcPeer;
const backends: Record<'cln' | 'lnd-grpc' | 'lnd-rest' | 'nwc', LightningBackend> = {} as never;
let current: LightningBackend;

/**
 * The gate's one backend, answering through whichever real backend a test picks (each talks to its peer over
 * that node's own protocol): one stack for the file, several nodes behind it.
 */
const switchable: LightningBackend = {
  get kind() {
    return current.kind;
  },
  createInvoice: (req, signal) => current.createInvoice(req, signal),
  lookupInvoice: (hash, signal) => current.lookupInvoice!(hash, signal),
  describe: () => current.describe(),
  close: async () => {},
};

before(async () => {
  if (!nginxBin) return;
  const ctx = (): BackendContext => ({ configDir: tmpdir(), dataDir: tmpdir(), log: createLogger('silent'), timeoutMs: 2000 });
  peer = await startClnPeer();
  cleanup.add(() => peer.stop(), 'cln peer');
  lnd = cleanup.use(await startLndPeer(), 'lnd peer');
  backends.cln = createClnBackend(clnConfigSchema.parse({ type: 'cln', rpc_path: peer.socketPath }), ctx());
  for (const transport of ['grpc', 'rest'] as const) {
    backends[`lnd-${transport}`] = createLndBackend(
      lndConfigSchema.parse({ type: 'lnd', address: lnd.grpcAddress, rest_address: lnd.restAddress, transport, tls_cert_path: lnd.certPath, macaroon_path: lnd.macaroonPath }),
      ctx(),
    );
  }
  nwc = await startNwcPeer();
  cleanup.add(() => nwc.close(), 'nwc peer');
  backends.nwc = await createNwcBackend(nwcConfigSchema.parse({ type: 'nwc', uri: nwc.uri }), ctx());
  for (const b of Object.values(backends)) cleanup.add(() => b.close(), `close ${b.kind}`);
  current = backends.cln;
  s = await startStack(cleanup, { backend: switchable });
});
after(() => cleanup.run());

async function withTamper<T>(tamper: Tamper, fn: () => Promise<T>): Promise<T> {
  peer.faults.tamper = tamper;
  try {
    return await fn();
  } finally {
    peer.faults.tamper = undefined;
  }
}

async function get(path: string, auth?: string) {
  const r = await http1(s.origin + path, { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  return { status: r.status, headers: r.headers, body: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : undefined, raw: r.body };
}

const WEEK = 7 * 86400;

test('a node reporting an invoice expiry beyond any Date (year 300,000): a bounded answer, never a crash; the gate counts at most the longest invoice life', { skip }, async () => {
  current = backends.cln;
  for (const path of ['/premium', '/timed/s13c', '/auto']) {
    const r = await withTamper('expires_at_far', () => get(path));
    assert.equal(r.status, 402, `${path}: ${r.raw}`);
    const until = Date.parse(String(r.body!.expires_at));
    assert.ok(Number.isFinite(until) && until <= Date.now() + (WEEK + 60) * 1000, `${path}: expires_at ${String(r.body!.expires_at)}`);
    assert.ok(String(r.body!.invoice).startsWith('lnbcrt'), r.raw);
    // The node's real invoice pays, and buys the request (its own expiry is what the payer's wallet reads).
    if (path === '/premium') {
      const preimage = peer.settle(String(r.body!.invoice)).toString('hex');
      const paid = await get(path, `L402 ${String(r.body!.macaroon)}:${preimage}`);
      assert.equal(paid.status, 200, paid.raw);
    }
  }
  // The payment page renders it too.
  const page = await withTamper('expires_at_far', () => http1(s.origin + '/premium', { headers: { accept: 'text/html' } }));
  assert.equal(page.status, 402, page.body);
});

test('a CLN node reporting an expires_at later than its bolt11 says: the credential counts from the invoice the payer pays, not from the node\'s word', { skip }, async () => {
  current = backends.cln;
  // /timed/ sells 120 s (macaroon_timeout 120): its invoice is asked to live 120 s.
  const r = await withTamper('expires_at_late', () => get('/timed/s13c-late'));
  assert.equal(r.status, 402, r.raw);
  const now = Date.now();
  assert.ok(Date.parse(String(r.body!.expires_at)) <= now + 130_000, `expires_at ${String(r.body!.expires_at)}`);
  assert.ok(Date.parse(String(r.body!.valid_until)) <= now + 250_000, `valid_until ${String(r.body!.valid_until)}`);
});

test('lnd ignoring the expiry asked (an invoice living 6 days for a route that sells 120 s): refused, a 503 with Retry-After, never a credential valid for days', { skip }, async () => {
  for (const which of ['lnd-grpc', 'lnd-rest'] as const) {
    current = backends[which];
    lnd.knobs.garbage = 'long-expiry';
    try {
      const r = await get('/timed/s13c-long');
      assert.equal(r.status, 503, `${which}: ${r.raw}`);
      assert.ok(Number(r.headers['retry-after']) > 0, 'Retry-After');
      assert.ok(!/lnbcrt/.test(r.raw), 'no invoice');
    } finally {
      lnd.knobs.garbage = false;
    }
    const ok = await get('/timed/s13c-long');
    assert.equal(ok.status, 402, ok.raw);
    assert.ok(Date.parse(String(ok.body!.valid_until)) <= Date.now() + 250_000, String(ok.body!.valid_until));
  }
  assert.ok(s.logs.some((l) => l.includes('later than the expiry asked for allows')), 'the operator is told why');
});

test('lnd over gRPC answering AddInvoice with a 4 MiB payment_request: refused by its length before any decoding, a 503 with Retry-After', { skip }, async () => {
  current = backends['lnd-grpc'];
  lnd.knobs.garbage = 'huge';
  try {
    const r = await get('/premium');
    assert.equal(r.status, 503, r.raw);
    assert.ok(Number(r.headers['retry-after']) > 0, 'Retry-After');
  } finally {
    lnd.knobs.garbage = false;
  }
  assert.ok(s.logs.some((l) => /longer than 7089/.test(l)), 'refused for its length');
  assert.equal((await get('/premium')).status, 402);
});

test('auto-detect, CLN: a node answering "paid" with less received than the invoice asked passes nothing (503 with Retry-After); the full payment then passes once', { skip }, async () => {
  current = backends.cln;
  s.upstream.reset();
  const first = await get('/auto');
  assert.equal(first.status, 402, first.raw);
  const mac = String(first.body!.macaroon);
  peer.settle(String(first.body!.invoice));
  const lied = await withTamper('underpaid', () => get('/auto', `L402 ${mac}`));
  assert.equal(lied.status, 503, lied.raw);
  assert.ok(Number(lied.headers['retry-after']) > 0, 'Retry-After');
  assert.equal(s.upstream.hits, 0, 'nothing reached the upstream');
  assert.ok(!s.logs.some((l) => l.includes(peer.rune ?? '\u0000')), 'no secret in the logs');
  const paid = await get('/auto', `L402 ${mac}`);
  assert.equal(paid.status, 200, paid.raw);
  assert.equal((await get('/auto', `L402 ${mac}`)).status, 401);
  assert.equal(s.upstream.hits, 1);
});

for (const which of ['lnd-grpc', 'lnd-rest'] as const) {
  test(`auto-detect, ${which}: SETTLED with amt_paid_msat below value_msat passes nothing (503 with Retry-After); the full payment then passes once`, { skip }, async () => {
    current = backends[which];
    s.upstream.reset();
    const first = await get('/auto');
    assert.equal(first.status, 402, first.raw);
    const mac = String(first.body!.macaroon);
    lnd.settle(String(first.body!.invoice));
    lnd.knobs.garbage = 'underpaid';
    try {
      const lied = await get('/auto', `L402 ${mac}`);
      assert.equal(lied.status, 503, lied.raw);
      assert.ok(Number(lied.headers['retry-after']) > 0, 'Retry-After');
    } finally {
      lnd.knobs.garbage = false;
    }
    assert.equal(s.upstream.hits, 0, 'nothing reached the upstream');
    const paid = await get('/auto', `L402 ${mac}`);
    assert.equal(paid.status, 200, paid.raw);
    assert.equal((await get('/auto', `L402 ${mac}`)).status, 401);
    assert.equal(s.upstream.hits, 1);
  });
}

test('CLN dying mid-flight (silent, socket closed on the request, an 8 MiB reply, bytes that are not JSON): every challenge, auto-detect poll and page status is a bounded 503 with Retry-After, nothing passes or is spent; then it recovers', { skip, timeout: 60_000 }, async () => {
  current = backends.cln;
  s.upstream.reset();
  const first = await get('/auto');
  assert.equal(first.status, 402, first.raw);
  const mac = String(first.body!.macaroon);
  peer.settle(String(first.body!.invoice));
  const faults: Array<[string, () => void]> = [
    ['silent', () => (peer.faults.silent = true)],
    ['closed on the request', () => (peer.faults.closeOnRequest = true)],
    ['8 MiB reply', () => (peer.faults.hugeReplyBytes = 8 * 1024 * 1024)],
    ['not JSON', () => (peer.faults.garbage = true)],
  ];
  for (const [name, set] of faults) {
    set();
    try {
      const answers = await Promise.all([
        get('/premium'),
        get('/auto', `L402 ${mac}`),
        http1(s.origin + '/_l402/page/status', { headers: { authorization: `L402 ${mac}` } }).then((r) => ({ status: r.status, headers: r.headers, raw: r.body })),
      ]);
      for (const [i, r] of answers.entries()) {
        assert.equal(r.status, 503, `${name} #${i}: ${r.raw}`);
        assert.ok(Number(r.headers['retry-after']) > 0, `${name} #${i}: Retry-After`);
        assert.ok(!/lnbcrt/.test(r.raw), `${name} #${i}: no invoice`);
      }
    } finally {
      peer.resetFaults();
    }
    assert.equal(s.upstream.hits, 0, `${name}: nothing reached the upstream`);
  }
  const again = await get('/premium');
  assert.equal(again.status, 402, 'challenges again');
  const paid = await get('/auto', `L402 ${mac}`);
  assert.equal(paid.status, 200, paid.raw);
  assert.equal((await get('/auto', `L402 ${mac}`)).status, 401);
  assert.equal(s.upstream.hits, 1);
});

// The Cashu rail in-process against the mint peer (real BDHKE and DLEQ): the mint's answers are checked too.
type T = { after: (fn: () => unknown) => void };

async function cashuEnv(t: T, keysetVersion: 0 | 1 = 1) {
  const dir = mkdtempSync(join(tmpdir(), 'redteam-s13c-cashu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const operator = DevWallet.open(join(dir, 'ln-operator'));
  t.after(() => operator.close());
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), payees: [operator], feeReserve: () => 2, feePaid: 1, keysetVersion });
  t.after(() => mint.close());
  // A fee reserve of 10 sat: room for a quote 5 sat above the invoice to fit what the proofs hold.
  const rail = async (sub: string): Promise<CashuRail> => {
    const cfg = cashuConfigSchema.parse({ mints: [mint.url], redeem: { min_balance_sat: 1, min_fee_reserve_sat: 10, fee_reserve_percent: 0, melt_timeout_ms: 2000 } });
    const r = await createCashuRail(cfg, { store: new MemoryStore(), dataDir: join(dir, sub), log: createLogger('silent'), lightning: operator });
    t.after(() => r.close());
    return r;
  };
  const token = async (amount: number): Promise<string> => {
    const { wallet, proofs } = await mint.fundedWallet(amount + 16);
    const { send } = await wallet.ops.send(amount, proofs).run();
    return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  };
  return { mint, rail, token };
}

test('Cashu: a swap answered with one signature fewer or more, a doubled amount, a DLEQ that fails or another C_: 503, never a pass; the outputs are restored from the seed once and the retry passes once', async (t) => {
  const { mint, rail, token } = await cashuEnv(t);
  const r = await rail('gate');
  assert.equal((await r.accept(await token(1), 1000, { routeId: 'warm' })).ok, true);
  let expected = 1;
  for (const how of ['drop-one', 'extra', 'amounts', 'bad-dleq', 'bad-C'] as const) {
    const tok = await token(7);
    mint.knobs.tamperSwapAnswer = how;
    const first = await r.accept(tok, 7000, { routeId: 'x' });
    assert.deepEqual([first.ok, (first as { status?: number }).status], [false, 503], `${how}: ${JSON.stringify(first)}`);
    const waiting = await r.accept(tok, 7000, { routeId: 'x' });
    assert.equal(waiting.ok, false, `${how}: not before recovery`);
    assert.equal(await r.recoverNow(undefined, 0), 1, how);
    expected += 7;
    assert.equal(r.balances().reduce((a, b) => a + b.amount, 0), expected, `${how}: the swap's real outputs, restored once`);
    assert.equal((await r.accept(tok, 7000, { routeId: 'x' })).ok, true, `${how}: the payer's retry passes`);
    assert.equal((await r.accept(tok, 7000, { routeId: 'x' })).ok, false, `${how}: once`);
  }
});

test('Cashu redemption: a melt quote for more than the invoice, or for another invoice, is never melted; the proofs stay; an honest quote then melts them', async (t) => {
  const { mint, rail, token } = await cashuEnv(t);
  const r = await rail('gate');
  assert.equal((await r.accept(await token(20), 20_000, { routeId: 'x' })).ok, true);
  const melts = () => mint.knobs.requests.get('/v1/melt/bolt11') ?? 0;
  for (const how of ['amount', 'request'] as const) {
    mint.knobs.tamperMeltQuote = how;
    try {
      const out = await r.redeemNow();
      assert.ok(out.every((m) => m.state !== 'paid'), `${how}: ${JSON.stringify(out)}`);
    } finally {
      mint.knobs.tamperMeltQuote = undefined;
    }
    assert.equal(melts(), 0, `${how}: no melt was sent`);
    assert.equal(r.balances().find((b) => b.state === 'unspent')?.amount, 20, `${how}: the proofs stay unspent`);
  }
  const [m] = await r.redeemNow();
  assert.equal(m?.state, 'paid', JSON.stringify(m));
});

test('Cashu: a mint that changes the input fee of a keyset with a legacy id (the keysets answer differently between calls): a 503 to retry, never a 400 blaming the token; the retry pays with the new fee, also after a restart', async (t) => {
  const { mint, rail, token } = await cashuEnv(t, 0);
  const r = await rail('gate');
  assert.equal((await r.accept(await token(1), 1000, { routeId: 'warm' })).ok, true);
  mint.setInputFee(1000); // 1 sat per input proof
  await sleep(1100); // keysets are read again at most once a second per mint
  const tok = await token(7); // 4 + 2 + 1: 3 sat of fees
  const first = await r.accept(tok, 4000, { routeId: 'x' });
  assert.deepEqual([first.ok, (first as { status?: number }).status], [false, 503], JSON.stringify(first));
  const retry = await r.accept(tok, 4000, { routeId: 'x' });
  assert.deepEqual(retry, { ok: true, amountMsat: 4000, mint: mint.url, proofs: 3 }, JSON.stringify(retry));
  await r.close();
  // The fee the gate learnt is the one it keeps: a restart reads it from the wallet database.
  const again = await rail('gate');
  assert.deepEqual(await again.accept(await token(7), 4000, { routeId: 'x' }), { ok: true, amountMsat: 4000, mint: mint.url, proofs: 3 });
});

test('NWC: an impostor on the relay answering every request first (its own invoice, "settled" lookups) is ignored: the 402 carries the wallet\'s invoice, auto-detect stays pending until the real payment, which passes once', { skip, timeout: 30_000 }, async () => {
  current = backends.nwc;
  s.upstream.reset();
  nwc.faults.impostorReplies = true;
  nwc.faults.delayMs = 300;
  try {
    const first = await get('/auto');
    assert.equal(first.status, 402, first.raw);
    const invoice = String(first.body!.invoice);
    const mac = String(first.body!.macaroon);
    const pending = await get('/auto', `L402 ${mac}`);
    assert.equal(pending.status, 402, pending.raw);
    assert.equal(pending.body!.reason, 'payment_pending');
    // The wallet's own invoice (the impostor's would not be the wallet's to settle).
    nwc.settle(invoice);
    const paid = await get('/auto', `L402 ${mac}`);
    assert.equal(paid.status, 200, paid.raw);
    assert.equal((await get('/auto', `L402 ${mac}`)).status, 401);
    assert.equal(s.upstream.hits, 1);
  } finally {
    nwc.faults.impostorReplies = false;
    nwc.faults.delayMs = 0;
  }
});
