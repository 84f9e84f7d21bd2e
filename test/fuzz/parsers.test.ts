// Deterministic fuzzing of the credential parsers and the decision core, in-process: 100k+ generated inputs
// (mutations of real paid credentials, ngx_l402's V1 credentials, garbage, gRPC metadata, raw macaroon bytes,
// X-Cashu values, paths).
// Oracles: no exception other than the documented ones; every `allow` is confirmed by an independent
// verifier (js `macaroon` library HMAC chain + own caveat checks + SHA-256 preimage), and a single-use
// payment hash is allowed at most once whatever encoding carries it.
// Seed: L402_FUZZ_SEED (default below); a failure message names the seed and the input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type RouteConfig } from '../../src/config/config.js';
import { decide, type DecideDeps, type GateRequest } from '../../src/policy/decide.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { normalizePath, RouteTable } from '../../src/policy/routes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, caveatPredicates, decodeMacaroon, encodeMacaroon, MacaroonFormatError, mintMacaroon, verifySignature, type Macaroon } from '../../src/protocol/macaroon.js';
import { checkNgxL402Caveats, decodeMacaroonV1 } from '../../src/protocol/ngx-l402.js';
import { ngxL402Credential, ngxL402MacaroonV1 } from '../peers/ngx-l402-credentials.js';
import { encodeIdentifier, decodeIdentifier } from '../../src/protocol/identifier.js';
import { parseCredential, MAX_AUTHORIZATION_LENGTH } from '../../src/protocol/l402-header.js';
import { checkCaveats } from '../../src/protocol/caveats.js';
import { decodeBase64Loose } from '../../src/protocol/base64.js';
import { tokenRootKey } from '../../src/protocol/root-key.js';
import { parseCashuCredential } from '../../src/protocol/cashu-credential.js';
import { FUZZ_SEED, Rng } from './rng.js';

const SEED = FUZZ_SEED;


// ---------------------------------------------------------------------------------------------
// The gate under test and a set of really paid credentials
// ---------------------------------------------------------------------------------------------

const SERVICE = 'l402';
const cfg = parseConfig(
  `lightning: { type: dev }\nroutes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 3600 }
  - { match: /forever, amount_msat: 2000, access: indefinite }
  - { match: /getonly, amount_msat: 1000, methods: [GET, HEAD], access: indefinite }
  - { match: "= /exact", amount_msat: 1000, access: timed, macaroon_timeout: 3600 }
  - { match: "~ \\\\.mp4$", amount_msat: 3000 }
`,
  { env: {} },
);
const MASTER = randomBytes(32);
const OLD_MASTER = randomBytes(32);
const STRANGER = randomBytes(32);

interface Paid {
  route: RouteConfig;
  path: string;
  method: string;
  macaroon: Buffer;
  preimage: Buffer;
  hash: string;
}

let dir: string;
let wallet: DevWallet;
const paid: Paid[] = [];
/** Credentials ngx_l402 sold (libmacaroons V1), honoured through `ngx_l402_root_key`. */
const ngxPaid: Paid[] = [];
const NGX_KEY = 'the ROOT_KEY ngx_l402 ran with, fuzz 0000';
/** Every preimage we know, by payment hash: only these invoices were paid. */
const preimageOf = new Map<string, Buffer>();

function route(match: string): RouteConfig {
  return cfg.routes.find((r) => r.match === match)!;
}

