// The Lightning `session` intent codec (draft-lightning-session-00): the challenge's request fields, the four
// actions' parse and verification (malformed, wrong id, other route/path/method, expired, wrong preimage, a
// charge challenge presented as a session one), the return invoice's checks against real dev-wallet invoices,
// the receipt and close body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildChallenge } from '../../src/protocol/mpp.js';
import {
  buildSessionChallenge,
  checkReturnInvoice,
  closeBody,
  parseSessionCredential,
  refundSatsOf,
  sessionReceipt,
  sessionTag,
  sessionTagMatches,
  topUpBody,
  verifySessionCredential,
} from '../../src/protocol/mpp-session.js';
import { decodeBolt11 } from '../../src/rails/lightning/codecs/bolt11.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { LATE_PROOF_GRACE_SECS } from '../../src/protocol/late-proof.js';

const master = randomBytes(32);
const scope = { routeId: '/api', method: 'GET', path: '/api/x' };
const NOW = 1_900_000_000;
const enc = (o: unknown) => `Payment ${Buffer.from(JSON.stringify(o)).toString('base64url')}`;
const deposit = () => {
  const preimage = randomBytes(32);
  return { preimage: preimage.toString('hex'), hash: createHash('sha256').update(preimage).digest('hex') };
};
const offer = (hash: string) => ({ invoice: 'lnbcrt1000n1xyz', paymentHash: hash, unitMsat: 2000, depositMsat: 100_000, expiresAt: NOW + 600, idleTimeoutSecs: 300 });
const verify = (auth: string, o: Partial<{ scope: typeof scope; now: number; realm: string; masters: Buffer[] }> = {}) =>
  verifySessionCredential(auth, { masters: o.masters ?? [master], realm: o.realm ?? 'svc', scope: o.scope ?? scope, now: o.now ?? NOW });

test('session challenge: intent "session", the spec\'s request fields as JCS, an id only this route, method and path verify', () => {
  const d = deposit();
  const c = buildSessionChallenge(master, 'svc', scope, offer(d.hash));
  assert.equal(c.intent, 'session');
  assert.equal(Buffer.from(c.request, 'base64url').toString(), `{"amount":"2","currency":"sat","depositAmount":"100","depositInvoice":"lnbcrt1000n1xyz","idleTimeout":"300","paymentHash":"${d.hash}"}`);
  assert.ok(!c.request.includes('='));
  assert.throws(() => buildSessionChallenge(master, 'svc', scope, { ...offer(d.hash), depositMsat: 1000 }), /at least one unit/);
  assert.throws(() => buildSessionChallenge(master, 'svc', scope, { ...offer(d.hash), unitMsat: 1500 }), /whole satoshis/);
  const open = enc({ challenge: c, payload: { action: 'open', preimage: d.preimage, returnInvoice: 'lnbcrt1xyz', extra: 1 } });
  const r = verify(open);
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.v, { action: 'open', sessionId: d.hash, returnInvoice: 'lnbcrt1xyz', challengeId: c.id, depositHash: d.hash, depositInvoice: 'lnbcrt1000n1xyz', depositMsat: 100_000, unitMsat: 2000, expiresAt: NOW + 600 });
  // Padding is accepted on input.
  const body = open.slice('Payment '.length);
  assert.ok(verify(`Payment ${body}${'='.repeat((4 - (body.length % 4)) % 4)}`).ok);
  for (const other of [{ ...scope, routeId: '/other' }, { ...scope, path: '/api/y' }, { ...scope, method: 'POST' }]) {
    assert.deepEqual(verify(open, { scope: other }), { ok: false, failure: 'unknown_challenge', detail: 'challenge id does not match this request' });
  }
  assert.equal((verify(open, { masters: [randomBytes(32)] }) as { failure: string }).failure, 'unknown_challenge');
  assert.equal((verify(open, { realm: 'elsewhere' }) as { failure: string }).failure, 'unknown_challenge');
  assert.ok(verify(open, { masters: [randomBytes(32), master] }).ok, 'a rotated-out key still verifies');
  // A deposit proven after its challenge expired was paid before (a node refuses an expired invoice): honoured for
  // the grace period only (late-proof.ts).
  assert.ok(verify(open, { now: NOW + 600 }).ok, 'a deposit proven in the second its challenge expires');
  assert.ok(verify(open, { now: NOW + 600 + LATE_PROOF_GRACE_SECS - 1 }).ok);
  assert.equal((verify(open, { now: NOW + 600 + LATE_PROOF_GRACE_SECS }) as { failure: string }).failure, 'challenge_expired');
});

