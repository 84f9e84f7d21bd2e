// BOLT12 backend: a reusable offer (`lno1…`) plus Core Lightning's `fetchinvoice`, one fresh BOLT12
// invoice (`lni1…`) per challenge. ngx_l402 does the same with LN_CLIENT_TYPE=BOLT12.
//
// Who is who (CLN terms): `fetchinvoice` makes the gate's CLN node the *payer side* of the offer. It
// sends an invoice_request to the offer's issuer and gets back an invoice the ISSUER signed and whose
// preimage only the issuer knows; the HTTP client then pays that invoice. So:
// - Verifying a paid credential needs no node at all: sha256(preimage) == the invoice's payment hash,
//   and the macaroon commits to that hash.
// - Settlement lookups (`listinvoices {payment_hash}`, used by auto-detect) only see the invoice when
//   the offer belongs to the same node the gate talks to. CLN can fetch invoices from its own offers
//   (CLN PR #7461, "self-fetch"), which is the intended setup: operator's node = offer's node.
//   For someone else's offer lookups answer "unknown"; `check()` says so.
//
// Decoding: boltz-bolt12 (LDK compiled to WASM) is the authority for structure and the invoice's
// BIP-340 signature; a small TLV reader here supplies what it does not expose (creation time, expiry,
// chains, requested amount, the copied offer fields) and enforces the spec's offer reader rules.
import { ECDH, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { bech32 } from '@scure/base';
import { z } from 'zod';
import type * as BoltzModule from 'boltz-bolt12';
import {
  BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend,
} from '../backend.js';
import type { ClnCaller } from './cln-rpc.js';
import { peerText } from './cln-rpc.js';
import {
  ClnConfigError, asObject, clnTransportShape, describeGetinfo, invoiceStateFromList, openClnCaller, refineClnTransport,
} from './cln.js';

// ---------------------------------------------------------------------------------------------
// boltz-bolt12 loader
// ---------------------------------------------------------------------------------------------

type Boltz = typeof BoltzModule;
let boltzCache: Boltz | undefined;

/**
 * The package is a wasm-bindgen *bundler* build (`import * as wasm from "./x.wasm"`), which plain
 * Node cannot import. Instantiating the module ourselves needs no flag and happens on first use
 * only (≈20 ms), so gates that do not use BOLT12 never pay for it.
 */
export function loadBoltz(): Boltz {
  if (boltzCache) return boltzCache;
  const require = createRequire(import.meta.url);
  const bg = require('boltz-bolt12/boltz_bolt12_bg.js') as Boltz & {
    __wbg_set_wasm(exports: WebAssembly.Exports): void;
  };
  const wasm = new WebAssembly.Module(readFileSync(require.resolve('boltz-bolt12/boltz_bolt12_bg.wasm')));
  const instance = new WebAssembly.Instance(wasm, { './boltz_bolt12_bg.js': bg as unknown as WebAssembly.ModuleImports });
  bg.__wbg_set_wasm(instance.exports);
  (instance.exports.__wbindgen_start as () => void)();
  boltzCache = bg;
  return bg;
}

// ---------------------------------------------------------------------------------------------
// bech32 without checksum, TLV streams
// ---------------------------------------------------------------------------------------------

export class Bolt12Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Bolt12Error';
  }
}

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const CHAR_VALUE = new Map([...CHARSET].map((c, i) => [c, i]));

/**
 * Canonical form of a bolt12 string: `+`-joins (and the whitespace after them) removed, lowercase.
 * Throws Bolt12Error for mixed case or a misplaced `+` (BOLT12 "Encoding").
 */
export function normalizeBolt12(input: string): string {
  const s = input.trim();
  if (/^\+|\+\s*$|\+\s*\+/.test(s)) throw new Bolt12Error('a "+" must join two bech32 characters');
  const joined = s.replace(/\+\s*/g, '');
  if (joined !== joined.toLowerCase() && joined !== joined.toUpperCase()) throw new Bolt12Error('mixed upper and lower case');
  return joined.toLowerCase();
}