/** The config as it was when some credentials were sold: /timed/ was indefinite then (no expiry minted). */
const soldBefore = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: /timed/, amount_msat: 5000, access: indefinite }\n`, { env: {} });
/** A path priced on its own (dynamic price): only credentials minted bound to it open it. */
const PRICED_PATH = '/forever/report';
const price = async (r: RouteConfig, path: string) =>
  path === PRICED_PATH ? { amountMsat: 50_000, source: 'dynamic' as const, pathPriced: true } : { amountMsat: r.amountMsat, source: 'static' as const, pathPriced: false };

async function buy(match: string, path: string, method: string, key: Buffer, r = route(match), pathPriced = false): Promise<Paid> {
  const c = await createChallenge(r, { path, method, amountMsat: r.amountMsat, pathPriced }, {
    backend: wallet, rootKey: key, service: SERVICE, location: SERVICE, memo: 'fuzz', invoiceExpirySecs: 3600, backendTimeoutMs: 5000,
  });
  const preimage = wallet.pay(c.invoice);
  preimageOf.set(c.paymentHash, preimage);
  return { route: r, path, method, macaroon: Buffer.from(c.macaroon, 'base64'), preimage, hash: c.paymentHash };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'l402-fuzz-'));
  wallet = DevWallet.open(dir);
  for (let i = 0; i < 12; i++) paid.push(await buy('/premium', '/premium', i % 3 === 0 ? 'POST' : 'GET', i % 4 === 3 ? OLD_MASTER : MASTER));
  for (let i = 0; i < 4; i++) paid.push(await buy('/timed/', '/timed/a', 'GET', MASTER));
  for (let i = 0; i < 3; i++) paid.push(await buy('/forever', '/forever', 'GET', MASTER));
  paid.push(await buy('/getonly', '/getonly', 'GET', MASTER));
  // Sold while /timed/ was indefinite (no expiry minted), and one bought for the separately priced path.
  for (let i = 0; i < 2; i++) paid.push(await buy('/timed/', '/timed/a', 'GET', MASTER, soldBefore.routes[0]!));
  paid.push(await buy('/forever', PRICED_PATH, 'GET', MASTER, undefined, true));
  paid.push(await buy('= /exact', '/exact', 'GET', MASTER));
  for (let i = 0; i < 3; i++) paid.push(await buy('~ \\.mp4$', '/v/clip.mp4', 'GET', MASTER));
  // Minted with a key the gate does not hold: paid, but never ours.
  paid.push(await buy('/forever', '/forever', 'GET', STRANGER));
  // Sold by ngx_l402 before the move (paid: their preimages are known), and one under a key we do not hold.
  const sellNgx = (key: string, path: string, method: string, opts: { expiresAt?: number; extraCaveats?: string[] } = {}) => {
    const c = ngxL402Credential(key, path, method, opts);
    preimageOf.set(c.paymentHash.toString('hex'), c.preimage);
    ngxPaid.push({ route: oracleRoute(path)!, path, method, macaroon: c.macaroon, preimage: c.preimage, hash: c.paymentHash.toString('hex') });
  };
  const later = Math.floor(Date.now() / 1000) + 3600;
  for (let i = 0; i < 6; i++) sellNgx(NGX_KEY, '/premium', i % 3 === 0 ? 'POST' : 'GET');
  sellNgx(NGX_KEY, '/forever', 'GET');
  sellNgx(NGX_KEY, '/timed/a', 'GET', { expiresAt: later });
  sellNgx(NGX_KEY, '/timed/a', 'GET');
  sellNgx(NGX_KEY, '/v/clip.mp4', 'GET', { expiresAt: later });
  sellNgx(NGX_KEY, '/premium', 'GET', { extraCaveats: ['Tier = gold'] });
  sellNgx(NGX_KEY, '/premium', 'GET', { extraCaveats: ['ExpiresAt = soon'] });
  sellNgx(NGX_KEY, '/premium', 'GET', { extraCaveats: ['RequestPath = /forever'] });
  { // Only a path caveat: ngx_l402 never sold that, and it would open every method.
    const preimage = randomBytes(32);
    const hash = createHash('sha256').update(preimage).digest();
    preimageOf.set(hash.toString('hex'), preimage);
    ngxPaid.push({ route: oracleRoute('/forever')!, path: '/forever', method: 'DELETE', macaroon: ngxL402MacaroonV1(Buffer.from(NGX_KEY), hash, ['RequestPath = /forever']), preimage, hash: hash.toString('hex') });
  }
  sellNgx('a key that is not ngx_l402_root_key 000', '/premium', 'GET');
});
after(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Independent verifier (the oracle): js-macaroon for the HMAC chain, own caveat and route logic
// ---------------------------------------------------------------------------------------------

interface JsMacaroon {
  readonly identifier: Uint8Array;
  verify(rootKey: Uint8Array, check: (cond: string) => string | null): void;
}
const jsMacaroon = createRequire(import.meta.url)('macaroon') as { importMacaroon(b64: string): JsMacaroon };

const TOKEN_KEY_LABEL = Buffer.from('l402-nginx/token-root-key/v2\0', 'utf8');

/** The route nginx would pick for this config (exact, then regex, then longest prefix). */
function oracleRoute(path: string): RouteConfig | undefined {
  if (path === '/exact') return route('= /exact');
  if (/\.mp4$/.test(path)) return route('~ \\.mp4$');
  for (const p of ['/premium', '/timed/', '/forever', '/getonly']) if (path.startsWith(p)) return route(p);
  return undefined;
}

function b64(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) return undefined;
  const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return b.length > 0 ? b : undefined;
}

/** The macaroon and preimage a request carries, read as permissively as any client could mean them. */
function oracleCredential(c: GateRequest['credentials']): { mac: Buffer; pre?: Buffer } | undefined {
  if (c.authorization !== undefined && c.authorization.trim() !== '') {
    const m = /^\s*(l402|lsat)[ \t]+([^]*)$/i.exec(c.authorization);
    if (!m) return undefined;
    const parts = m[2]!.split(':');
    if (parts.length > 2) return undefined;
    const mac = b64(parts[0]!.split(',')[0]!);
    if (!mac) return undefined;
    if (parts.length === 1) return { mac };
    const p = parts[1]!.trim();
    return /^[0-9a-f]{64}$/i.test(p) ? { mac, pre: Buffer.from(p, 'hex') } : undefined;
  }
  const meta = c.token ?? c.macaroon;
  if (meta === undefined || !/^([0-9a-f]{2})+$/i.test(meta.trim())) return undefined;
  return { mac: Buffer.from(meta.trim(), 'hex') };
}

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Why this request must NOT pass, or undefined when it legitimately may. Tracks single-use spends. */
function oracleRefusal(req: GateRequest, spent: Set<string>, now: number): string | undefined {
  if (req.path === undefined) return 'unusable path';
  const r = oracleRoute(req.path);
  if (!r) return 'no route';
  if (r.methods && !r.methods.includes(req.method as never)) return 'method not sold';
  const cred = oracleCredential(req.credentials);
  if (!cred) return 'no readable credential';
  if (/^[0-9a-f]{4}$/i.test(cred.mac.toString('latin1', 0, 4))) return oracleNgxRefusal({ ...req, path: req.path }, r, cred, spent, now);
  let m: JsMacaroon;
  try {
    m = jsMacaroon.importMacaroon(cred.mac.toString('base64'));
  } catch {
    return 'js-macaroon cannot import it';
  }
  const id = Buffer.from(m.identifier);
  if (id.length !== 66 || id.readUInt16BE(0) !== 0) return 'not a v0 identifier';
  const hash = id.subarray(2, 34).toString('hex');
  const tokenId = id.subarray(34);
  // What was sold is read from the caveats the gate minted (their count is the token id's first byte); the
  // rest were appended by a holder and may only narrow.
  const minted = tokenId[0]!;
  let preimage = cred.pre;
  let index = 0;
  let validUntil: number | undefined;
  let singleUse = false;
  let sold = { validUntil: undefined as number | undefined, once: false, pathBound: false, service: false, route: false };
  const check = (cond: string): string | null => {
    const isMinted = index++ < minted;
    const eq = cond.indexOf('=');
    // No "=" at all: not a condition the gate knows (skipped when appended); an empty name: malformed.
    if (eq < 0) return isMinted ? 'malformed' : null;
    if (eq === 0) return 'malformed';
    const k = cond.slice(0, eq).trim();
    const v = cond.slice(eq + 1).trim();
    if (k === 'services') {
      if (isMinted) sold.service = true;
      return v.split(',').some((s) => s.split(':')[0]!.trim() === SERVICE) ? null : 'service';
    }
    if (k === `${SERVICE}_valid_until`) {
      if (!/^\d{1,12}$/.test(v) || !(now < Number(v))) return 'expired';
      validUntil = Math.min(validUntil ?? Infinity, Number(v));
      if (isMinted) sold.validUntil = Math.min(sold.validUntil ?? Infinity, Number(v));
      return null;
    }
    if (k === 'route') {
      if (isMinted) sold.route = true;
      return v === r.id ? null : 'route';
    }
    if (k === 'path') {
      if (isMinted) sold.pathBound = true;
      return v === req.path ? null : 'path';
    }
    if (k === 'path_sha256') {
      if (isMinted) sold.pathBound = true;
      return v === sha256hex(Buffer.from(req.path!)) ? null : 'path';
    }
    if (k === 'method') return v.split(',').map((x) => x.trim().toUpperCase()).includes(req.method) ? null : 'method';
    if (k === 'uses') {
      if (v !== '1') return 'uses';
      singleUse = true;
      if (isMinted) sold.once = true;
      return null;
    }
    if (k === 'preimage') {
      if (!/^[0-9a-f]{64}$/i.test(v) || sha256hex(Buffer.from(v, 'hex')) !== hash) return 'preimage caveat';
      preimage ??= Buffer.from(v, 'hex');
      return null;
    }
    // A condition the gate does not know: the L402 spec says skip it when a holder appended it (it can only
    // fail to narrow); one in the minted prefix is not one this gate can check.
    return isMinted ? 'unknown caveat' : null;
  };
  const verified = [MASTER, OLD_MASTER].some((master) => {
    const key = createHmac('sha256', master).update(TOKEN_KEY_LABEL).update(tokenId).digest();
    index = 0;
    validUntil = undefined;
    singleUse = false;
    sold = { validUntil: undefined, once: false, pathBound: false, service: false, route: false };
    try {
      m.verify(new Uint8Array(key), check);
      return true;
    } catch {
      return false;
    }
  });
  if (!verified) return 'signature or caveats do not verify';
  if (index < minted || !sold.service || !sold.route) return 'minted prefix is not one the gate mints';
  if (!preimage || sha256hex(preimage) !== hash) return 'no matching preimage';
  if (!preimageOf.has(hash)) return 'invoice never paid';
  // A separately priced path is opened only by a credential minted bound to it.
  if (req.path === PRICED_PATH && !sold.pathBound) return 'priced path without a minted path binding';
  // Sold for one request (minted uses=1) or on a per-request route: once, whatever the route's access is now.
  const once = r.access === 'per-request' || sold.once;
  if (r.access === 'timed' && sold.validUntil === undefined && !once) return 'timed route without a minted expiry';
  if (once || singleUse) {
    if (spent.has(hash)) return 'single-use credential already spent';
    spent.add(hash);
    // The spent mark must outlive the credential: no TTL without a minted expiry, else at least until it.
    const ttl = claimTtls.get(`claim:l402:${hash}`);
    if (sold.validUntil === undefined ? ttl !== undefined : ttl === undefined || ttl < sold.validUntil - now) return `spent mark TTL ${ttl} shorter than the minted expiry ${sold.validUntil}`;
  }
  return undefined;
}

/** The TTL each single-use claim was written with (the store under test reports them). */
const claimTtls = new Map<string, number | undefined>();

/** The fields of a libmacaroons V1 macaroon (location, identifier, cid…, signature), or undefined. */
function oracleV1Fields(b: Buffer): { id: Buffer; cids: Buffer[]; sig: Buffer } | undefined {
  const fields: Array<[string, Buffer]> = [];
  for (let i = 0; i < b.length; ) {
    const head = b.toString('latin1', i, i + 4);
    const n = parseInt(head, 16);
    if (!/^[0-9a-f]{4}$/i.test(head) || n < 6 || i + n > b.length || b[i + n - 1] !== 0x0a) return undefined;
    const body = b.subarray(i + 4, i + n - 1);
    const sp = body.indexOf(0x20);
    if (sp < 0) return undefined;
    fields.push([body.toString('latin1', 0, sp), body.subarray(sp + 1)]);
    i += n;
  }
  if (!/^location,identifier,(cid,)*signature$/.test(fields.map((f) => f[0]).join(','))) return undefined;
  return { id: fields[1]![1], cids: fields.slice(2, -1).map((f) => f[1]), sig: fields[fields.length - 1]![1] };
}

/** ngx_l402's credential as the migration promises to honour it: its chain checked by js-macaroon. */
function oracleNgxRefusal(req: GateRequest & { path: string }, r: RouteConfig, cred: { mac: Buffer; pre?: Buffer }, spent: Set<string>, now: number): string | undefined {
  const f = oracleV1Fields(cred.mac);
  if (!f || f.id.length !== 32 || f.sig.length !== 32) return 'not an ngx_l402 macaroon';
  let m: JsMacaroon;
  try {
    m = jsMacaroon.importMacaroon({ v: 2, i64: f.id.toString('base64'), c: f.cids.map((c) => ({ i64: c.toString('base64') })), s64: f.sig.toString('base64') } as never);
  } catch {
    return 'js-macaroon cannot import it';
  }
  let validUntil: number | undefined;
  let pathBound = false;
  let methodBound = false;
  const check = (cond: string): string | null => {
    const c = /^(RequestPath|RequestMethod|ExpiresAt) = (.*)$/s.exec(cond);
    if (!c) return 'unknown caveat';
    if (c[1] === 'RequestPath') {
      pathBound = true;
      return c[2] === req.path ? null : 'path';
    }
    if (c[1] === 'RequestMethod') {
      methodBound = true;
      return c[2] === req.method ? null : 'method';
    }
    if (!/^\d{1,12}$/.test(c[2]!) || now > Number(c[2])) return 'expiry';
    validUntil = Math.min(validUntil ?? Infinity, Number(c[2]));
    return null;
  };
  try {
    m.verify(new Uint8Array(Buffer.from(NGX_KEY)), check);
  } catch {
    return 'signature or caveats do not verify';
  }
  const hash = f.id.toString('hex');
  if (!pathBound || !methodBound) return 'no path or no method caveat';
  if (!cred.pre || sha256hex(cred.pre) !== hash) return 'no matching preimage';
  if (!preimageOf.has(hash)) return 'invoice never paid';
  // A V1 macaroon cannot show which ExpiresAt ngx_l402 minted: a timed route (which needs a minted expiry)
  // spends it once, and its spent mark never expires.
  if (r.access !== 'indefinite') {
    if (spent.has(`ngx:${hash}`)) return 'single-use credential already spent';
    spent.add(`ngx:${hash}`);
    if (claimTtls.get(`preimage:${hash}`) !== undefined) return 'ngx_l402 spent mark with a TTL';
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const SCHEMES = ['L402', 'l402', 'LSAT', 'lsat', 'LsAt', 'l402 ', 'Bearer', 'Basic', 'Cashu', 'L4O2', 'L402L402', '', 'LSAT,', 'macaroon'];
const SEPARATORS = [' ', '  ', '\t', ' \t ', '', '\u00a0', '\n', ' :'];
const ODD = ['\u0000', '\u0001', '\u001f', '\u007f', '\u0080', '\u00ff', '\u00e9', '\u2028', '\ufeff', '\ud83d\ude00', '\ud800', '"', '\\', ',', ':', '=', ';', ' ', '\t', '\r\n', '%', '|'];

function b64Variant(rng: Rng, raw: Buffer): string {
  const std = raw.toString('base64');
  switch (rng.int(7)) {
    case 0:
      return std;
    case 1:
      return raw.toString('base64url');
    case 2:
      return std.replace(/=+$/, '');
    case 3:
      return std + '=';
    case 4: {
      const i = rng.int(std.length);
      return std.slice(0, i) + rng.pick([' ', '\n', '\t', '.', '*']) + std.slice(i);
    }
    case 5:
      return std.replace(/\+/g, '-');
    default:
      return raw.toString('base64url') + '==';
  }
}

function mutateString(rng: Rng, s: string): string {
  if (s.length === 0) return rng.pick(ODD);
  const i = rng.int(s.length);
  switch (rng.int(8)) {
    case 0:
      return s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ (1 << rng.int(7))) + s.slice(i + 1);
    case 1:
      return s.slice(0, i) + s.slice(i + 1);
    case 2:
      return s.slice(0, i) + rng.pick(ODD) + s.slice(i);
    case 3:
      return s.slice(0, i);
    case 4:
      return s + rng.pick(ODD) + s.slice(0, rng.int(40));
    case 5:
      return s.slice(0, i) + s.slice(i, i + rng.int(50)) + s.slice(i);
    case 6:
      return s.toUpperCase();
    default:
      return s.slice(i) + s.slice(0, i);
  }
}

function mutateBytes(rng: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0) return rng.bytes(rng.int(8));
  switch (rng.int(7)) {
    case 0: {
      const n = 1 + rng.int(3);
      for (let k = 0; k < n; k++) {
        const i = rng.int(out.length);
        out[i] = out[i]! ^ (1 << rng.int(8));
      }
      return out;
    }
    case 1:
      return out.subarray(0, rng.int(out.length));
    case 2:
      return Buffer.concat([out, rng.bytes(1 + rng.int(16))]);
    case 3: {
      const i = rng.int(out.length);
      return Buffer.concat([out.subarray(0, i), rng.bytes(1 + rng.int(4)), out.subarray(i)]);
    }
    case 4: {
      // A length byte made huge: the decoder must bound its reads.
      const i = rng.int(out.length);
      out[i] = 0xff;
      return out;
    }
    case 5:
      return Buffer.concat([out.subarray(0, rng.int(out.length)), out]);
    default: {
      const i = rng.int(out.length);
      const j = rng.int(out.length);
      const t = out[i]!;
      out[i] = out[j]!;
      out[j] = t;
      return out;
    }
  }
}

/** Caveat tampering: edits under the old signature (must fail) or honest client attenuation (may pass if it only narrows). */
function tamper(rng: Rng, raw: Buffer, p: Paid): Buffer {
  const m = decodeMacaroon(raw);
  const now = Math.floor(Date.now() / 1000);
  const preds = [
    'path=/premium', 'path=/other', 'method=GET', 'method=POST', 'method=get,post', `route=${p.route.id}`, 'route=/forever',
    `${SERVICE}_valid_until=${now + 60}`, `${SERVICE}_valid_until=${now - 60}`, `${SERVICE}_valid_until=99999999999`,
    `${SERVICE}_valid_until=1e10`, 'services=l402:0', 'services=other:0', 'services=other:0,l402:1', 'other_valid_until=99999999999',
    `preimage=${p.preimage.toString('hex')}`, `preimage=${'00'.repeat(32)}`, 'foo=bar', '=x', 'novalue', 'path =/premium', ' route = /premium ',
  ];
  switch (rng.int(6)) {
    case 0: {
      // Rewrite one caveat, keep the signature.
      if (m.caveats.length === 0) return raw;
      const caveats = m.caveats.map((c) => ({ ...c }));
      caveats[rng.int(caveats.length)] = { id: Buffer.from(rng.pick(preds)) };
      return encodeMacaroon({ ...m, caveats });
    }
    case 1: {
      // Drop one caveat, keep the signature.
      const caveats = m.caveats.filter((_, i) => i !== rng.int(m.caveats.length));
      return encodeMacaroon({ ...m, caveats });
    }
    case 2: {
      // Reorder caveats, keep the signature.
      const caveats = [...m.caveats].reverse();
      return encodeMacaroon({ ...m, caveats });
    }
    case 3: {
      // Swap in another token's identifier, keep the signature.
      const other = decodeMacaroon(rng.pick(paid).macaroon);
      return encodeMacaroon({ ...m, identifier: other.identifier });
    }
    case 4: {
      // Third-party caveat (never accepted).
      return encodeMacaroon({ ...m, caveats: [...m.caveats, { id: Buffer.from('tp'), verificationId: rng.bytes(40), location: 'x' }] });
    }
    default: {
      // Honest client attenuation: a valid chain; passes only when every caveat is satisfied.
      let a: Macaroon = m;
      const n = 1 + rng.int(3);
      for (let k = 0; k < n; k++) a = attenuate(a, rng.pick(preds));
      return encodeMacaroon(a);
    }
  }
}

/** Macaroons the gate never minted but that are well formed. */
function forged(rng: Rng): Buffer {
  const p = rng.pick(paid);
  const id = decodeIdentifier(decodeMacaroon(p.macaroon).identifier)!;
  const preds = [`services=${SERVICE}:0`, `route=${p.route.id}`, `path=${p.path}`];
  switch (rng.int(4)) {
    case 0: // Right identifier, wrong key.
      return encodeMacaroon(mintMacaroon(tokenRootKey(randomBytesFrom(rng), id.tokenId), encodeIdentifier(id.paymentHash, id.tokenId), SERVICE, preds));
    case 1: // The master key used directly (no per-token derivation).
      return encodeMacaroon(mintMacaroon(MASTER, encodeIdentifier(id.paymentHash, id.tokenId), SERVICE, preds));
    case 2: { // Version 1 identifier.
      const ident = encodeIdentifier(id.paymentHash, id.tokenId);
      ident.writeUInt16BE(1, 0);
      return encodeMacaroon(mintMacaroon(tokenRootKey(MASTER, id.tokenId), ident, SERVICE, preds));
    }
    default: // An unpaid invoice hash under the real key: signature fine, preimage unknowable.
      return encodeMacaroon(mintMacaroon(tokenRootKey(MASTER, id.tokenId), encodeIdentifier(randomBytesFrom(rng), id.tokenId), SERVICE, preds));
  }
}

function randomBytesFrom(rng: Rng): Buffer {
  return rng.bytes(32);
}

interface Case {
  kind: string;
  req: GateRequest;
}

const PATHS: Array<[string, string]> = [
  ['/premium', 'GET'], ['/premium', 'POST'], ['/premium/', 'GET'], ['/premium?x=1', 'GET'], ['/%70remium', 'GET'], ['/premium/../premium', 'GET'],
  ['//premium', 'GET'], ['/PREMIUM', 'GET'], ['/timed/a', 'GET'], ['/timed/b', 'POST'], ['/timed/../premium', 'GET'], ['/forever', 'GET'],
  ['/forever', 'DELETE'], ['/getonly', 'GET'], ['/getonly', 'POST'], ['/getonly', 'HEAD'], ['/exact', 'GET'], ['/exact/', 'GET'],
  ['/v/clip.mp4', 'GET'], ['/premium.mp4', 'GET'], ['/other', 'GET'], ['/exact|x', 'GET'], ['/premium%00', 'GET'],
];

function request(rng: Rng, p: Paid | undefined, credentials: GateRequest['credentials']): GateRequest {
  const [uri, method] = p && rng.chance(0.6) ? [p.path, p.method] : rng.pick(PATHS);
  return { path: normalizePath(uri), uri, method, credentials };
}

function authCase(rng: Rng): Case {
  const p = rng.pick(paid);
  const pre = p.preimage.toString('hex');
  const mac = p.macaroon;
  const kind = rng.int(14);
  let auth: string;
  switch (kind) {
    case 0: // The credential as issued.
      auth = `L402 ${mac.toString('base64')}:${pre}`;
      break;
    case 1: // Scheme and separator variants.
      auth = `${rng.pick(SCHEMES)}${rng.pick(SEPARATORS)}${b64Variant(rng, mac)}:${rng.chance(0.5) ? pre : pre.toUpperCase()}${rng.chance(0.2) ? rng.pick(SEPARATORS) : ''}`;
      break;
    case 2: // Character-level mutation of the whole header.
      auth = mutateString(rng, `L402 ${mac.toString('base64')}:${pre}`);
      for (let k = rng.int(3); k > 0; k--) auth = mutateString(rng, auth);
      break;
    case 3: // Byte-level mutation of the macaroon.
      auth = `L402 ${b64Variant(rng, mutateBytes(rng, mac))}:${pre}`;
      break;
    case 4: // Caveat tampering / attenuation.
      auth = `L402 ${b64Variant(rng, tamper(rng, mac, p))}${rng.chance(0.8) ? ':' + pre : ''}`;
      break;
    case 5: { // Mixed-up preimages.
      const other = rng.pick(paid).preimage.toString('hex');
      auth = `L402 ${mac.toString('base64')}:${rng.pick([other, mutateString(rng, pre), pre.slice(1), pre + '0', '', ':' + pre, pre + ':' + pre, '00'.repeat(32)])}`;
      break;
    }
    case 6: { // Several macaroons (discharges), too many, empty ones.
      const list = Array.from({ length: 1 + rng.int(6) }, () => (rng.chance(0.7) ? mac : rng.pick(paid).macaroon).toString('base64'));
      if (rng.chance(0.2)) list.splice(rng.int(list.length), 0, '');
      auth = `L402 ${list.join(rng.pick([',', ', ', ' ,']))}:${pre}`;
      break;
    }
    case 7: { // Sizes around the parser's limit.
      const target = rng.pick([MAX_AUTHORIZATION_LENGTH - 1, MAX_AUTHORIZATION_LENGTH, MAX_AUTHORIZATION_LENGTH + 1, 5460, 5464, 5468, 20_000, 100_000]);
      const base = mac.toString('base64');
      auth = `L402 ${base.repeat(Math.ceil(target / base.length)).slice(0, Math.max(0, target - 70))}:${pre}`;
      break;
    }
    case 8: // Forged macaroons with a real-looking shape.
      auth = `L402 ${forged(rng).toString('base64')}:${pre}`;
      break;
    case 9: // Pure garbage.
      auth = rng.chance(0.5)
        ? Array.from({ length: rng.int(200) }, () => String.fromCharCode(rng.int(0x80))).join('')
        : rng.bytes(rng.int(300)).toString('latin1');
      break;
    case 10: // Macaroon only (auto-detect is off on every route here: must never pass).
      auth = `L402 ${b64Variant(rng, mac)}`;
      break;
    case 11: // Other schemes that look related.
      auth = rng.pick([`Cashu cashuB${mac.toString('base64url')}`, `Bearer ${mac.toString('base64')}`, `Basic ${mac.toString('base64')}`, `L402`, `L402 `, `L402 :${pre}`, `LSAT ${mac.toString('hex')}:${pre}`]);
      break;
    case 12: // Preimage as a client caveat, in the Authorization header.
      auth = `L402 ${encodeMacaroon(attenuate(decodeMacaroon(mac), `preimage=${pre}`)).toString('base64')}`;
      break;
    default: { // Appended caveats that would widen what was sold if they were believed.
      const now = Math.floor(Date.now() / 1000);
      const widen = rng.pick([`${SERVICE}_valid_until=99999999999`, `${SERVICE}_valid_until=${now + 2}`, `path=${PRICED_PATH}`, `path_sha256=${sha256hex(Buffer.from(PRICED_PATH))}`, 'uses=1']);
      const target = rng.pick([[p.path, p.method], [PRICED_PATH, 'GET'], ['/timed/a', 'GET']] as const);
      const m = attenuate(decodeMacaroon(mac), widen);
      return { kind: `authorization/${kind}`, req: { path: normalizePath(target[0]), uri: target[0], method: target[1], credentials: { authorization: `L402 ${encodeMacaroon(m).toString('base64')}:${pre}` } } };
    }
  }
  return { kind: `authorization/${kind}`, req: request(rng, p, { authorization: auth }) };
}

function ngxCase(rng: Rng): Case {
  const p = rng.pick(ngxPaid);
  const pre = p.preimage.toString('hex');
  let auth: string;
  switch (rng.int(6)) {
    case 0: // As ngx_l402 handed it out (URL-safe, padded).
      auth = `L402 ${p.macaroon.toString('base64url')}${'='.repeat((3 - (p.macaroon.length % 3)) % 3)}:${pre}`;
      break;
    case 1:
      auth = `${rng.pick(SCHEMES)}${rng.pick(SEPARATORS)}${b64Variant(rng, p.macaroon)}:${rng.chance(0.5) ? pre : pre.toUpperCase()}`;
      break;
    case 2:
      auth = `L402 ${b64Variant(rng, mutateBytes(rng, p.macaroon))}:${pre}`;
      break;
    case 3:
      auth = mutateString(rng, `L402 ${p.macaroon.toString('base64')}:${pre}`);
      break;
    case 4: // Someone else's preimage, or none (ngx_l402's auto-detect is not carried over).
      auth = `L402 ${p.macaroon.toString('base64')}${rng.chance(0.5) ? '' : ':' + rng.pick(ngxPaid).preimage.toString('hex')}`;
      break;
    default: // The macaroon of one sale with the preimage of another, both ngx_l402's.
      auth = `L402 ${rng.pick(ngxPaid).macaroon.toString('base64')}:${pre}`;
  }
  return { kind: 'ngx_l402', req: request(rng, p, { authorization: auth }) };
}

function grpcCase(rng: Rng): Case {
  const p = rng.pick(paid);
  const withPre = encodeMacaroon(attenuate(decodeMacaroon(p.macaroon), `preimage=${rng.chance(0.8) ? p.preimage.toString('hex') : '11'.repeat(32)}`));
  let hex = (rng.chance(0.7) ? withPre : p.macaroon).toString('hex');
  if (rng.chance(0.5)) hex = rng.chance(0.5) ? mutateString(rng, hex) : mutateBytes(rng, Buffer.from(hex, 'hex')).toString('hex');
  if (rng.chance(0.1)) hex = hex.toUpperCase();
  const credentials = rng.chance(0.5) ? { token: hex } : { macaroon: hex };
  return { kind: 'grpc-metadata', req: request(rng, p, credentials) };
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

const DECIDE_CASES = 70_000;

test(`decide(): ${DECIDE_CASES} mutated credentials, no exception, no unpaid or repeated pass (seed ${SEED})`, async () => {
  const rng = new Rng(SEED);
  const store = new (class extends MemoryStore {
    override claimOnce(k: string, ttl?: number, v?: string) {
      if (!claimTtls.has(k)) claimTtls.set(k, ttl);
      return super.claimOnce(k, ttl, v);
    }
  })();
  const deps: DecideDeps = { routes: new RouteTable(cfg.routes), service: SERVICE, rootKeys: [MASTER, OLD_MASTER], store, storeTimeoutMs: 1000, ngxL402RootKey: Buffer.from(NGX_KEY), price };
  let ngxPasses = 0;
  const spent = new Set<string>();
  const outcomes = new Map<string, number>();
  const violations: string[] = [];
  const started = Date.now();
  for (let i = 0; i < DECIDE_CASES; i++) {
    const c = rng.chance(0.1) ? ngxCase(rng) : rng.chance(0.9) ? authCase(rng) : grpcCase(rng);
    let outcome: string;
    try {
      parseCredential(c.req.credentials); // must not throw on its own either
      const d = await decide(c.req, deps);
      outcome = `${d.outcome}/${d.reason}`;
      const now = Math.floor(Date.now() / 1000);
      if (d.outcome === 'allow') {
        const why = oracleRefusal(c.req, spent, now);
        if (why) violations.push(`#${i} ${c.kind}: allowed but ${why}: ${JSON.stringify(c.req).slice(0, 400)}`);
        if (c.kind === 'ngx_l402') ngxPasses++;
      }
    } catch (e) {
      outcome = 'THREW';
      violations.push(`#${i} ${c.kind}: decide threw ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}: ${JSON.stringify(c.req).slice(0, 300)}`);
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (violations.length >= 20) break;
  }
  const summary = [...outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(' ');
  assert.deepEqual(violations, [], `seed ${SEED}; outcomes: ${summary}`); if (process.env.L402_FUZZ_VERBOSE) console.log(summary);
  // The generator must reach both sides of the gate, or the oracle proves nothing.
  assert.ok((outcomes.get('allow/paid') ?? 0) >= 100, `too few legitimate passes generated: ${summary}`);
  assert.ok((outcomes.get('invalid/already_used') ?? 0) >= 20, `no single-use replays generated: ${summary}`);
  assert.ok(ngxPasses >= 20, `too few ngx_l402 credentials passed (${ngxPasses}): ${summary}`);
  for (const reason of ['bad_signature', 'malformed_credential', 'malformed_macaroon', 'wrong_preimage', 'unknown_caveat', 'wrong_path']) {
    assert.ok((outcomes.get(`invalid/${reason}`) ?? 0) > 0, `never reached invalid/${reason}: ${summary}`);
  }
  assert.ok(Date.now() - started < 50_000, 'bounded');
});

