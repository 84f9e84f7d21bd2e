// The per-gate memory of verified signatures (policy/verified-macaroons.ts) only saves recomputing an HMAC
// chain: everything that depends on the request or the clock is still decided every time, a macaroon that
// failed is never remembered, and the memory is bounded by bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { checkInput, VerifiedMacaroons, type AcceptedVerdict } from '../../src/policy/verified-macaroons.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';

const cfg = parseConfig(
  `lightning: { type: dev }\nroutes:
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }
  - { match: /premium, amount_msat: 1000 }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
let dir: string;
let wallet: DevWallet;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'l402-verified-'));
  wallet = DevWallet.open(dir);
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

const route = (m: string): RouteConfig => cfg.routes.find((r) => r.match === m)!;
const req = (path: string, authorization?: string, method = 'GET'): GateRequest => ({ path, method, credentials: { authorization } });
async function buy(match: string, path: string, now?: () => number) {
  const c = await createChallenge(route(match), { path, method: 'GET', amountMsat: route(match).amountMsat }, {
    backend: wallet, rootKey: MASTER, service: 'l402', location: 'l402', memo: 'test', invoiceExpirySecs: 600, backendTimeoutMs: 2000, now,
  });
  return { macaroon: c.macaroon, preimage: wallet.pay(c.invoice).toString('hex') };
}

test('a remembered signature still gets every per-request check: expiry, route, method, preimage', async () => {
  let clock = Math.floor(Date.now() / 1000);
  const keys = [MASTER];
  const verified = new VerifiedMacaroons(keys);
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: keys, store: new MemoryStore(), storeTimeoutMs: 500, verified, now: () => clock };
  const { macaroon, preimage } = await buy('/timed/', '/timed/a', () => clock);
  const auth = `L402 ${macaroon}:${preimage}`;
  assert.equal((await decide(req('/timed/a', auth), deps)).outcome, 'allow');
  assert.equal(verified.size(), 1);
  assert.equal((await decide(req('/timed/b', auth), deps)).outcome, 'allow');
  assert.equal((await decide(req('/premium', auth), deps)).reason, 'wrong_route');
  assert.equal((await decide(req('/timed/a', `L402 ${macaroon}:${'00'.repeat(32)}`), deps)).reason, 'wrong_preimage');
  // Past its minted expiry: the invoice's (a minute, the least one lives) plus macaroon_timeout (60 s).
  clock += 121;
  assert.equal((await decide(req('/timed/a', auth), deps)).reason, 'expired');
  assert.equal(verified.size(), 1);
});

test('a macaroon that fails its signature is never remembered, and a forgery of a remembered one is not served from memory', async () => {
  const keys = [MASTER];
  const verified = new VerifiedMacaroons(keys);
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: keys, store: new MemoryStore(), storeTimeoutMs: 500, verified };
  const { macaroon, preimage } = await buy('/timed/', '/timed/a');
  assert.equal((await decide(req('/timed/a', `L402 ${macaroon}:${preimage}`), deps)).outcome, 'allow');
  // Same identifier and caveats, another signature: other bytes, so checked afresh, and refused.
  const mac = decodeMacaroonBase64(macaroon);
  const forged = encodeMacaroonBase64({ ...mac, signature: Buffer.alloc(32, 7) });
  for (let i = 0; i < 3; i++) assert.equal((await decide(req('/timed/a', `L402 ${forged}:${preimage}`), deps)).reason, 'bad_signature');
  assert.equal(verified.size(), 1);
  // Under other master keys the memory filled under ours is not consulted.
  const other: DecideDeps = { ...deps, rootKeys: [randomBytes(32)] };
  assert.equal((await decide(req('/timed/a', `L402 ${macaroon}:${preimage}`), other)).reason, 'bad_signature');
});

test('the memory is bounded by bytes, oldest first', () => {
  const verified = new VerifiedMacaroons([MASTER], 64 * 1024);
  const id = decodeIdentifier(Buffer.concat([Buffer.alloc(2), randomBytes(64)]))!;
  const mac = { location: 'l402', identifier: Buffer.alloc(66), caveats: [], signature: Buffer.alloc(32) };
  const first = randomBytes(2000);
  verified.add(first, { mac, id });
  for (let i = 0; i < 1000; i++) verified.add(randomBytes(2000), { mac, id });
  assert.ok(verified.bytes() <= 64 * 1024, `holds ${verified.bytes()} bytes`);
  assert.ok(verified.size() > 0 && verified.size() < 1000);
  assert.equal(verified.get(first), undefined);
  verified.add(randomBytes(100_000), { mac, id });
  assert.ok(verified.bytes() <= 64 * 1024);
});

test('a credential sold for one request is not remembered', async () => {
  const keys = [MASTER];
  const verified = new VerifiedMacaroons(keys);
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: keys, store: new MemoryStore(), storeTimeoutMs: 500, verified };
  const { macaroon, preimage } = await buy('/premium', '/premium');
  assert.equal((await decide(req('/premium', `L402 ${macaroon}:${preimage}`), deps)).outcome, 'allow');
  assert.equal(verified.size(), 0);
});

test('a kept caveat verdict answers only the same input, and only before the earliest expiry it saw', async () => {
  let clock = Math.floor(Date.now() / 1000);
  const keys = [MASTER];
  const verified = new VerifiedMacaroons(keys);
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: keys, store: new MemoryStore(), storeTimeoutMs: 500, verified, now: () => clock };
  const { macaroon, preimage } = await buy('/timed/', '/timed/a', () => clock);
  const auth = `L402 ${macaroon}:${preimage}`;
  // A holder's narrower copy: a shorter expiry and GET only (other bytes: its own entry and verdicts).
  const narrowed = encodeMacaroonBase64(attenuate(attenuate(decodeMacaroonBase64(macaroon), `l402_valid_until=${clock + 5}`), 'method=GET'));
  const narrow = `L402 ${narrowed}:${preimage}`;
  for (let i = 0; i < 3; i++) {
    assert.equal((await decide(req('/timed/a', auth), deps)).outcome, 'allow');
    assert.equal((await decide(req('/timed/a', narrow), deps)).outcome, 'allow');
  }
  // The same credentials, other inputs: checked afresh, not answered from the kept GET verdict.
  assert.equal((await decide(req('/timed/a', narrow, 'POST'), deps)).reason, 'wrong_method');
  assert.equal((await decide(req('/timed/a', auth, 'POST'), deps)).outcome, 'allow');
  assert.equal((await decide(req('/premium', auth), deps)).reason, 'wrong_route');
  // The remembered preimage never stands in for another one.
  assert.equal((await decide(req('/timed/a', `L402 ${macaroon}:${'00'.repeat(32)}`), deps)).reason, 'wrong_preimage');
  assert.equal((await decide(req('/timed/a', `L402 ${narrowed}:${'11'.repeat(32)}`), deps)).reason, 'wrong_preimage');
  // Past the narrowed copy's own expiry its kept verdict is dropped; the original's still holds.
  clock += 5;
  assert.equal((await decide(req('/timed/a', narrow), deps)).reason, 'expired');
  assert.equal((await decide(req('/timed/a', auth), deps)).outcome, 'allow');
  // Past the original's minted expiry (its invoice's minute plus macaroon_timeout).
  clock += 116;
  assert.equal((await decide(req('/timed/a', auth), deps)).reason, 'expired');
});

test('kept verdicts are bounded per credential and counted in the bytes', () => {
  const verified = new VerifiedMacaroons([MASTER], 64 * 1024);
  const id = decodeIdentifier(Buffer.concat([Buffer.alloc(2), randomBytes(64)]))!;
  const mac = { location: 'l402', identifier: Buffer.alloc(66), caveats: [], signature: Buffer.alloc(32) };
  const raw = randomBytes(500);
  const e = verified.add(raw, { mac, id })!;
  const before = verified.bytes();
  const v: AcceptedVerdict = { ok: true, sold: { routeId: '/timed/', pathBound: false, singleUse: false }, singleUse: false, validUntil: 100 };
  const input = (i: number) => checkInput('l402', 'skip', '/timed/', 'GET', [], `/timed/${i}`);
  for (let i = 0; i < 200; i++) verified.keepVerdict(e, input(i), v);
  assert.ok(verified.bytes() > before, 'verdicts count');
  assert.ok(verified.bytes() <= 64 * 1024);
  assert.equal(verified.verdict(e, input(0), 50), undefined, 'the oldest went first');
  assert.deepEqual(verified.verdict(e, input(199), 50), v);
  assert.equal(verified.verdict(e, input(199), 100), undefined, 'not at or past its expiry');
  assert.equal(verified.verdict(e, input(198), 99)?.ok, true);
  // An input differing only in its path, or a path that looks like another field, never shares a key.
  assert.notEqual(checkInput('l402', 'skip', '/a', 'GET', [], '/x'), checkInput('l402', 'skip', '/a', 'GET', [], '\0/x'));
  assert.notEqual(checkInput('l402', 'skip', '/a', 'GET', ['c'], '/x'), checkInput('l402', 'skip', '/a', 'GET', [], 'c\0/x'));
});