/** Decodes a bolt12 string to its TLV bytes, checking the human-readable prefix. */
export function decodeBolt12String(input: string, hrp: 'lno' | 'lnr' | 'lni'): { canonical: string; bytes: Buffer } {
  const canonical = normalizeBolt12(input);
  const sep = canonical.lastIndexOf('1');
  if (sep < 0 || canonical.slice(0, sep) !== hrp) throw new Bolt12Error(`not a BOLT12 string starting with ${hrp}1`);
  const data = canonical.slice(sep + 1);
  if (data.length === 0) throw new Bolt12Error('empty');
  const words: number[] = [];
  for (const c of data) {
    const v = CHAR_VALUE.get(c);
    if (v === undefined) throw new Bolt12Error(`invalid bech32 character "${c}"`);
    words.push(v);
  }
  let bytes: Uint8Array;
  try {
    bytes = bech32.fromWords(words);
  } catch (e) {
    throw new Bolt12Error(`bad bech32 padding (${(e as Error).message})`);
  }
  return { canonical, bytes: Buffer.from(bytes) };
}

export interface TlvRecord {
  type: bigint;
  value: Buffer;
  /** The whole record (type, length, value) as it appeared: what the Merkle leaves hash. */
  raw: Buffer;
}

function readBigSize(b: Buffer, off: number): { value: bigint; next: number } {
  if (off >= b.length) throw new Bolt12Error('truncated TLV');
  const first = b[off]!;
  if (first < 0xfd) return { value: BigInt(first), next: off + 1 };
  const len = first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
  if (off + 1 + len > b.length) throw new Bolt12Error('truncated TLV');
  const v = len === 2 ? BigInt(b.readUInt16BE(off + 1)) : len === 4 ? BigInt(b.readUInt32BE(off + 1)) : b.readBigUInt64BE(off + 1);
  const min = len === 2 ? 0xfdn : len === 4 ? 0x10000n : 0x100000000n;
  if (v < min) throw new Bolt12Error('non-minimal bigsize');
  return { value: v, next: off + 1 + len };
}

/** Parses a TLV stream; types must strictly increase (BOLT1). */
export function readTlvStream(b: Buffer): TlvRecord[] {
  const out: TlvRecord[] = [];
  let off = 0;
  let last = -1n;
  while (off < b.length) {
    const start = off;
    const t = readBigSize(b, off);
    const l = readBigSize(b, t.next);
    if (l.value > BigInt(b.length - l.next)) throw new Bolt12Error(`TLV ${t.value} runs past the end`);
    if (t.value <= last) throw new Bolt12Error('TLV types out of order');
    last = t.value;
    const end = l.next + Number(l.value);
    out.push({ type: t.value, value: b.subarray(l.next, end), raw: b.subarray(start, end) });
    off = end;
  }
  return out;
}

/** A truncated unsigned integer: big-endian, minimal (no leading zero byte). */
export function readTu64(v: Buffer, max = 8): bigint {
  if (v.length > max) throw new Bolt12Error('integer too long');
  if (v.length > 0 && v[0] === 0) throw new Bolt12Error('non-minimal integer');
  let n = 0n;
  for (const byte of v) n = (n << 8n) | BigInt(byte);
  return n;
}

function readUtf8(v: Buffer, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(v);
  } catch {
    throw new Bolt12Error(`${what} is not valid UTF-8`);
  }
}

function checkPoint(p: Buffer, what: string): void {
  if (p.length !== 33 || (p[0] !== 2 && p[0] !== 3)) throw new Bolt12Error(`${what} is not a compressed public key`);
  try {
    ECDH.convertKey(p, 'secp256k1');
  } catch {
    throw new Bolt12Error(`${what} is not a point on secp256k1`);
  }
}

/** Walks a `...*blinded_path` field (BOLT4), validating every point; returns the path count. */
function checkBlindedPaths(v: Buffer, what: string): number {
  let off = 0;
  let n = 0;
  const need = (len: number): void => {
    if (off + len > v.length) throw new Bolt12Error(`${what} truncated`);
  };
  while (off < v.length) {
    need(1);
    const kind = v[off]!;
    if (kind === 0 || kind === 1) {
      need(9);
      off += 9;
    } else {
      need(33);
      checkPoint(v.subarray(off, off + 33), `${what} first_node_id`);
      off += 33;
    }
    need(34);
    checkPoint(v.subarray(off, off + 33), `${what} first_path_key`);
    off += 33;
    const hops = v[off]!;
    off += 1;
    if (hops === 0) throw new Bolt12Error(`${what} has a path with zero hops`);
    for (let h = 0; h < hops; h++) {
      need(35);
      checkPoint(v.subarray(off, off + 33), `${what} blinded_node_id`);
      off += 33;
      const len = v.readUInt16BE(off);
      off += 2;
      need(len);
      off += len;
    }
    n++;
  }
  if (n === 0) throw new Bolt12Error(`${what} is empty`);
  return n;
}