test(`decodeMacaroon(): 20000 mutated and random byte strings throw only MacaroonFormatError (seed ${SEED})`, () => {
  const rng = new Rng(SEED ^ 0x5eed);
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const input = rng.chance(0.85) ? mutateBytes(rng, rng.chance(0.5) ? rng.pick(paid).macaroon : tamperSafe(rng)) : rng.bytes(rng.int(600));
    let m: Macaroon;
    try {
      m = decodeMacaroon(input);
    } catch (e) {
      assert.ok(e instanceof MacaroonFormatError, `#${i}: ${(e as Error).name}: ${(e as Error).message} for ${input.toString('hex')}`);
      continue;
    }
    decoded++;
    // Whatever decodes re-encodes to something that decodes to the same macaroon.
    assert.deepEqual(decodeMacaroon(encodeMacaroon(m)), m, `#${i}: re-encoding changed ${input.toString('hex')}`);
    // And the caveat checker and identifier decoder never throw on what the codec lets through.
    decodeIdentifier(m.identifier);
    checkCaveats(m.caveats.map((c) => c.id.toString('utf8')), { service: SERVICE, routeId: '/premium', path: '/premium', method: 'GET', now: 1, paymentHash: rng.bytes(32) }, rng.int(m.caveats.length + 2));
  }
  assert.ok(decoded > 100, `the mutations never produced a decodable macaroon (${decoded})`);
});

