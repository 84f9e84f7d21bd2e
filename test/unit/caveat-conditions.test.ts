// Caveat conditions l402d does not know (skipped, as the L402 macaroon spec says, or refused in strict mode),
// spellings that look like ours (always refused), and the spec's `<service>_capabilities` satisfier: a route
// sells a capability set, a holder's appended sets only narrow it, and a request needing a capability the
// credential does not grant is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkCaveats, mintCaveats, type CaveatContext } from '../../src/protocol/caveats.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { requiredCapabilities } from '../../src/policy/capabilities.js';
import { decide, type DecideDeps } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';

const hash = Buffer.alloc(32, 7);
const ctx: CaveatContext = { service: 'l402', routeId: '/api/', path: '/api/x', method: 'GET', now: 1000, paymentHash: hash };
const minted = mintCaveats({ service: 'l402', routeId: '/api/', capabilities: ['read', 'write'] });

test('the capability set a route sells is minted as the spec\'s <service>_capabilities caveat', () => {
  assert.deepEqual(minted, ['services=l402:0', 'route=/api/', 'l402_capabilities=read,write']);
  const v = checkCaveats(minted, ctx, minted.length);
  assert.ok(v.ok);
  assert.deepEqual(v.capabilities, ['read', 'write']);
  assert.deepEqual(v.sold.capabilities, ['read', 'write']);
});

test('appended capability sets only narrow: intersection with what was sold, never more', () => {
  const check = (extra: string[], need: string[] = []) => checkCaveats([...minted, ...extra], { ...ctx, requiredCapabilities: need }, minted.length);
  assert.deepEqual((check(['l402_capabilities=read']) as { capabilities: string[] }).capabilities, ['read']);
  // Asking for more than was sold grants nothing extra; two appended sets intersect.
  assert.deepEqual((check(['l402_capabilities=read,write,admin']) as { capabilities: string[] }).capabilities, ['read', 'write']);
  assert.deepEqual((check(['l402_capabilities=read', 'l402_capabilities=write,read,admin']) as { capabilities: string[] }).capabilities, ['read']);
  assert.deepEqual((check(['l402_capabilities=']) as { capabilities: string[] }).capabilities, []);
  assert.deepEqual((check(['l402_capabilities=admin']) as { capabilities: string[] }).capabilities, []);
  // A request needing a capability: granted passes, narrowed away or never sold is refused.
  assert.equal(check([], ['write']).ok, true);
  assert.deepEqual(check(['l402_capabilities=read'], ['write']), { ok: false, reason: 'missing_capability' });
  assert.deepEqual(check(['l402_capabilities=read,admin'], ['admin']), { ok: false, reason: 'missing_capability' });
  assert.deepEqual(check(['l402_capabilities=read , write'], ['write']).ok, true);
  // Malformed lists are refused, not read as something else.
  for (const bad of ['l402_capabilities=read;write', 'l402_capabilities=,', 'l402_capabilities=read,,write', 'l402_capabilities=re ad']) {
    assert.deepEqual(check([bad]), { ok: false, reason: 'malformed_caveat' }, bad);
  }
});

test('a credential minted without a capability set grants none: a holder cannot append one into existence', () => {
  const plain = mintCaveats({ service: 'l402', routeId: '/api/' });
  const v = checkCaveats([...plain, 'l402_capabilities=read,write,admin'], { ...ctx, requiredCapabilities: ['read'] }, plain.length);
  assert.deepEqual(v, { ok: false, reason: 'missing_capability' });
  const free = checkCaveats([...plain, 'l402_capabilities=read'], ctx, plain.length);
  assert.ok(free.ok && free.capabilities === undefined, 'nothing granted, nothing reported');
});

test('unknown conditions a holder appends are skipped by default, refused in strict mode, and never skipped in the minted prefix', () => {
  const base = mintCaveats({ service: 'l402', routeId: '/api/', path: '/api/x', methods: ['GET'] });
  const unknown = ['tier=gold', 'route_x=/other', 'routex=/other', 'time-before 2030-01-01T00:00:00Z', 'other_valid_until=1', 'other_capabilities=admin', 'x=', '', 'loop_out_monthly_volume_sats=1', 'Ŗoute=/other'];
  for (const u of unknown) {
    const skipped = checkCaveats([...base, u], ctx, base.length);
    assert.equal(skipped.ok, true, `skip: ${JSON.stringify(u)}`);
    assert.deepEqual(checkCaveats([...base, u], { ...ctx, unknownCaveats: 'reject' }, base.length), { ok: false, reason: 'unknown_caveat' }, `reject: ${JSON.stringify(u)}`);
    // In the minted prefix l402d wrote it: this version cannot check it, so it fails closed.
    assert.deepEqual(checkCaveats([...base, u], ctx, base.length + 1), { ok: false, reason: 'unknown_caveat' }, `minted: ${JSON.stringify(u)}`);
  }
  // A skipped condition never grants anything: the known ones around it still narrow.
  assert.deepEqual(checkCaveats([...base, 'tier=gold', 'method=POST'], ctx, base.length), { ok: false, reason: 'wrong_method' });
  assert.deepEqual(checkCaveats([...base, 'tier=gold'], { ...ctx, path: '/api/y' }, base.length), { ok: false, reason: 'wrong_path' });
});

