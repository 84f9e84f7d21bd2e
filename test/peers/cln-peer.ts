// A protocol-faithful Core Lightning stand-in for tests.
//
// - JSON-RPC 2.0 on a unix socket, framed like lightningd (objects back to back, replies ended by
//   "\n\n"), with knobs that frame replies the other legal ways (no delimiter, split across many
//   writes, several replies in one write) and that misbehave (slow, silent, garbage, errors, huge).
// - clnrest on HTTPS (openssl-made certificate): POST /v1/<method>, `Rune` header checked in
//   constant time, 201 + result / 401 / 403 / 404 / 500 + {code,message} like CLN's rest plugin.
// - Methods: getinfo, invoice, listinvoices, listoffers, fetchinvoice.
// - BOLT11 invoices are real and signed by a DevWallet; preimages appear only after settle().
// - BOLT12: offers and invoices are real TLV streams (bech32 without checksum), invoices are
//   BIP-340-signed over the spec's Merkle root, so the LDK decoder (boltz-bolt12) accepts them. A
//   BOLT12 invoice's payment hash is borrowed from a hidden DevWallet BOLT11 invoice, so the same
//   engine holds the preimage and settles it.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { bech32 } from '@scure/base';
import lightBolt11 from 'light-bolt11-decoder';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { requireTool } from '../integration/harness.js';
import { JsonObjectStream } from '../../src/rails/lightning/cln/cln-rpc.js';
import { CHAIN_HASHES, decodeBolt12String, readTlvStream, type Bolt12Network, type TlvRecord } from '../../src/rails/lightning/cln/bolt12.js';
import { sleep } from '../../src/util/timeout.js';

// ---------------------------------------------------------------------------------------------
// BOLT12 encoding (independent of the reader in src: writers only)
// ---------------------------------------------------------------------------------------------