test(`decodeMacaroonV1() (ngx_l402's credentials): 20000 mutated byte strings throw only MacaroonFormatError; only what ngx_l402 signed verifies (seed ${SEED})`, () => {
  const rng = new Rng(SEED ^ 0x0ec1);
  const key = 'ngx_l402 ROOT_KEY for the fuzzer 00000';
  const sold = Array.from({ length: 8 }, (_, i) => ngxL402Credential(key, i % 2 ? '/premium' : '/forever', 'GET', i % 3 ? {} : { expiresAt: 2_000_000_000 }).macaroon);
  // The location is a hint no macaroon signs (nor do we read it): what verifies must be what was signed.
  const signed = new Set(sold.map((b) => { const m = decodeMacaroonV1(b); return [m.identifier.toString('hex'), ...caveatPredicates(m)].join('\n'); }));
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const original = rng.pick(sold);
    const input = rng.chance(0.9) ? mutateBytes(rng, original) : rng.bytes(rng.int(300));
    let m: Macaroon;
    try {
      m = decodeMacaroonV1(input);
    } catch (e) {
      assert.ok(e instanceof MacaroonFormatError, `#${i}: ${(e as Error).name}: ${(e as Error).message} for ${input.toString('hex')}`);
      continue;
    }
    decoded++;
    if (verifySignature(m, Buffer.from(key))) assert.ok(signed.has([m.identifier.toString('hex'), ...caveatPredicates(m)].join('\n')), `#${i}: a changed macaroon verified: ${input.toString('hex')}`);
    checkNgxL402Caveats(caveatPredicates(m), { path: '/premium', method: 'GET', now: 1 });
  }
  assert.ok(decoded > 100, `the mutations never produced a decodable macaroon (${decoded})`);
});