test('session open/topUp: a forged id, a changed request, a wrong preimage, a charge challenge: all refused', () => {
  const d = deposit();
  const c = buildSessionChallenge(master, 'svc', scope, offer(d.hash));
  const open = (ch: object, pre = d.preimage) => enc({ challenge: ch, payload: { action: 'open', preimage: pre, returnInvoice: 'lnbcrt1xyz' } });
  const failure = (a: string) => (verify(a) as { failure?: string }).failure;
  // A bigger deposit in the request: the id no longer matches.
  const richer = Buffer.from(Buffer.from(c.request, 'base64url').toString().replace('"100"', '"100000"')).toString('base64url');
  assert.equal(failure(open({ ...c, request: richer })), 'unknown_challenge');
  assert.equal(failure(open({ ...c, id: c.id.slice(0, -1) + (c.id.endsWith('A') ? 'B' : 'A') })), 'unknown_challenge');
  assert.equal(failure(open({ ...c, expires: '2099-01-01T00:00:00Z' })), 'unknown_challenge');
  assert.equal(failure(open({ ...c, opaque: 'eA' })), 'unknown_challenge');
  assert.equal(failure(open(c, randomBytes(32).toString('hex'))), 'invalid_preimage');
  assert.ok(verify(open(c, d.preimage.toUpperCase())).ok, 'hex preimages in either case');
  // The same invoice sold by the charge intent: its id covers intent "charge", never valid as a session one.
  const charge = buildChallenge(master, 'svc', scope, { invoice: 'lnbcrt1000n1xyz', paymentHash: d.hash, amountMsat: 2000, expiresAt: NOW + 600 });
  assert.equal(failure(open(charge)), 'unknown_challenge');
  assert.equal(failure(open({ ...charge, intent: 'session' })), 'unknown_challenge');
  // topUp: the new invoice's preimage, for an existing session id; never the open deposit's own.
  const t = deposit();
  const tc = buildSessionChallenge(master, 'svc', scope, offer(t.hash));
  const topUp = (ch: object, pre: string, sessionId = d.hash) => enc({ challenge: ch, payload: { action: 'topUp', sessionId, topUpPreimage: pre } });
  const r = verify(topUp(tc, t.preimage));
  assert.ok(r.ok);
  assert.equal(r.v.action, 'topUp');
  assert.equal(r.v.sessionId, d.hash);
  assert.equal(r.ok && r.v.action === 'topUp' ? r.v.depositHash : '', t.hash);
  assert.equal(failure(topUp(tc, d.preimage)), 'invalid_preimage', 'the session preimage does not pay the top-up invoice');
  assert.equal(failure(topUp(c, d.preimage)), 'invalid_preimage', 'the open deposit cannot be replayed as a top-up');
  assert.equal(failure(topUp(tc, t.preimage, 'AB'.repeat(32))), 'malformed');
});

test('session bearer/close: sha256(preimage) must be the session id (another session\'s preimage is refused); the echo names this realm', () => {
  const a = deposit();
  const b = deposit();
  const c = buildSessionChallenge(master, 'svc', scope, offer(a.hash));
  const act = (action: string, sessionId: string, preimage: string, ch: object = c) => enc({ challenge: ch, payload: { action, sessionId, preimage } });
  for (const action of ['bearer', 'close'] as const) {
    assert.deepEqual(verify(act(action, a.hash, a.preimage)), { ok: true, v: { action, sessionId: a.hash } });
    // The optional payer `source` and unknown payload fields are ignored, as the spec requires.
    assert.ok(verify(enc({ challenge: c, source: 'did:key:z6Mk', payload: { action, sessionId: a.hash, preimage: a.preimage, future: [1] } })).ok);
    // Other paths and routes of the session's plan: the echo is not the proof, the preimage is.
    assert.ok(verify(act(action, a.hash, a.preimage), { scope: { ...scope, path: '/api/other' }, now: NOW + 10_000 }).ok);
    assert.equal((verify(act(action, a.hash, b.preimage)) as { failure: string }).failure, 'invalid_preimage');
    assert.equal((verify(act(action, b.hash, a.preimage)) as { failure: string }).failure, 'invalid_preimage');
    assert.equal((verify(act(action, a.hash, a.preimage, { ...c, intent: 'charge' })) as { failure: string }).failure, 'unknown_challenge');
    assert.equal((verify(act(action, a.hash, a.preimage, { ...c, method: 'cashu' })) as { failure: string }).failure, 'unknown_challenge');
    assert.equal((verify(act(action, a.hash, a.preimage), { realm: 'x' }) as { failure: string }).failure, 'unknown_challenge');
  }
});