/** True when a BOLT9-style feature bitmap sets an even (compulsory) bit; we know none for offers. */
function hasEvenBit(features: Buffer): boolean {
  for (let i = 0; i < features.length; i++) {
    // bit numbering starts at the least significant bit of the LAST byte; even bits are 0x55 in a byte
    if ((features[features.length - 1 - i]! & 0x55) !== 0) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Chains
// ---------------------------------------------------------------------------------------------

export type Bolt12Network = 'bitcoin' | 'testnet' | 'testnet4' | 'signet' | 'regtest';
export const BOLT12_NETWORKS: readonly Bolt12Network[] = ['bitcoin', 'testnet', 'testnet4', 'signet', 'regtest'];

/** Genesis block hashes in the byte order BOLT12 `chain_hash` uses (as in the spec's test vectors). */
export const CHAIN_HASHES: Readonly<Record<Bolt12Network, string>> = {
  bitcoin: '6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000',
  testnet: '43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000',
  testnet4: '43f08bdab050e35b567c864b91f47f50ae725ae2de53bcfbbaf284da00000000',
  signet: 'f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000',
  regtest: '06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f',
};

function networkOfChainHash(h: Buffer): Bolt12Network | undefined {
  const hex = h.toString('hex');
  return BOLT12_NETWORKS.find((n) => CHAIN_HASHES[n] === hex);
}

// boltz-bolt12's Network enum order: Bitcoin, Testnet3, Testnet4, Signet, Regtest, Unknown.
const BOLTZ_NETWORKS: ReadonlyArray<Bolt12Network | undefined> = ['bitcoin', 'testnet', 'testnet4', 'signet', 'regtest', undefined];

// ---------------------------------------------------------------------------------------------
// Offers
// ---------------------------------------------------------------------------------------------

const OFFER_TYPES = new Set([2n, 4n, 6n, 8n, 10n, 12n, 14n, 16n, 18n, 20n, 22n]);

function inOfferRange(t: bigint): boolean {
  return (t >= 1n && t <= 79n) || (t >= 1_000_000_000n && t <= 1_999_999_999n);
}

export interface DecodedOffer {
  /** Canonical string (lowercase, no `+` joins): what we send to fetchinvoice. */
  offer: string;
  /**
   * CLN's offer_id (`listoffers`, `listinvoices.local_offer_id`): SHA256 of the offer's TLV bytes
   * (ranges 1-79 then 1e9-1999999999; common/bolt12.c calc_offer). Not LDK's "LDK Offer ID" hash.
   */
  id: Buffer;
  /** offer_chains, or bitcoin when absent. Unknown chains are left out. */
  chains: Bolt12Network[];
  /** Minimum per item in msat; absent when the offer has no amount or is in another currency. */
  amountMsat?: bigint;
  /** ISO 4217 code when the amount is in a fiat currency. */
  currency?: string;
  currencyAmount?: bigint;
  description?: string;
  issuer?: string;
  /** Unix seconds. */
  absoluteExpiry?: number;
  issuerId?: Buffer;
  quantityMax?: bigint;
  /** The offer's TLV records; an invoice for this offer must repeat them byte for byte. */
  records: TlvRecord[];
}

/** Decodes and validates an offer (spec reader rules + LDK); throws Bolt12Error. Does not check expiry. */
export function decodeOffer(input: string): DecodedOffer {
  const { canonical, bytes } = decodeBolt12String(input, 'lno');
  const records = readTlvStream(bytes);
  const out: DecodedOffer = { offer: canonical, id: Buffer.alloc(0), chains: ['bitcoin'], records };
  let hasPaths = false;
  let chainsField: Buffer | undefined;
  for (const r of records) {
    if (!inOfferRange(r.type)) throw new Bolt12Error(`field type ${r.type} is not allowed in an offer`);
    if (!OFFER_TYPES.has(r.type)) {
      if (r.type % 2n === 0n) throw new Bolt12Error(`unknown required (even) field type ${r.type}`);
      continue;
    }
    const v = r.value;
    switch (r.type) {
      case 2n:
        if (v.length === 0 || v.length % 32 !== 0) throw new Bolt12Error('offer_chains must hold one or more 32-byte chain hashes');
        chainsField = v;
        break;
      case 6n:
        out.currency = readUtf8(v, 'offer_currency');
        break;
      case 8n:
        out.currencyAmount = readTu64(v);
        if (out.currencyAmount === 0n) throw new Bolt12Error('offer_amount must be greater than zero');
        break;
      case 10n:
        out.description = readUtf8(v, 'offer_description');
        break;
      case 12n:
        if (hasEvenBit(v)) throw new Bolt12Error('offer_features sets an unknown required feature');
        break;
      case 14n:
        out.absoluteExpiry = Number(readTu64(v));
        break;
      case 16n:
        checkBlindedPaths(v, 'offer_paths');
        hasPaths = true;
        break;
      case 18n:
        out.issuer = readUtf8(v, 'offer_issuer');
        break;
      case 20n:
        out.quantityMax = readTu64(v);
        break;
      case 22n:
        checkPoint(v, 'offer_issuer_id');
        out.issuerId = Buffer.from(v);
        break;
    }
  }
  if (out.currency !== undefined && out.currencyAmount === undefined) throw new Bolt12Error('offer_currency without offer_amount');
  if (out.currencyAmount !== undefined && out.description === undefined) throw new Bolt12Error('offer_amount without offer_description');
  if (!out.issuerId && !hasPaths) throw new Bolt12Error('neither offer_issuer_id nor offer_paths');
  if (out.currencyAmount !== undefined && out.currency === undefined) out.amountMsat = out.currencyAmount;
  if (chainsField) {
    const chains: Bolt12Network[] = [];
    for (let i = 0; i < chainsField.length; i += 32) {
      const n = networkOfChainHash(chainsField.subarray(i, i + 32));
      if (n) chains.push(n);
    }
    out.chains = chains;
  }

  out.id = createHash('sha256').update(Buffer.concat(records.map((r) => r.raw))).digest();

  // Second opinion from LDK: it must parse the same string and agree on chains and amount.
  const boltz = loadBoltz();
  let o: BoltzModule.Offer;
  try {
    o = new boltz.Offer(canonical);
  } catch (e) {
    throw new Bolt12Error(`rejected by the BOLT12 decoder: ${peerText(e, [], 120)}`);
  }
  try {
    const ldkChains = (o.chains as number[]).map((n) => BOLTZ_NETWORKS[n]).filter((n): n is Bolt12Network => n !== undefined);
    if (ldkChains.join() !== out.chains.join()) throw new Bolt12Error('decoders disagree about offer_chains');
    const amount = o.amount;
    if ((amount ?? undefined) !== out.amountMsat) throw new Bolt12Error('decoders disagree about offer_amount');
  } finally {
    o.free();
  }
  return out;
}

export interface OfferCheck {
  nowSecs?: number;
  /** When set, the offer must be valid on this chain. */
  network?: Bolt12Network;
}

/** decodeOffer plus the start-up rules: not expired, valid on the configured chain. Throws Bolt12Error. */
export function validateOffer(input: string, opts: OfferCheck = {}): DecodedOffer {
  const offer = decodeOffer(input);
  const now = opts.nowSecs ?? Math.floor(Date.now() / 1000);
  if (offer.absoluteExpiry !== undefined && now >= offer.absoluteExpiry) {
    throw new Bolt12Error(`offer expired at ${new Date(offer.absoluteExpiry * 1000).toISOString()}`);
  }
  if (offer.chains.length === 0) throw new Bolt12Error('offer is only valid on chains we do not know');
  // The gate names the msat amount of every invoice; a fiat-priced offer would leave the conversion
  // to the issuer (and LDK's decoder refuses such invoices: UnsupportedCurrency).
  if (offer.currency !== undefined) {
    throw new Bolt12Error(`offer is priced in ${peerText(offer.currency, [], 8)}; use an offer without an amount (route prices set the msat amount)`);
  }
  if (opts.network && !offer.chains.includes(opts.network)) {
    throw new Bolt12Error(`offer is for ${offer.chains.join(', ')}, not ${opts.network}`);
  }
  return offer;
}

// ---------------------------------------------------------------------------------------------
// Invoices
// ---------------------------------------------------------------------------------------------

/** BOLT12: an invoice without invoice_relative_expiry expires 7200 s after creation. */
export const DEFAULT_RELATIVE_EXPIRY = 7200;

export interface DecodedBolt12Invoice {
  invoice: string;
  paymentHash: Buffer;
  amountMsat: bigint;
  /** Unix seconds. */
  createdAt: number;
  expiresAt: number;
  nodeId: Buffer;
  /** invreq_chain, or bitcoin when absent; undefined for a chain we do not know. */
  chain?: Bolt12Network;
  invreqAmountMsat?: bigint;
  payerNote?: string;
  /** Records in the offer ranges (copied from the offer). */
  offerRecords: TlvRecord[];
}

/** Decodes an `lni1…` invoice; LDK checks structure and signature. Throws Bolt12Error. */
export function decodeBolt12Invoice(input: string): DecodedBolt12Invoice {
  const { canonical, bytes } = decodeBolt12String(input, 'lni');
  const records = readTlvStream(bytes);
  const get = (t: bigint): Buffer | undefined => records.find((r) => r.type === t)?.value;
  const need = (t: bigint, what: string): Buffer => {
    const v = get(t);
    if (!v) throw new Bolt12Error(`invoice has no ${what}`);
    return v;
  };
  const paymentHash = Buffer.from(need(168n, 'invoice_payment_hash'));
  if (paymentHash.length !== 32) throw new Bolt12Error('invoice_payment_hash is not 32 bytes');
  const amountMsat = readTu64(need(170n, 'invoice_amount'));
  const createdAt = Number(readTu64(need(164n, 'invoice_created_at')));
  const rel = get(166n);
  const relative = rel ? Number(readTu64(rel, 4)) : DEFAULT_RELATIVE_EXPIRY;
  const nodeId = Buffer.from(need(176n, 'invoice_node_id'));
  const chainHash = get(80n);
  let chain: Bolt12Network | undefined = 'bitcoin';
  if (chainHash) chain = chainHash.length === 32 ? networkOfChainHash(chainHash) : undefined;
  const invreqAmount = get(82n);
  const note = get(89n);

  const boltz = loadBoltz();
  let inv: BoltzModule.Invoice;
  try {
    inv = new boltz.Invoice(canonical);
  } catch (e) {
    throw new Bolt12Error(`rejected by the BOLT12 decoder: ${peerText(e, [], 120)}`);
  }
  try {
    if (!Buffer.from(inv.payment_hash).equals(paymentHash)) throw new Bolt12Error('decoders disagree about the payment hash');
    if (inv.amount_msat !== amountMsat) throw new Bolt12Error('decoders disagree about the amount');
    if (!Buffer.from(inv.signing_pubkey).equals(nodeId)) throw new Bolt12Error('decoders disagree about invoice_node_id');
  } finally {
    inv.free();
  }
  return {
    invoice: canonical,
    paymentHash,
    amountMsat,
    createdAt,
    expiresAt: createdAt + relative,
    nodeId,
    chain,
    invreqAmountMsat: invreqAmount ? readTu64(invreqAmount) : undefined,
    payerNote: note ? readUtf8(note, 'invreq_payer_note') : undefined,
    offerRecords: records.filter((r) => inOfferRange(r.type)),
  };
}

/** Checks a fetched invoice against the offer and the request; returns what the gate needs. */
export function checkFetchedInvoice(
  invoice: string,
  offer: DecodedOffer,
  want: { amountMsat: number; network: Bolt12Network; nowSecs?: number },
): CreatedInvoice {
  let inv: DecodedBolt12Invoice;
  try {
    inv = decodeBolt12Invoice(invoice);
  } catch (e) {
    throw new BackendCallError(`CLN fetchinvoice: returned invoice is invalid: ${(e as Error).message}`, false);
  }
  const same =
    inv.offerRecords.length === offer.records.length && inv.offerRecords.every((r, i) => r.raw.equals(offer.records[i]!.raw));
  if (!same) throw new BackendCallError('CLN fetchinvoice: returned invoice is not for the configured offer', false);
  const amount = BigInt(want.amountMsat);
  if (inv.amountMsat !== amount || inv.invreqAmountMsat !== amount) {
    throw new BackendCallError(`CLN fetchinvoice: invoice amount ${inv.amountMsat} msat differs from the requested ${want.amountMsat} msat`, false);
  }
  if (inv.chain !== want.network) throw new BackendCallError(`CLN fetchinvoice: invoice is for ${inv.chain ?? 'an unknown chain'}, node runs ${want.network}`, false);
  const now = want.nowSecs ?? Math.floor(Date.now() / 1000);
  if (inv.expiresAt <= now) throw new BackendCallError('CLN fetchinvoice: the new invoice is already expired (check the node clock)');
  return { bolt11: inv.invoice, paymentHash: inv.paymentHash, expiresAt: inv.expiresAt };
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

export const bolt12ConfigSchema = z
  .object({
    type: z.literal('bolt12'),
    offer: z.string().trim().min(1, 'required: the lno1… offer to fetch invoices from'),
    /** Optional: checked against the offer at start; the node's own network is always checked. */
    network: z.enum(BOLT12_NETWORKS as [Bolt12Network, ...Bolt12Network[]]).optional(),
    ...clnTransportShape,
  })
  .strict()
  .superRefine((v, ctx) => {
    refineClnTransport(v, ctx);
    try {
      validateOffer(v.offer, { network: v.network });
    } catch (e) {
      ctx.addIssue({ code: 'custom', path: ['offer'], message: `invalid BOLT12 offer: ${(e as Error).message}` });
    }
  });

export type Bolt12Config = z.output<typeof bolt12ConfigSchema>;

/**
 * ngx_l402 environment → raw `lightning:` section for `type: bolt12`:
 * BOLT12_OFFER → offer, CLN_LIGHTNING_RPC_FILE_PATH → rpc_path.
 */
export function bolt12FromLegacyEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = { type: 'bolt12', transport: 'rpc' };
  const offer = env.BOLT12_OFFER?.trim();
  if (offer) out.offer = offer;
  const path = env.CLN_LIGHTNING_RPC_FILE_PATH?.trim();
  if (path) out.rpc_path = path;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/** BOLT12 invreq_payer_note is free text; keep what we send short. */
const MAX_PAYER_NOTE_BYTES = 256;

function clip(text: string, maxBytes: number): string {
  let s = text;
  while (Buffer.byteLength(s, 'utf8') > maxBytes) s = s.slice(0, -1);
  return s;
}

class Bolt12Backend implements LightningBackend {
  readonly kind = 'bolt12';
  private node?: Promise<{ network: Bolt12Network; id: string }>;
  private ownershipLogged = false;

  constructor(
    private readonly offer: DecodedOffer,
    private readonly rpc: ClnCaller,
    private readonly ctx: BackendContext,
  ) {}

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError('bolt12: amountMsat must be a positive integer', false);
    if (this.offer.amountMsat !== undefined && BigInt(req.amountMsat) < this.offer.amountMsat) {
      throw new BackendCallError(
        `bolt12: the offer asks for at least ${this.offer.amountMsat} msat but the route price is ${req.amountMsat} msat; use an offer without an amount`,
        false,
      );
    }
    if (this.offer.absoluteExpiry !== undefined && Date.now() / 1000 >= this.offer.absoluteExpiry) {
      throw new BackendCallError(`bolt12: the configured offer expired at ${new Date(this.offer.absoluteExpiry * 1000).toISOString()}`, false);
    }
    const { network } = await this.nodeInfo(signal);
    const params: Record<string, unknown> = {
      offer: this.offer.offer,
      // Always explicit: the invoice must be for exactly the route price, also for fiat-denominated offers.
      amount_msat: req.amountMsat,
      // Let CLN give up on the onion-message round trip when we do.
      timeout: Math.max(1, Math.floor(this.ctx.timeoutMs / 1000)),
    };
    if (this.offer.quantityMax !== undefined) params.quantity = 1;
    // The invoice description is the offer's; the gate's memo travels as invreq_payer_note, which
    // the offer owner sees in listinvoices.
    const note = clip(req.memo, MAX_PAYER_NOTE_BYTES);
    if (note) params.payer_note = note;
    const result = asObject(await this.rpc.call('fetchinvoice', params, signal), 'CLN fetchinvoice');
    if (typeof result.invoice !== 'string' || result.invoice.length > 16_384) throw new BackendCallError('CLN fetchinvoice: reply has no invoice string');
    return checkFetchedInvoice(result.invoice, this.offer, { amountMsat: req.amountMsat, network });
  }

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const result = await this.rpc.call('listinvoices', { payment_hash: paymentHash.toString('hex') }, signal);
    return invoiceStateFromList(result, paymentHash);
  }

  async check(signal?: AbortSignal): Promise<string> {
    const info = describeGetinfo(await this.rpc.call('getinfo', {}, signal));
    this.assertChain(info.network);
    let own: 'active' | 'inactive' | 'foreign';
    try {
      own = await this.ownOffer(signal);
    } catch (e) {
      // A rune may forbid listoffers; that only costs us the ownership hint.
      return `${info.text}; could not tell whether the offer is this node's (listoffers: ${(e as Error).message})`;
    }
    if (own === 'inactive') throw new BackendCallError(`bolt12: offer ${this.shortId()} exists on this node but is disabled (enable it with enableoffer)`, false);
    const lookups =
      own === 'active'
        ? 'offer belongs to this node; settlement lookups available'
        : "offer is NOT this node's: invoices come from its issuer, preimages still verify, but settlement lookups (auto-detect) cannot see them";
    return `${info.text}; ${lookups}`;
  }

  describe(): string {
    const d = this.offer.description ? ` "${peerText(this.offer.description, [], 40)}"` : '';
    return `BOLT12 offer ${this.shortId()}${d} (fetchinvoice) via Core Lightning ${this.rpc.describe()}`;
  }

  close(): Promise<void> {
    return this.rpc.close();
  }

  private shortId(): string {
    return `${this.offer.id.toString('hex').slice(0, 16)}…`;
  }

  private assertChain(network: string): Bolt12Network {
    const n = BOLT12_NETWORKS.find((x) => x === network);
    if (!n || !this.offer.chains.includes(n)) {
      throw new BackendCallError(`bolt12: the offer is for ${this.offer.chains.join(', ')} but the CLN node runs on ${peerText(network, [], 20)}`, false);
    }
    return n;
  }

  /** getinfo once: the node's chain must be one of the offer's. Retried after a failure. */
  private nodeInfo(signal?: AbortSignal): Promise<{ network: Bolt12Network; id: string }> {
    if (!this.node) {
      this.node = (async () => {
        const info = describeGetinfo(await this.rpc.call('getinfo', {}, signal));
        const network = this.assertChain(info.network);
        void this.logOwnership();
        return { network, id: info.id };
      })();
      this.node.catch(() => {
        this.node = undefined;
      });
    }
    return this.node;
  }

  private async ownOffer(signal?: AbortSignal): Promise<'active' | 'inactive' | 'foreign'> {
    const r = asObject(await this.rpc.call('listoffers', { offer_id: this.offer.id.toString('hex') }, signal), 'CLN listoffers');
    const offers = Array.isArray(r.offers) ? r.offers : [];
    const mine = offers.find((o) => typeof o === 'object' && o !== null && (o as { offer_id?: unknown }).offer_id === this.offer.id.toString('hex')) as
      | { active?: unknown }
      | undefined;
    if (!mine) return 'foreign';
    return mine.active === false ? 'inactive' : 'active';
  }

  private async logOwnership(): Promise<void> {
    if (this.ownershipLogged) return;
    this.ownershipLogged = true;
    try {
      const own = await this.ownOffer(AbortSignal.timeout(this.ctx.timeoutMs));
      if (own !== 'active') {
        this.ctx.log.warn(
          { event: 'bolt12_offer_not_local', offer_id: this.offer.id.toString('hex'), state: own },
          'the BOLT12 offer is not an active offer of this CLN node: settlement lookups (auto-detect) will not find its invoices',
        );
      }
    } catch (e) {
      this.ctx.log.debug({ event: 'bolt12_listoffers_failed', err: (e as Error).message }, 'could not tell whether the offer is local');
    }
  }
}

/** Validates the offer now (ClnConfigError if unusable); CLN is first contacted on the first call. */
export function createBolt12Backend(cfg: Bolt12Config, ctx: BackendContext): LightningBackend {
  let offer: DecodedOffer;
  try {
    offer = validateOffer(cfg.offer, { network: cfg.network });
  } catch (e) {
    throw new ClnConfigError(`lightning.offer: invalid BOLT12 offer: ${(e as Error).message}`);
  }
  return new Bolt12Backend(offer, openClnCaller(cfg, ctx), ctx);
}

/** For tests and embedding: a BOLT12 backend over an already-open transport. */
export function createBolt12BackendWith(offer: string, rpc: ClnCaller, ctx: BackendContext): LightningBackend {
  return new Bolt12Backend(validateOffer(offer), rpc, ctx);
}