test('spellings of our own conditions (case, whitespace, - for _, singular/plural, no "=") are malformed and refused in both modes', () => {
  const base = mintCaveats({ service: 'l402', routeId: '/api/', path: '/api/x', methods: ['GET'] });
  const lookalikes = [
    'Route=/other', 'ROUTE=/other', ' route=/other', 'route =/other', 'route\t=/other', 'ro ute=/other', 'routes=/other',
    'Path=/other', 'path-sha256=00', 'PATH_SHA256=00', 'pathsha256=00', 'Method=POST', 'methods=POST', 'Uses=1', 'use=1',
    'Services=other:0', 'service=other:0', 'Preimage=00', 'L402_valid_until=1', 'l402-valid-until=1', 'l402 valid until=1',
    'l402_capability=read', 'L402_Capabilities=read', 'route /other', 'route:/other', 'uses', '=value', '=',
    '\u0000route=/other', 'ro\u200bute=/other', '\ufeffroute=/other', '\uff32\uff4f\uff55\uff54\uff45=/other', 'path\u00ad=/other',
  ];
  for (const l of lookalikes) {
    for (const mode of ['skip', 'reject'] as const) {
      assert.deepEqual(checkCaveats([...base, l], { ...ctx, unknownCaveats: mode }, base.length), { ok: false, reason: 'malformed_caveat' }, `${mode}: ${JSON.stringify(l)}`);
    }
  }
});

test('capability rules: which requests need which capability; config keeps rules to the capabilities sold', () => {
  const cfg = parseConfig(
    `lightning: { type: dev }\nroutes:\n  - match: /api/\n    access: indefinite\n    amount_msat: 1000\n    capabilities: [read, write, admin]\n    capability_rules:\n      - { capability: read, methods: [get, HEAD] }\n      - { capability: write, methods: [POST, PUT, DELETE] }\n      - { capability: admin, path_prefix: /api/admin/ }\n`,
    { env: {} },
  );
  const r = cfg.routes[0]!;
  assert.deepEqual(requiredCapabilities(r, '/api/x', 'GET'), ['read']);
  assert.deepEqual(requiredCapabilities(r, '/api/x', 'POST'), ['write']);
  assert.deepEqual(requiredCapabilities(r, '/api/x', 'PATCH'), []);
  assert.deepEqual(requiredCapabilities(r, '/api/admin/users', 'POST'), ['write', 'admin']);
  // Case-insensitive prefix: an upstream that routes caselessly cannot be reached around the rule.
  assert.deepEqual(requiredCapabilities(r, '/api/ADMIN/users', 'GET'), ['read', 'admin']);
  assert.throws(() => parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1, capabilities: [read], capability_rules: [{ capability: write }] }\n`, { env: {} }), (e: Error) => e instanceof ConfigError && /routes\[0\]\.capability_rules\[0\]\.capability: not one of this route's capabilities/.test(e.message));
  assert.throws(() => parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1, capability_rules: [{ capability: write }] }\n`, { env: {} }), /capability_rules\[0\]\.capability: needs capabilities/);
  assert.throws(() => parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1, capabilities: ["re ad"] }\n`, { env: {} }), /routes\[0\]\.capabilities\[0\]/);
  assert.throws(() => parseConfig(`lightning: { type: dev }\nl402: { unknown_caveats: ignore }\nroutes:\n  - { match: /a, amount_msat: 1 }\n`, { env: {} }), /l402\.unknown_caveats/);
  assert.equal(parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1 }\n`, { env: {} }).unknownCaveats, 'skip');
});

test('decide(): capabilities end to end, and the unknown-caveat mode', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-caps-'));
  const wallet = DevWallet.open(dir);
  try {
    const cfg = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /api/, amount_msat: 1000, access: indefinite, capabilities: [read, write], capability_rules: [{ capability: write, methods: [POST] }] }\n`, { env: {} });
    const key = randomBytes(32);
    const deps = (over: Partial<DecideDeps> = {}): DecideDeps => ({ routes: new RouteTable(cfg.routes), service: 'l402', rootKeys: [key], store: new MemoryStore(), storeTimeoutMs: 500, ...over });
    const c = await createChallenge(cfg.routes[0]!, { path: '/api/x', method: 'GET', amountMsat: 1000 }, { backend: wallet, rootKey: key, service: 'l402', location: 'l402', memo: 't', invoiceExpirySecs: 600, backendTimeoutMs: 2000 });
    const pre = wallet.pay(c.invoice).toString('hex');
    const auth = (...extra: string[]) => `L402 ${encodeMacaroonBase64(extra.reduce((m, x) => attenuate(m, x), decodeMacaroonBase64(c.macaroon)))}:${pre}`;
    const run = async (a: string, method = 'GET', over: Partial<DecideDeps> = {}) => decide({ path: '/api/x', method, credentials: { authorization: a } }, deps(over));
    const full = await run(auth(), 'POST');
    assert.deepEqual([full.outcome, (full as { capabilities?: string[] }).capabilities], ['allow', ['read', 'write']]);
    const reader = await run(auth('l402_capabilities=read'));
    assert.deepEqual([reader.outcome, (reader as { capabilities?: string[] }).capabilities], ['allow', ['read']]);
    const denied = await run(auth('l402_capabilities=read'), 'POST');
    assert.deepEqual([denied.outcome, denied.reason], ['invalid', 'missing_capability']);
    const widened = await run(auth('l402_capabilities=read', 'l402_capabilities=read,write'), 'POST');
    assert.deepEqual([widened.outcome, widened.reason], ['invalid', 'missing_capability']);
    // An unknown appended condition: skipped by default (the spec), refused when configured strict.
    assert.equal((await run(auth('tier=gold'))).outcome, 'allow');
    const strict = await run(auth('tier=gold'), 'GET', { unknownCaveats: 'reject' });
    assert.deepEqual([strict.outcome, strict.reason], ['invalid', 'unknown_caveat']);
    const lookalike = await run(auth('Route=/api/'));
    assert.deepEqual([lookalike.outcome, lookalike.reason], ['invalid', 'malformed_caveat']);
  } finally {
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