export function bigsize(n: bigint | number): Buffer {
  const v = BigInt(n);
  if (v < 0xfdn) return Buffer.from([Number(v)]);
  if (v <= 0xffffn) {
    const b = Buffer.alloc(3);
    b[0] = 0xfd;
    b.writeUInt16BE(Number(v), 1);
    return b;
  }
  if (v <= 0xffffffffn) {
    const b = Buffer.alloc(5);
    b[0] = 0xfe;
    b.writeUInt32BE(Number(v), 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = 0xff;
  b.writeBigUInt64BE(v, 1);
  return b;
}

/** Truncated unsigned integer: big-endian without leading zero bytes (0 is empty). */
export function tu64(n: bigint | number): Buffer {
  let v = BigInt(n);
  const bytes: number[] = [];
  while (v > 0n) {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return Buffer.from(bytes);
}

export function tlv(type: bigint | number, value: Buffer): Buffer {
  return Buffer.concat([bigsize(type), bigsize(value.length), value]);
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export function u64(n: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

/** BOLT12 string: hrp, "1", bech32 characters of the bytes, no checksum. */
export function encodeBolt12(hrp: 'lno' | 'lnr' | 'lni', bytes: Buffer): string {
  return `${hrp}1${bech32.toWords(bytes).map((w) => CHARSET[w]).join('')}`;
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** BIP-340 tagged hash H(tag, msg) = SHA256(SHA256(tag) || SHA256(tag) || msg). */
export function taggedHash(tag: Buffer | string, msg: Buffer): Buffer {
  const t = sha256(typeof tag === 'string' ? Buffer.from(tag) : tag);
  return sha256(t, t, msg);
}

function isSignatureType(t: bigint): boolean {
  return t >= 240n && t <= 1000n;
}

function branch(a: Buffer, b: Buffer): Buffer {
  return Buffer.compare(a, b) <= 0 ? taggedHash('LnBranch', Buffer.concat([a, b])) : taggedHash('LnBranch', Buffer.concat([b, a]));
}

/** BOLT12 "Signature Calculation": the Merkle root over every non-signature TLV record. */
export function merkleRoot(records: ReadonlyArray<{ type: bigint; raw: Buffer }>): Buffer {
  const leaves = records.filter((r) => !isSignatureType(r.type));
  if (leaves.length === 0) throw new Error('merkleRoot: no TLV records');
  const nonceTag = Buffer.concat([Buffer.from('LnNonce'), leaves[0]!.raw]);
  let level = leaves.map((r) => branch(taggedHash('LnLeaf', r.raw), taggedHash(nonceTag, bigsize(r.type))));
  // Pair neighbours level by level; an odd one out moves up unchanged (the deeper tree sits on
  // the lower-order leaves, as the spec's 3-leaf example shows).
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? branch(level[i]!, level[i + 1]!) : level[i]!);
    level = next;
  }
  return level[0]!;
}

export function recordsOf(bytes: Buffer): TlvRecord[] {
  return readTlvStream(bytes);
}

/** SIG("lightning" || messageName || "signature", merkle root, key): 64-byte BIP-340 signature. */
export function signBolt12(records: TlvRecord[], messageName: 'invoice' | 'invoice_request', secret: Buffer): Buffer {
  const msg = taggedHash(`lightning${messageName}signature`, merkleRoot(records));
  return Buffer.from(schnorr.sign(msg, secret, randomBytes(32)));
}

export function pubkeyOf(secret: Buffer): Buffer {
  return Buffer.from(secp256k1.getPublicKey(secret, true));
}

function randomPoint(): Buffer {
  return pubkeyOf(Buffer.from(secp256k1.utils.randomSecretKey()));
}

export interface OfferSpec {
  /** Secret key of the issuer; offer_issuer_id is its public key. */
  issuerSecret: Buffer;
  description?: string;
  amountMsat?: bigint | number;
  currency?: string;
  /** Unix seconds. */
  absoluteExpiry?: number;
  /** Omitted = bitcoin only. */
  chains?: Bolt12Network[];
  quantityMax?: bigint | number;
  issuer?: string;
}

/** Builds an `lno1…` offer (offers are unsigned). */
export function buildOffer(spec: OfferSpec): string {
  const parts: Buffer[] = [];
  if (spec.chains) parts.push(tlv(2, Buffer.concat(spec.chains.map((c) => Buffer.from(CHAIN_HASHES[c], 'hex')))));
  if (spec.currency) parts.push(tlv(6, Buffer.from(spec.currency)));
  if (spec.amountMsat !== undefined) parts.push(tlv(8, tu64(spec.amountMsat)));
  if (spec.description !== undefined) parts.push(tlv(10, Buffer.from(spec.description)));
  if (spec.absoluteExpiry !== undefined) parts.push(tlv(14, tu64(spec.absoluteExpiry)));
  if (spec.issuer !== undefined) parts.push(tlv(18, Buffer.from(spec.issuer)));
  if (spec.quantityMax !== undefined) parts.push(tlv(20, tu64(spec.quantityMax)));
  parts.push(tlv(22, pubkeyOf(spec.issuerSecret)));
  return encodeBolt12('lno', Buffer.concat(parts));
}

/** CLN's offer_id: SHA256 of the offer's TLV bytes (all of them lie in the offer ranges). */
export function offerId(offer: string): Buffer {
  return sha256(decodeBolt12String(offer, 'lno').bytes);
}

export interface InvoiceSpec {
  /** The offer's records, copied verbatim. */
  offerRecords: TlvRecord[];
  /** invreq_chain; omit for bitcoin. */
  chain?: Bolt12Network;
  invreqAmountMsat?: bigint;
  quantity?: bigint;
  payerNote?: string;
  /** invoice_amount (normally equal to invreqAmountMsat). */
  amountMsat: bigint;
  paymentHash: Buffer;
  createdAt: number;
  /** Omitted = the spec default of 7200 s. */
  relativeExpiry?: number;
  /** Secret of invoice_node_id (= offer_issuer_id). */
  nodeSecret: Buffer;
}

/** Builds and signs an `lni1…` invoice as the offer's issuer would after an invoice_request. */
export function buildInvoice(spec: InvoiceSpec): string {
  const nodeId = pubkeyOf(spec.nodeSecret);
  const recs: Buffer[] = [tlv(0, randomBytes(16))]; // invreq_metadata
  for (const r of spec.offerRecords) if (r.type < 80n) recs.push(r.raw);
  if (spec.chain && spec.chain !== 'bitcoin') recs.push(tlv(80, Buffer.from(CHAIN_HASHES[spec.chain], 'hex')));
  if (spec.invreqAmountMsat !== undefined) recs.push(tlv(82, tu64(spec.invreqAmountMsat)));
  if (spec.quantity !== undefined) recs.push(tlv(86, tu64(spec.quantity)));
  recs.push(tlv(88, randomPoint())); // invreq_payer_id: a transient key
  if (spec.payerNote) recs.push(tlv(89, Buffer.from(spec.payerNote)));
  // One blinded path of one hop, introduced by the node itself (BOLT4 blinded_path).
  const hopData = randomBytes(32);
  const path = Buffer.concat([nodeId, randomPoint(), Buffer.from([1]), randomPoint(), u16(hopData.length), hopData]);
  recs.push(tlv(160, path));
  const payinfo = Buffer.concat([u32(1000), u32(100), u16(80), u64(1), u64(spec.amountMsat * 10n + 1_000_000n), u16(0)]);
  recs.push(tlv(162, payinfo));
  recs.push(tlv(164, tu64(spec.createdAt)));
  if (spec.relativeExpiry !== undefined) recs.push(tlv(166, tu64(spec.relativeExpiry)));
  recs.push(tlv(168, spec.paymentHash));
  recs.push(tlv(170, tu64(spec.amountMsat)));
  recs.push(tlv(176, nodeId));
  // Offer experimental fields (1e9+) sort after everything else but still belong to the Merkle tree.
  for (const r of spec.offerRecords) if (r.type >= 80n) recs.push(r.raw);
  const unsigned = Buffer.concat(recs);
  const sig = signBolt12(readTlvStream(unsigned), 'invoice', spec.nodeSecret);
  // Signature (type 240) must come before any experimental record: rebuild in type order.
  const all = [...readTlvStream(unsigned).map((r) => ({ type: r.type, raw: r.raw })), { type: 240n, raw: tlv(240, sig) }].sort((a, b) =>
    a.type < b.type ? -1 : a.type > b.type ? 1 : 0,
  );
  return encodeBolt12('lni', Buffer.concat(all.map((r) => r.raw)));
}

// ---------------------------------------------------------------------------------------------
// The peer
// ---------------------------------------------------------------------------------------------

export type Framing = 'cln' | 'bare' | 'split' | 'coalesce';
export type Tamper =
  | 'payment_hash' | 'amount' | 'bolt11' | 'preimage' | 'status' | 'expires_at'
  /** `invoice` reports an expires_at in the year 300,000 (past what a JavaScript Date can hold). */
  | 'expires_at_far'
  /** `invoice` reports an expires_at 6 days away, whatever expiry its bolt11 carries. */
  | 'expires_at_late'
  /** A paid entry received less than its amount_msat (amount_received_msat is one satoshi short). */
  | 'underpaid'
  | 'invoice_offer' | 'invoice_amount' | 'invoice_signature' | 'invoice_expired' | 'invoice_not_string'
  /** The invoice names signet as its chain (the offer must list signet too). */
  | 'invoice_chain';

export interface Faults {
  /** Delay before each reply, ms. */
  delayMs: number;
  /** Never reply (the connection stays open). */
  silent: boolean;
  /** Reply with bytes that are not JSON. */
  garbage: boolean;
  /** Reply to every call with this JSON-RPC error. */
  error?: { code: number; message: string };
  /** Per-method JSON-RPC errors. */
  errorFor: Record<string, { code: number; message: string }>;
  /** How replies are framed on the socket. */
  framing: Framing;
  /** Pad each result with a string of this many bytes. */
  hugeReplyBytes?: number;
  /** Close the connection when a request arrives, without replying. */
  closeOnRequest: boolean;
  tamper?: Tamper;
}

function defaultFaults(): Faults {
  // Every optional fault named too, so resetFaults() clears it (Object.assign skips a key that is absent).
  return { delayMs: 0, silent: false, garbage: false, error: undefined, errorFor: {}, framing: 'cln', hugeReplyBytes: undefined, closeOnRequest: false, tamper: undefined };
}

class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

interface StoredInvoice {
  label: string;
  kind: 'bolt11' | 'bolt12';
  invoice: string;
  /** The DevWallet invoice that holds the preimage (for bolt12: hidden). */
  bolt11: string;
  paymentHash: string;
  amountMsat: number;
  description: string;
  expiresAt: number;
  createdIndex: number;
  localOfferId?: string;
  payerNote?: string;
}

export interface CallRecord {
  transport: 'rpc' | 'rest';
  method: string;
  params: Record<string, unknown>;
  id?: unknown;
}

export interface ClnPeerOptions {
  network?: Bolt12Network;
  /** Start the clnrest HTTPS front too. */
  rest?: boolean;
  /** The rune clnrest accepts (default: random). */
  rune?: string;
}

const PARAMS: Record<string, { required: string[]; optional: string[] }> = {
  getinfo: { required: [], optional: [] },
  invoice: {
    required: ['amount_msat', 'label', 'description'],
    optional: ['expiry', 'fallbacks', 'preimage', 'exposeprivatechannels', 'cltv', 'deschashonly'],
  },
  listinvoices: { required: [], optional: ['label', 'invstring', 'payment_hash', 'offer_id', 'index', 'start', 'limit'] },
  listoffers: { required: [], optional: ['offer_id', 'active_only'] },
  fetchinvoice: {
    required: ['offer'],
    optional: ['amount_msat', 'quantity', 'recurrence_counter', 'recurrence_start', 'recurrence_label', 'timeout', 'payer_note', 'payer_metadata', 'bip353'],
  },
};

function parseMsatParam(v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+)(msat)?$/.exec(v) ?? /^(\d+)sat$/.exec(v);
    if (m) return Number(m[1]) * (v.endsWith('sat') && !v.endsWith('msat') ? 1000 : 1);
  }
  throw new RpcFailure(-32602, `'amount_msat': should be a millisatoshi amount: invalid token '${JSON.stringify(v)}'`);
}

export class ClnPeer {
  readonly dir: string;
  readonly socketPath: string;
  readonly wallet: DevWallet;
  readonly nodeSecret: Buffer;
  readonly nodeId: string;
  readonly network: Bolt12Network;
  readonly faults: Faults = defaultFaults();
  readonly calls: CallRecord[] = [];
  /** Total unix-socket connections accepted. */
  connectionsAccepted = 0;
  restUrl?: string;
  caPem?: string;
  caPath?: string;
  readonly rune: string;

  private server?: net.Server;
  private rest?: https.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly invoices = new Map<string, StoredInvoice>();
  private readonly labels = new Set<string>();
  private readonly offers = new Map<string, { bolt12: string; active: boolean; description?: string }>();
  /** Other nodes "reachable" over onion messages: node id hex → secret. */
  private readonly foreignNodes = new Map<string, Buffer>();
  /** Invoices issued by foreign nodes (not in our listinvoices), by payment hash. */
  private readonly foreignInvoices = new Map<string, string>();
  private createdIndex = 0;
  private coalesceQueue: Array<{ sock: net.Socket; text: string }> = [];
  private coalesceTimer?: NodeJS.Timeout;
  private readonly splitChains = new WeakMap<net.Socket, Promise<void>>();

  private constructor(dir: string, opts: ClnPeerOptions) {
    this.dir = dir;
    this.socketPath = join(dir, 'lightning-rpc');
    this.wallet = DevWallet.open(join(dir, 'wallet'));
    // The wallet's node key signs BOLT11; the peer uses the same key as its node id for BOLT12.
    this.nodeSecret = Buffer.from(readFileSync(join(dir, 'wallet', 'dev-node.key'), 'utf8').trim(), 'hex');
    this.nodeId = pubkeyOf(this.nodeSecret).toString('hex');
    this.network = opts.network ?? 'regtest';
    this.rune = opts.rune ?? randomBytes(36).toString('base64url');
  }

  static async start(opts: ClnPeerOptions = {}): Promise<ClnPeer> {
    const dir = mkdtempSync(join(tmpdir(), 'cln-peer-'));
    const peer = new ClnPeer(dir, opts);
    try {
      await peer.up();
      if (opts.rest) await peer.startRest();
    } catch (e) {
      await peer.stop();
      throw e;
    }
    return peer;
  }

  /** Starts (again) listening on the unix socket. */
  async up(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((sock) => this.onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  /** Stops listening, drops every connection and removes the socket file (lightningd is gone). */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.dropConnections();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }

  /** Destroys every open RPC connection (the client must reconnect). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  resetFaults(): void {
    Object.assign(this.faults, defaultFaults());
  }

  /** Test control: pays an invoice this node (or a foreign node it simulates) issued; returns the preimage. */
  settle(invoice: string): Buffer {
    const inv = invoice.trim().toLowerCase();
    if (inv.startsWith('lni1')) {
      const hash = readTlvStream(decodeBolt12String(inv, 'lni').bytes).find((r) => r.type === 168n)?.value.toString('hex');
      const stored = hash ? this.invoices.get(hash) : undefined;
      const hidden = stored?.bolt11 ?? (hash ? this.foreignInvoices.get(hash) : undefined);
      if (!hidden) throw new Error('cln-peer: unknown BOLT12 invoice');
      return this.wallet.pay(hidden);
    }
    return this.wallet.pay(inv);
  }

  /** Creates an offer of this node (as CLN's `offer` command would) and returns it. */
  createOffer(spec: Omit<OfferSpec, 'issuerSecret'> & { active?: boolean } = {}): string {
    const bolt12 = buildOffer({ chains: [this.network], ...spec, issuerSecret: this.nodeSecret });
    this.offers.set(offerId(bolt12).toString('hex'), { bolt12, active: spec.active ?? true, description: spec.description });
    return bolt12;
  }

  /** An offer of another node this one can reach (fetchinvoice works, listinvoices will not see it). */
  foreignOffer(spec: Omit<OfferSpec, 'issuerSecret'> = {}): string {
    const secret = Buffer.from(secp256k1.utils.randomSecretKey());
    this.foreignNodes.set(pubkeyOf(secret).toString('hex'), secret);
    return buildOffer({ chains: [this.network], ...spec, issuerSecret: secret });
  }

  async startRest(): Promise<void> {
    const keyPath = join(this.dir, 'key.pem');
    this.caPath = join(this.dir, 'ca.pem');
    // A self-signed certificate for the names CLN's own generator uses (cln, localhost, the IP).
    const openssl = requireTool('openssl');
    if (!openssl) throw new Error('cln-peer: openssl is needed to make the clnrest certificate (apt-get install openssl)');
    execFileSync(
      openssl,
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', this.caPath,
        '-days', '2', '-subj', '/CN=cln rest server', '-addext', 'subjectAltName=DNS:cln,DNS:localhost,IP:127.0.0.1',
      ],
      { stdio: 'ignore', timeout: 10_000 },
    );
    this.caPem = readFileSync(this.caPath, 'utf8');
    const rest = https.createServer({ key: readFileSync(keyPath), cert: this.caPem }, (req, res) => void this.onRest(req, res));
    await new Promise<void>((resolve, reject) => {
      rest.once('error', reject);
      rest.listen(0, '127.0.0.1', () => {
        rest.off('error', reject);
        resolve();
      });
    });
    const addr = rest.address() as net.AddressInfo;
    this.rest = rest;
    this.restUrl = `https://127.0.0.1:${addr.port}`;
  }

  async stop(): Promise<void> {
    clearTimeout(this.coalesceTimer);
    await this.down();
    const rest = this.rest;
    this.rest = undefined;
    if (rest) {
      rest.closeAllConnections();
      await new Promise<void>((resolve) => rest.close(() => resolve()));
    }
    await this.wallet.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- unix socket ---------------------------------------------------------------------------

  private onConnection(sock: net.Socket): void {
    this.connectionsAccepted++;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    // lightningd parses requests as they stream in; several may share one chunk.
    const parser = new JsonObjectStream(1024 * 1024, (req) => void this.onRpcRequest(sock, req));
    sock.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch {
        sock.destroy();
      }
    });
  }

  private async onRpcRequest(sock: net.Socket, req: unknown): Promise<void> {
    const r = (typeof req === 'object' && req !== null ? req : {}) as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    if (this.faults.closeOnRequest) {
      sock.destroy();
      return;
    }
    const id = r.id;
    let reply: Record<string, unknown>;
    if (r.jsonrpc !== '2.0' || (typeof id !== 'string' && typeof id !== 'number') || typeof r.method !== 'string') {
      reply = { jsonrpc: '2.0', id: id ?? null, error: { code: -32600, message: 'Invalid request' } };
    } else {
      const params = (r.params ?? {}) as Record<string, unknown>;
      this.calls.push({ transport: 'rpc', method: r.method, params, id });
      try {
        reply = { jsonrpc: '2.0', id, result: await this.dispatch(r.method, params) };
      } catch (e) {
        const f = e instanceof RpcFailure ? e : new RpcFailure(-1, (e as Error).message);
        reply = { jsonrpc: '2.0', id, error: { code: f.code, message: f.message } };
      }
    }
    await this.beforeReply();
    if (this.faults.silent || sock.destroyed) return;
    if (this.faults.garbage) {
      sock.write('HTTP/1.1 400 Bad Request\r\n\r\n<html>not json</html>');
      return;
    }
    this.writeFramed(sock, JSON.stringify(reply));
  }

  private async beforeReply(): Promise<void> {
    if (this.faults.delayMs > 0) await sleep(this.faults.delayMs);
  }

  private writeFramed(sock: net.Socket, text: string): void {
    switch (this.faults.framing) {
      case 'cln':
        sock.write(text + '\n\n');
        return;
      case 'bare':
        sock.write(text);
        return;
      case 'split': {
        // Tiny writes (which also cut multi-byte UTF-8 characters apart), spread over ticks; one
        // reply at a time per connection so concurrent replies do not interleave.
        const bytes = Buffer.from(text + '\n\n');
        const prev = this.splitChains.get(sock) ?? Promise.resolve();
        const next = prev.then(async () => {
          for (let off = 0; off < bytes.length && !sock.destroyed; off += 3) {
            sock.write(bytes.subarray(off, off + 3));
            await new Promise((r) => setImmediate(r));
          }
        });
        this.splitChains.set(sock, next);
        return;
      }
      case 'coalesce': {
        // Hold replies until two are ready (or 200 ms passed), then send them in ONE write.
        this.coalesceQueue.push({ sock, text });
        const flush = (): void => {
          clearTimeout(this.coalesceTimer);
          this.coalesceTimer = undefined;
          const q = this.coalesceQueue;
          this.coalesceQueue = [];
          const bySock = new Map<net.Socket, string[]>();
          for (const { sock: s, text: t } of q) bySock.set(s, [...(bySock.get(s) ?? []), t]);
          for (const [s, texts] of bySock) if (!s.destroyed) s.write(texts.join('')); // no delimiter between them
        };
        if (this.coalesceQueue.length >= 2) flush();
        else this.coalesceTimer ??= setTimeout(flush, 200);
        return;
      }
    }
  }

  // ---- clnrest -------------------------------------------------------------------------------

  private async onRest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: unknown): void => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/html' : 'application/json' });
      res.end(text);
    };
    const m = /^\/v1\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    if (!m) return send(404, { code: -32601, message: 'Path invalid, version missing for CLN methods' });
    if (req.method !== 'POST') return send(405, { code: -32601, message: 'method not allowed' });
    const method = m[1]!;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 1024 * 1024) return send(413, { code: -32600, message: 'body too large' });
      chunks.push(c as Buffer);
    }
    const rune = req.headers['rune'];
    if (typeof rune !== 'string') return send(403, { code: 1501, message: 'Not authorized: Missing rune' });
    if (!this.runeMatches(rune)) return send(401, { code: 1502, message: 'Rune is not valid' });
    let params: Record<string, unknown> = {};
    const text = Buffer.concat(chunks).toString('utf8');
    if (text) {
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        params = parsed as Record<string, unknown>;
      } catch {
        return send(500, { code: -32700, message: `Could not parse \`${text.slice(0, 40)}\` as JSON request` });
      }
    }
    this.calls.push({ transport: 'rest', method, params });
    let status = 201;
    let body: unknown;
    try {
      body = await this.dispatch(method, params);
    } catch (e) {
      const f = e instanceof RpcFailure ? e : new RpcFailure(-1, (e as Error).message);
      status = f.code === -32601 ? 404 : 500;
      body = { code: f.code, message: f.message };
    }
    await this.beforeReply();
    if (this.faults.silent || res.destroyed) return;
    if (this.faults.garbage) return send(201, '<html>not json</html>');
    send(status, body);
  }

  private runeMatches(given: string): boolean {
    // Hash both sides: equal-length inputs for timingSafeEqual, and no early exit on length.
    return timingSafeEqual(sha256(Buffer.from(given)), sha256(Buffer.from(this.rune)));
  }

  // ---- methods -------------------------------------------------------------------------------

  private async dispatch(method: string, params: Record<string, unknown>): Promise<unknown> {
    const f = this.faults.errorFor[method] ?? this.faults.error;
    if (f) throw new RpcFailure(f.code, f.message);
    const spec = PARAMS[method];
    if (!spec) throw new RpcFailure(-32601, `Unknown command '${method}'`);
    if (Array.isArray(params)) throw new RpcFailure(-32602, 'this peer only takes named parameters');
    for (const k of Object.keys(params)) {
      if (!spec.required.includes(k) && !spec.optional.includes(k)) throw new RpcFailure(-32602, `unknown parameter: ${k}`);
    }
    for (const k of spec.required) if (params[k] === undefined) throw new RpcFailure(-32602, `missing required parameter: ${k}`);
    let result: Record<string, unknown>;
    switch (method) {
      case 'getinfo':
        result = this.getinfo();
        break;
      case 'invoice':
        result = await this.invoice(params);
        break;
      case 'listinvoices':
        result = await this.listinvoices(params);
        break;
      case 'listoffers':
        result = this.listoffers(params);
        break;
      case 'fetchinvoice':
        result = await this.fetchinvoice(params);
        break;
      default:
        throw new RpcFailure(-32601, `Unknown command '${method}'`);
    }
    if (this.faults.hugeReplyBytes) result = { ...result, padding: 'x'.repeat(this.faults.hugeReplyBytes) };
    return result;
  }

  private getinfo(): Record<string, unknown> {
    return {
      id: this.nodeId,
      alias: 'cln-peer ünïcødé ⚡',
      color: '0a0b0c',
      num_peers: 0,
      num_pending_channels: 0,
      num_active_channels: 0,
      num_inactive_channels: 0,
      address: [],
      binding: [{ type: 'local socket', socket: this.socketPath }],
      version: 'v25.09-peer',
      blockheight: 321,
      network: this.network,
      fees_collected_msat: 0,
      'lightning-dir': join(this.dir, this.network),
      our_features: { init: '08a0882a0a69a2', node: '88a0882a0a69a2', channel: '', invoice: '02000002024100' },
    };
  }

  private async invoice(p: Record<string, unknown>): Promise<Record<string, unknown>> {
    const amountMsat = parseMsatParam(p.amount_msat);
    if (amountMsat === 0) throw new RpcFailure(-32602, "'amount_msat': should be positive msat or 'any'");
    const label = p.label;
    if (typeof label !== 'string' && typeof label !== 'number') throw new RpcFailure(-32602, "'label': should be a string or integer");
    if (typeof p.description !== 'string') throw new RpcFailure(-32602, "'description': should be a string");
    const expiry = p.expiry === undefined ? 604800 : p.expiry;
    if (typeof expiry !== 'number' || !Number.isSafeInteger(expiry) || expiry <= 0) throw new RpcFailure(-32602, "'expiry': should be an unsigned 64 bit integer");
    if (this.labels.has(String(label))) throw new RpcFailure(900, `Duplicate label '${String(label)}'`);
    const tamperAmount = this.faults.tamper === 'amount' ? 1000 : 0;
    const created = await this.wallet.createInvoice({ amountMsat: amountMsat + tamperAmount, memo: p.description, expirySecs: expiry });
    this.labels.add(String(label));
    const hash = created.paymentHash.toString('hex');
    const stored: StoredInvoice = {
      label: String(label), kind: 'bolt11', invoice: created.bolt11, bolt11: created.bolt11, paymentHash: hash, amountMsat,
      description: p.description, expiresAt: created.expiresAt, createdIndex: ++this.createdIndex,
    };
    this.invoices.set(hash, stored);
    const secret = lightBolt11.decode(created.bolt11).sections.find((s) => s.name === 'payment_secret') as { value: string } | undefined;
    const result: Record<string, unknown> = {
      payment_hash: hash,
      expires_at: created.expiresAt,
      bolt11: created.bolt11,
      payment_secret: secret?.value ?? randomBytes(32).toString('hex'),
      created_index: stored.createdIndex,
    };
    if (this.faults.tamper === 'payment_hash') result.payment_hash = randomBytes(32).toString('hex');
    if (this.faults.tamper === 'bolt11') result.bolt11 = 'lnbcrt1notaninvoice';
    if (this.faults.tamper === 'expires_at') result.expires_at = 'soon';
    if (this.faults.tamper === 'expires_at_far') result.expires_at = 2 ** 43 + 1e12;
    if (this.faults.tamper === 'expires_at_late') result.expires_at = Math.floor(Date.now() / 1000) + 6 * 86400;
    return result;
  }

  private async entry(inv: StoredInvoice): Promise<Record<string, unknown>> {
    const state = await this.wallet.lookupInvoice(Buffer.from(inv.paymentHash, 'hex'));
    const e: Record<string, unknown> = {
      label: inv.label,
      [inv.kind]: inv.invoice,
      payment_hash: inv.paymentHash,
      amount_msat: inv.amountMsat,
      status: state.state === 'settled' ? 'paid' : state.state === 'expired' ? 'expired' : 'unpaid',
      description: inv.description,
      expires_at: inv.expiresAt,
      created_index: inv.createdIndex,
    };
    if (inv.localOfferId) e.local_offer_id = inv.localOfferId;
    if (inv.payerNote) e.invreq_payer_note = inv.payerNote;
    if (state.state === 'settled') {
      Object.assign(e, {
        pay_index: inv.createdIndex,
        amount_received_msat: inv.amountMsat,
        paid_at: Math.floor(Date.now() / 1000),
        payment_preimage: state.preimage.toString('hex'),
        updated_index: inv.createdIndex,
      });
    }
    if (this.faults.tamper === 'preimage' && state.state === 'settled') e.payment_preimage = randomBytes(32).toString('hex');
    if (this.faults.tamper === 'underpaid' && state.state === 'settled') e.amount_received_msat = inv.amountMsat - 1000;
    if (this.faults.tamper === 'status') e.status = 'confused';
    return e;
  }

  private async listinvoices(p: Record<string, unknown>): Promise<Record<string, unknown>> {
    let list = [...this.invoices.values()];
    if (p.payment_hash !== undefined) {
      if (typeof p.payment_hash !== 'string' || !/^[0-9a-f]{64}$/i.test(p.payment_hash)) throw new RpcFailure(-32602, "'payment_hash': should be a hex string");
      list = list.filter((i) => i.paymentHash === (p.payment_hash as string).toLowerCase());
    }
    if (p.label !== undefined) list = list.filter((i) => i.label === String(p.label));
    if (p.invstring !== undefined) list = list.filter((i) => i.invoice === String(p.invstring).toLowerCase());
    if (p.offer_id !== undefined) list = list.filter((i) => i.localOfferId === p.offer_id);
    return { invoices: await Promise.all(list.map((i) => this.entry(i))) };
  }

  private listoffers(p: Record<string, unknown>): Record<string, unknown> {
    const out = [];
    for (const [id, o] of this.offers) {
      if (p.offer_id !== undefined && p.offer_id !== id) continue;
      if (p.active_only === true && !o.active) continue;
      out.push({ offer_id: id, active: o.active, single_use: false, force_paths: false, bolt12: o.bolt12, used: false, ...(o.description ? { description: o.description } : {}) });
    }
    return { offers: out };
  }

  private async fetchinvoice(p: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (typeof p.offer !== 'string') throw new RpcFailure(-32602, "'offer': should be a string");
    let records: TlvRecord[];
    try {
      records = readTlvStream(decodeBolt12String(p.offer, 'lno').bytes);
    } catch (e) {
      throw new RpcFailure(-32602, `'offer': Unparsable offer: ${(e as Error).message}`);
    }
    const field = (t: bigint): Buffer | undefined => records.find((r) => r.type === t)?.value;
    const tu = (b: Buffer | undefined): bigint | undefined => (b ? b.reduce((n, x) => (n << 8n) | BigInt(x), 0n) : undefined);
    const expiry = tu(field(14n));
    if (expiry !== undefined && Date.now() / 1000 > Number(expiry)) throw new RpcFailure(1002, 'Offer expired');
    const offerAmount = tu(field(8n));
    const msat = p.amount_msat === undefined ? undefined : BigInt(parseMsatParam(p.amount_msat));
    if (offerAmount === undefined && msat === undefined) throw new RpcFailure(-32602, 'amount_msat parameter required');
    const quantityMax = tu(field(20n));
    const quantity = p.quantity === undefined ? undefined : BigInt(p.quantity as number);
    if (quantityMax !== undefined && !quantity) throw new RpcFailure(-32602, 'quantity parameter required');
    if (quantityMax === undefined && quantity !== undefined) throw new RpcFailure(-32602, 'quantity parameter unnecessary');
    const chains = field(2n);
    const ourChain = Buffer.from(CHAIN_HASHES[this.network], 'hex');
    const chainOk = chains ? [...Array(chains.length / 32).keys()].some((i) => chains.subarray(i * 32, i * 32 + 32).equals(ourChain)) : this.network === 'bitcoin';
    if (!chainOk) throw new RpcFailure(-32602, `'offer': does not support our chain ${this.network}`);

    // The issuer's side of the exchange.
    const issuerId = field(22n)?.toString('hex');
    const own = issuerId === this.nodeId;
    const issuerSecret = own ? this.nodeSecret : issuerId ? this.foreignNodes.get(issuerId) : undefined;
    if (!issuerSecret) throw new RpcFailure(1003, 'Failed: could not route or connect to the offer issuer');
    const id = offerId(p.offer).toString('hex');
    if (own) {
      const o = this.offers.get(id);
      if (!o || !o.active) throw new RpcFailure(1004, 'Remote node sent failure message: Unknown offer');
    }
    const perItem = offerAmount ?? 0n;
    const expected = perItem * (quantity ?? 1n);
    const amount = msat ?? expected;
    if (amount < expected) throw new RpcFailure(1004, 'Remote node sent failure message: Amount must be at least ' + String(expected));
    if (amount > BigInt(Number.MAX_SAFE_INTEGER)) throw new RpcFailure(-32602, 'amount too large for this peer');
    const payerNote = typeof p.payer_note === 'string' && p.payer_note ? p.payer_note : undefined;
    const relativeExpiry = 7200;
    // The DevWallet holds the preimage; the BOLT12 invoice borrows its payment hash.
    const hidden = await this.wallet.createInvoice({ amountMsat: Number(amount), memo: 'bolt12', expirySecs: relativeExpiry });
    const now = Math.floor(Date.now() / 1000);
    let invAmount = amount;
    let invreqAmount = msat;
    if (this.faults.tamper === 'invoice_amount') {
      invAmount = amount + 1n;
      invreqAmount = amount + 1n;
    }
    let offerRecords = records;
    if (this.faults.tamper === 'invoice_offer') {
      // Same issuer, different offer: a correctly signed invoice for the wrong thing.
      const other = buildOffer({ issuerSecret, chains: [this.network], description: 'some other offer' });
      offerRecords = readTlvStream(decodeBolt12String(other, 'lno').bytes);
    }
    let invoice = buildInvoice({
      offerRecords,
      chain: this.faults.tamper === 'invoice_chain' ? 'signet' : this.network,
      invreqAmountMsat: invreqAmount,
      quantity,
      payerNote,
      amountMsat: invAmount,
      paymentHash: hidden.paymentHash,
      createdAt: this.faults.tamper === 'invoice_expired' ? now - 10 * relativeExpiry : now,
      relativeExpiry: this.faults.tamper === 'invoice_expired' ? relativeExpiry : undefined,
      nodeSecret: issuerSecret,
    });
    if (this.faults.tamper === 'invoice_signature') {
      const bytes = decodeBolt12String(invoice, 'lni').bytes;
      bytes[bytes.length - 1]! ^= 0x01; // last byte of the signature
      invoice = encodeBolt12('lni', bytes);
    }
    const hash = hidden.paymentHash.toString('hex');
    if (own) {
      this.invoices.set(hash, {
        label: `${id}-${randomBytes(8).toString('hex')}-0`, kind: 'bolt12', invoice, bolt11: hidden.bolt11, paymentHash: hash,
        amountMsat: Number(amount), description: this.offers.get(id)?.description ?? '', expiresAt: now + relativeExpiry,
        createdIndex: ++this.createdIndex, localOfferId: id, payerNote,
      });
    } else {
      this.foreignInvoices.set(hash, hidden.bolt11);
    }
    return { invoice: this.faults.tamper === 'invoice_not_string' ? 42 : invoice, changes: {} };
  }
}

export function startClnPeer(opts: ClnPeerOptions = {}): Promise<ClnPeer> {
  return ClnPeer.start(opts);
}