test('session credentials: every malformed shape is "malformed", never a throw', () => {
  const d = deposit();
  const c = buildSessionChallenge(master, 'svc', scope, offer(d.hash));
  const cases: unknown[] = [
    'Payment',
    'Payment !!!',
    `Payment ${Buffer.from('not json').toString('base64url')}`,
    `Payment ${'A'.repeat(9000)}`,
    'Bearer abc',
  ];
  const objs: unknown[] = [
    [],
    null,
    { challenge: c },
    { payload: { action: 'bearer', sessionId: d.hash, preimage: d.preimage } },
    { challenge: { ...c, id: 5 }, payload: { action: 'bearer', sessionId: d.hash, preimage: d.preimage } },
    { challenge: { ...c, extra: 'x' }, payload: { action: 'bearer', sessionId: d.hash, preimage: d.preimage } },
    { challenge: c, payload: { action: 'Bearer', sessionId: d.hash, preimage: d.preimage } },
    { challenge: c, payload: { action: 'bearer', sessionId: d.hash } },
    { challenge: c, payload: { action: 'bearer', sessionId: d.hash.toUpperCase(), preimage: d.preimage } },
    { challenge: c, payload: { action: 'close', sessionId: d.hash, preimage: d.preimage.slice(2) } },
    { challenge: c, payload: { action: 'open', preimage: d.preimage } },
    { challenge: c, payload: { action: 'open', preimage: d.preimage, returnInvoice: 'l'.repeat(3000) } },
    { challenge: c, payload: { action: 'topUp', sessionId: d.hash, preimage: d.preimage } },
    { challenge: c, payload: [] },
  ];
  for (const a of [...cases, ...objs.map(enc)] as string[]) {
    const p = parseSessionCredential(a);
    assert.equal(p.ok, false, a.slice(0, 80));
    assert.equal((verify(a) as { failure: string }).failure, 'malformed', a.slice(0, 80));
  }
});

test('return invoice: no amount (or 0), the deposit\'s network, not expired; a real BOLT11 decodes into the facts checked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpp-session-'));
  try {
    const w = DevWallet.open(dir);
    const inv = await w.createInvoice({ amountMsat: 100_000, memo: 'deposit', expirySecs: 600 });
    const dep = decodeBolt11(inv.bolt11);
    await w.close();
    const now = Math.floor(Date.now() / 1000);
    const ret = { amountMsat: undefined, network: dep.network, expiresAt: now + 86_400 };
    assert.deepEqual(checkReturnInvoice(ret, dep, now), { ok: true });
    assert.deepEqual(checkReturnInvoice({ ...ret, amountMsat: 0 }, dep, now), { ok: true });
    assert.equal((checkReturnInvoice(dep, dep, now) as { detail: string }).detail, 'return invoice encodes an amount');
    assert.equal((checkReturnInvoice({ ...ret, network: 'bc' }, dep, now) as { detail: string }).detail, 'return invoice is on another network than the deposit');
    assert.equal((checkReturnInvoice({ ...ret, expiresAt: now }, dep, now) as { detail: string }).detail, 'return invoice has expired');
    assert.equal((checkReturnInvoice(undefined, dep, now) as { failure: string }).failure, 'invalid_return_invoice');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('session tag binds id, scope and return invoice; receipt and bodies are the spec\'s, never a preimage', () => {
  const d = deposit();
  const s = { sessionId: d.hash, scopeId: 'plan:pro', returnInvoice: 'lnbcrt1abc' };
  const tag = sessionTag(master, s);
  assert.ok(sessionTagMatches([randomBytes(32), master], s, tag));
  assert.ok(!sessionTagMatches([master], { ...s, returnInvoice: 'lnbcrt1evil' }, tag));
  assert.ok(!sessionTagMatches([master], { ...s, scopeId: 'plan:other' }, tag));
  assert.ok(!sessionTagMatches([master], { ...s, sessionId: deposit().hash }, tag));
  assert.ok(!sessionTagMatches([master], s, tag.slice(1)));
  assert.ok(!sessionTagMatches([randomBytes(32)], s, tag));
  assert.equal(Buffer.from(sessionReceipt(d.hash, 1_773_180_000), 'base64url').toString(), `{"method":"lightning","reference":"${d.hash}","status":"success","timestamp":"2026-03-10T22:00:00Z"}`);
  assert.equal(Buffer.from(sessionReceipt(d.hash, 1_773_180_000, { refundSats: 140, refundStatus: 'succeeded' }), 'base64url').toString(), `{"method":"lightning","reference":"${d.hash}","refundSats":140,"refundStatus":"succeeded","status":"success","timestamp":"2026-03-10T22:00:00Z"}`);
  assert.equal(closeBody(0, 'skipped'), '{"refundSats":0,"refundStatus":"skipped","status":"closed"}');
  assert.equal(topUpBody(), '{"status":"ok"}');
  assert.equal(refundSatsOf(140_999), 140);
  assert.equal(refundSatsOf(999), 0);
  assert.equal(refundSatsOf(-5), 0);
});