function tamperSafe(rng: Rng): Buffer {
  const p = rng.pick(paid);
  try {
    return tamper(rng, p.macaroon, p);
  } catch {
    return p.macaroon;
  }
}

test(`base64, paths, caveats: 15000 inputs to the small parsers never throw (seed ${SEED})`, () => {
  const rng = new Rng(SEED ^ 0xba5e);
  for (let i = 0; i < 5_000; i++) {
    const s = rng.chance(0.5) ? mutateString(rng, rng.pick(paid).macaroon.toString('base64')) : rng.bytes(rng.int(100)).toString('latin1');
    const max = rng.pick([1, 66, 4096]);
    const b = decodeBase64Loose(s, max);
    assert.ok(b === undefined || (b.length > 0 && b.length <= max), `#${i} base64 ${JSON.stringify(s)}`);
  }
  for (let i = 0; i < 5_000; i++) {
    let uri = rng.pick(PATHS)[0];
    for (let k = 1 + rng.int(3); k > 0; k--) uri = mutateString(rng, rng.chance(0.3) ? uri + rng.pick(['/..', '/.', '%2e%2e/', '%2F', '%', '%zz', '%c0%ae', '//', '?', '#']) : uri);
    const p = normalizePath(uri);
    if (p === undefined) continue;
    assert.ok(p.startsWith('/'), `#${i} ${JSON.stringify(uri)} -> ${JSON.stringify(p)}`);
    assert.ok(!/(^|\/)\.\.?(\/|$)/.test(p) && !/\/\//.test(p) && !/[\0\r\n]/.test(p), `#${i} ${JSON.stringify(uri)} -> ${JSON.stringify(p)}`);
  }
  for (let i = 0; i < 5_000; i++) {
    const preds = Array.from({ length: rng.int(6) }, () => mutateString(rng, rng.pick(['services=l402:0', 'route=/premium', 'path=/premium', 'method=GET', 'l402_valid_until=99999999999', `preimage=${'ab'.repeat(32)}`, 'x=y'])));
    const v = checkCaveats(preds, { service: SERVICE, routeId: '/premium', path: '/premium', method: 'GET', now: 1000, paymentHash: rng.bytes(32) }, rng.int(preds.length + 2));
    assert.equal(typeof v.ok, 'boolean');
  }
});

test(`X-Cashu / Authorization: Cashu: 10000 values parse to none, token or malformed, never throw (seed ${SEED})`, () => {
  const rng = new Rng(SEED ^ 0xca54);
  const base = 'cashuBo2FteBtodHRwczovL21pbnQuZXhhbXBsZS5jb20vYXBpYXVjc2F0YXSBomFpSAC0zSfYhhpEYXCCpGFhAmFzeEBmNjk1NTQ1YjVjYjA5NDc1MTBkZjM1YjlkOGQxOTBiMzk2MzI0ZmYwODIxMzFkMWI5OWViNjQwNmUwMzc3N2ZlYWNYIQJ';
  const seen = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    let v = rng.pick([base, 'cashuA' + base.slice(6), 'creqA' + base.slice(6), `cashu:${base}`, `cashu://${base}`, base.repeat(300), '', ' ']);
    for (let k = rng.int(4); k > 0; k--) v = mutateString(rng, v);
    const headers = rng.pick([
      { 'x-cashu': v },
      { 'x-cashu': [v] },
      { 'x-cashu': [v, v] },
      { 'x-cashu': [] as string[] },
      { authorization: `${rng.pick(['Cashu', 'cashu', 'CASHU', 'L402', 'Cashu  '])} ${v}` },
      { authorization: [`Cashu ${v}`, 'Cashu x'] },
      { 'x-cashu': ' ', authorization: `Cashu ${v}` },
    ]);
    const r = parseCashuCredential(headers, rng.pick([32_768, 100]));
    assert.ok(['none', 'token', 'malformed'].includes(r.kind), `#${i}`);
    if (r.kind === 'token') assert.match(r.token, /^cashu[AB][A-Za-z0-9_\-+/]+={0,2}$/, `#${i}`);
    seen.set(r.kind, (seen.get(r.kind) ?? 0) + 1);
  }
  assert.equal(seen.size, 3, `all three outcomes reached: ${[...seen].join(' ')}`);
});
