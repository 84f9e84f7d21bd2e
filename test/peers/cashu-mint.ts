// A Cashu mint for tests, speaking the real HTTP API (NUT-00..09, 11, 12) on loopback. Every signature is
// real BDHKE with per-amount keys (cashu-ts primitives), outputs carry DLEQ proofs, spent proofs are
// tracked by Y, P2PK witnesses are checked per NUT-11, and Lightning goes through DevWallets: mint
// quotes are DevWallet invoices a test "pays", melts settle the payee's DevWallet invoice.
// One process, one thread: each request handler checks and updates state without awaiting in between,
// so double spends race exactly as they would against a real mint's database transaction.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import {
  Amount,
  Wallet,
  createBlindSignature,
  createDLEQProof,
  createNewMintKeys,
  hashToCurve,
  pointFromHex,
  verifyP2PKSpendingConditions,
  verifyUnblindedSignature,
  type Proof,
} from '@cashu/cashu-ts';
import lightBolt11 from 'light-bolt11-decoder';
import { DevWallet, DevWalletError } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

export interface MintPeerOptions {
  /** Directory for the mint's own DevWallet (the node that receives mint-quote payments). */
  dataDir: string;
  unit?: string;
  /** NUT-02 input fee of the first keyset, parts per thousand per input. */
  inputFeePpk?: number;
  /** Keyset id version: 1 (v2 ids, "01…", default) or 0 (legacy "00…"). */
  keysetVersion?: 0 | 1;
  /** Advertise and enforce NUT-11 (default true). */
  p2pk?: boolean;
  /** Lightning nodes whose invoices a melt can pay (by settling them). */
  payees?: DevWallet[];
  /** Melt fee reserve in sat for an amount (default max(2, 2%)). */
  feeReserve?: (amount: number) => number;
  /** Fee actually charged for a melt payment, <= reserve (default 1). */
  feePaid?: number;
}

interface MintKeyset {
  id: string;
  unit: string;
  active: boolean;
  fee: number;
  pub: Record<string, string>;
  priv: Record<string, Uint8Array>;
}

interface Sig {
  id: string;
  amount: number;
  C_: string;
  dleq: { e: string; s: string };
}

interface MintQuote {
  quote: string;
  request: string;
  paymentHash: Buffer;
  amount: number;
  unit: string;
  state: 'UNPAID' | 'PAID' | 'ISSUED';
  expiry: number;
}

interface MeltQuote {
  quote: string;
  request: string;
  amount: number;
  fee_reserve: number;
  unit: string;
  state: 'UNPAID' | 'PENDING' | 'PAID';
  expiry: number;
  payment_preimage: string | null;
}

class MintError extends Error {
  constructor(readonly code: number, readonly detail: string) {
    super(detail);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const now = () => Math.floor(Date.now() / 1000);

/** A swap answer's signatures, rewritten the way a faulty or lying mint would (knobs.tamperSwapAnswer). */
function tamperSignatures(sigs: Sig[], how: 'drop-one' | 'extra' | 'amounts' | 'bad-dleq' | 'bad-C'): Sig[] {
  const out = sigs.map((x) => ({ ...x, dleq: { ...x.dleq } }));
  const first = out[0]!;
  if (how === 'drop-one') return out.slice(1);
  if (how === 'extra') return [...out, { ...first, dleq: { ...first.dleq } }];
  if (how === 'amounts') first.amount *= 2;
  if (how === 'bad-dleq') first.dleq.s = (first.dleq.s[0] === '0' ? '1' : '0') + first.dleq.s.slice(1);
  // Another point on the curve (the generator's double): a signature that does not unblind to the mint's.
  if (how === 'bad-C') first.C_ = '02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5';
  return out;
}

function num(v: unknown, what: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new MintError(11006, `${what} is not a valid amount`);
  return n;
}

/** Powers of two summing to `v` (largest first). */
function split(v: number): number[] {
  const out: number[] = [];
  for (let bit = 52; bit >= 0; bit--) {
    const a = 2 ** bit;
    if (v >= a) {
      out.push(a);
      v -= a;
    }
  }
  return out;
}

export class CashuMintPeer {
  readonly url: string;
  /** The mint's own Lightning node: mint quotes are its invoices. */
  readonly node: DevWallet;
  readonly keysets = new Map<string, MintKeyset>();
  /** Y (compressed hex) → spent. */
  readonly spent = new Set<string>();
  readonly pending = new Set<string>();
  /** B_ → signature, for NUT-09 restore and the "already signed" rule. */
  readonly signed = new Map<string, Sig>();
  readonly mintQuotes = new Map<string, MintQuote>();
  readonly meltQuotes = new Map<string, MeltQuote>();
  /** Test knobs, changeable at any time. */
  readonly knobs = {
    /** Delay before a swap is processed (the swap still happens after the delay). */
    swapDelayMs: 0,
    /** Delay before a melt is processed (the payment still happens after the delay). */
    meltDelayMs: 0,
    /**
     * Cut the connection of the next swap instead of answering: 'before' processing it (nothing happens)
     * or 'after' (the swap is done and signed, but the wallet never sees the answer). Resets itself.
     */
    loseSwapAnswer: undefined as 'before' | 'after' | undefined,
    /**
     * Do the next swap, then answer it with this instead of the signatures (a proxy's 502 after the mint
     * committed, or a body the wallet cannot use). Resets itself.
     */
    replaceSwapAnswer: undefined as { status: number; body: unknown } | undefined,
    /**
     * Do the next swap, then answer it with its real signatures rewritten (resets itself): `drop-one` (one
     * signature fewer), `extra` (one more, a copy), `amounts` (the first signature claims twice its amount),
     * `bad-dleq` (the first DLEQ proof's `s` changed), `bad-C` (the first C_ is another valid point).
     */
    tamperSwapAnswer: undefined as 'drop-one' | 'extra' | 'amounts' | 'bad-dleq' | 'bad-C' | undefined,
    /**
     * Melt quotes that lie (until cleared): `amount` quotes 5 sat more than the invoice is for (the melt then keeps
     * them out of the change), `request` quotes another invoice of the same amount (one of the mint's own node).
     */
    tamperMeltQuote: undefined as 'amount' | 'request' | undefined,
    /** Answer every request with HTTP 500. */
    broken: false,
    /** Count of requests per path. */
    requests: new Map<string, number>(),
  };
  private readonly unit: string;
  private readonly p2pk: boolean;
  private readonly payees: DevWallet[];
  private readonly feeReserve: (amount: number) => number;
  private readonly feePaid: number;
  private readonly keysetVersion: 0 | 1;
  private readonly pubkey: string;

  private constructor(private readonly server: Server, opts: MintPeerOptions, node: DevWallet) {
    const addr = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}`;
    this.node = node;
    this.unit = opts.unit ?? 'sat';
    this.p2pk = opts.p2pk ?? true;
    this.payees = opts.payees ?? [];
    this.feeReserve = opts.feeReserve ?? ((a) => Math.max(2, Math.ceil(a * 0.02)));
    this.feePaid = opts.feePaid ?? 1;
    this.keysetVersion = opts.keysetVersion ?? 1;
    this.pubkey = '02' + randomBytes(32).toString('hex');
    this.addKeyset(opts.inputFeePpk ?? 0);
  }

  static async start(opts: MintPeerOptions): Promise<CashuMintPeer> {
    const node = DevWallet.open(opts.dataDir);
    let peer: CashuMintPeer | undefined;
    const server = createServer((req, res) => {
      void peer!.handle(req, res);
    });
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    peer = new CashuMintPeer(server, opts, node);
    return peer;
  }

  /** Adds a keyset (it becomes the active one for its unit; older ones stay valid for inputs). */
  addKeyset(inputFeePpk: number, unit = this.unit): MintKeyset {
    const pair = createNewMintKeys(16, randomBytes(32), { input_fee_ppk: inputFeePpk, unit, versionByte: this.keysetVersion });
    for (const k of this.keysets.values()) if (k.unit === unit) k.active = false;
    const ks: MintKeyset = {
      id: pair.keysetId,
      unit,
      active: true,
      fee: inputFeePpk,
      pub: Object.fromEntries(Object.entries(pair.pubKeys).map(([a, k]) => [a, hex(k)])),
      priv: pair.privKeys,
    };
    this.keysets.set(ks.id, ks);
    return ks;
  }

  /**
   * Changes the input fee of every keyset of a unit in place, as a mint operator can for keysets with legacy
   * ("00") ids, which do not commit to the fee (a v2 id does: its keys would no longer match it).
   */
  setInputFee(inputFeePpk: number, unit = this.unit): void {
    for (const k of this.keysets.values()) if (k.unit === unit) k.fee = inputFeePpk;
  }

  activeKeyset(unit = this.unit): MintKeyset {
    return [...this.keysets.values()].find((k) => k.active && k.unit === unit)!;
  }

  /** Marks a mint quote's invoice paid, as the payer's node would. */
  payMintQuote(quoteId: string): void {
    const q = this.mintQuotes.get(quoteId);
    if (!q) throw new Error(`no mint quote ${quoteId}`);
    this.node.pay(q.request);
  }

  /** A real cashu-ts wallet holding `amount` freshly minted here (the test pays the mint quote's invoice). */
  async fundedWallet(amount: number): Promise<{ wallet: Wallet; proofs: Proof[] }> {
    const wallet = new Wallet(this.url, { unit: this.unit });
    await wallet.loadMint();
    const quote = await wallet.createMintQuoteBolt11(amount);
    this.payMintQuote(quote.quote);
    const proofs = await wallet.mintProofsBolt11(amount, quote.quote);
    return { wallet, proofs };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    await this.node.close();
  }

  // ---- HTTP --------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    this.knobs.requests.set(path, (this.knobs.requests.get(path) ?? 0) + 1);
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      if (this.knobs.broken) return send(500, { detail: 'internal error' });
      let body: Record<string, unknown> = {};
      if (req.method === 'POST') {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of req) {
          size += (c as Buffer).length;
          if (size > 1_000_000) throw new MintError(10000, 'request too large');
          chunks.push(c as Buffer);
        }
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          throw new MintError(10000, 'invalid JSON');
        }
      }
      const route = `${req.method} ${path}`;
      let m: RegExpExecArray | null;
      if (route === 'GET /v1/info') return send(200, this.info());
      if (route === 'GET /v1/keysets') return send(200, { keysets: [...this.keysets.values()].map((k) => ({ id: k.id, unit: k.unit, active: k.active, input_fee_ppk: k.fee })) });
      if (route === 'GET /v1/keys') return send(200, { keysets: [...this.keysets.values()].filter((k) => k.active).map((k) => this.keysJson(k)) });
      if ((m = /^GET \/v1\/keys\/([0-9a-fA-F]+)$/.exec(route))) {
        const ks = this.keysets.get(m[1]!);
        if (!ks) throw new MintError(12001, 'keyset is not known');
        return send(200, { keysets: [this.keysJson(ks)] });
      }
      if (route === 'POST /v1/swap') {
        if (this.knobs.swapDelayMs > 0) await sleep(this.knobs.swapDelayMs);
        const lose = this.knobs.loseSwapAnswer;
        this.knobs.loseSwapAnswer = undefined;
        if (lose === 'after') this.swap(body);
        if (lose) return void req.socket.destroy();
        const replaced = this.knobs.replaceSwapAnswer;
        this.knobs.replaceSwapAnswer = undefined;
        if (replaced) {
          this.swap(body);
          return send(replaced.status, replaced.body);
        }
        const tamper = this.knobs.tamperSwapAnswer;
        this.knobs.tamperSwapAnswer = undefined;
        const answer = this.swap(body) as { signatures: Sig[] };
        if (tamper) answer.signatures = tamperSignatures(answer.signatures, tamper);
        return send(200, answer);
      }
      if (route === 'POST /v1/checkstate') return send(200, this.checkState(body));
      if (route === 'POST /v1/restore') return send(200, this.restore(body));
      if (route === 'POST /v1/mint/quote/bolt11') return send(200, await this.createMintQuote(body));
      if ((m = /^GET \/v1\/mint\/quote\/bolt11\/([\w-]+)$/.exec(route))) return send(200, await this.mintQuoteState(m[1]!));
      if (route === 'POST /v1/mint/bolt11') return send(200, await this.mint(body));
      if (route === 'POST /v1/melt/quote/bolt11') return send(200, await this.createMeltQuote(body));
      if ((m = /^GET \/v1\/melt\/quote\/bolt11\/([\w-]+)$/.exec(route))) {
        const q = this.meltQuotes.get(m[1]!);
        if (!q) throw new MintError(20003, 'quote not found');
        return send(200, q);
      }
      if (route === 'POST /v1/melt/bolt11') {
        if (this.knobs.meltDelayMs > 0) await sleep(this.knobs.meltDelayMs);
        return send(200, this.melt(body));
      }
      return send(404, { detail: 'not found' });
    } catch (err) {
      if (err instanceof MintError) return send(400, { code: err.code, detail: err.detail });
      return send(500, { detail: `internal error: ${(err as Error).message}` });
    }
  }

  private info() {
    const method = { method: 'bolt11', unit: this.unit, min_amount: 1, max_amount: 1_000_000 };
    return {
      name: 'l402-nginx test mint',
      pubkey: this.pubkey,
      version: 'cashu-mint-peer/1.0',
      description: 'test peer: real BDHKE, NOT real money',
      contact: [],
      nuts: {
        '4': { methods: [method], disabled: false },
        '5': { methods: [method], disabled: false },
        '7': { supported: true },
        '8': { supported: true },
        '9': { supported: true },
        '10': { supported: true },
        '11': { supported: this.p2pk },
        '12': { supported: true },
      },
    };
  }

  private keysJson(k: MintKeyset) {
    return { id: k.id, unit: k.unit, active: k.active, input_fee_ppk: k.fee, keys: k.pub };
  }

  // ---- verification and signing -------------------------------------------------------------------------

  /** Checks inputs (keyset, signature, spent state, NUT-11 witness); returns Ys and the input fee. */
  private verifyInputs(inputs: unknown): { ys: string[]; total: number; fee: number; unit: string } {
    if (!Array.isArray(inputs) || inputs.length === 0) throw new MintError(11002, 'no inputs');
    const ys: string[] = [];
    let total = 0;
    let ppk = 0;
    let unit: string | undefined;
    for (const raw of inputs as Array<Record<string, unknown>>) {
      const id = String(raw.id);
      const ks = this.keysets.get(id);
      if (!ks) throw new MintError(12001, 'keyset is not known');
      if (unit && unit !== ks.unit) throw new MintError(11009, 'inputs of multiple units');
      unit = ks.unit;
      const amount = num(raw.amount, 'input amount');
      const priv = ks.priv[String(amount)];
      if (!priv) throw new MintError(11006, 'input amount has no key');
      if (typeof raw.secret !== 'string' || typeof raw.C !== 'string') throw new MintError(10003, 'proof is malformed');
      const secret = new TextEncoder().encode(raw.secret);
      const Y = hashToCurve(secret).toHex(true);
      let valid = false;
      try {
        valid = verifyUnblindedSignature({ C: pointFromHex(raw.C), secret, id }, priv);
      } catch {
        valid = false;
      }
      if (!valid) throw new MintError(10003, 'token could not be verified');
      if (ys.includes(Y)) throw new MintError(11007, 'duplicate inputs provided');
      if (this.spent.has(Y)) throw new MintError(11001, 'Token already spent.');
      if (this.pending.has(Y)) throw new MintError(11002, 'Token is pending.');
      this.checkConditions(raw, raw.secret);
      ys.push(Y);
      total += amount;
      ppk += ks.fee;
    }
    return { ys, total, fee: Math.ceil(ppk / 1000), unit: unit! };
  }

  /** NUT-10/11: a P2PK secret needs a valid witness for its current spending path. */
  private checkConditions(raw: Record<string, unknown>, secret: string): void {
    let kind: unknown;
    try {
      const parsed = JSON.parse(secret) as unknown;
      kind = Array.isArray(parsed) ? parsed[0] : undefined;
    } catch {
      return; // a plain random secret
    }
    if (kind === undefined) return;
    if (kind !== 'P2PK' || !this.p2pk) {
      if (kind === 'P2PK') return; // this mint does not enforce NUT-11: anyone can spend (the spec's warning)
      throw new MintError(10003, `spending condition ${String(kind)} not supported`);
    }
    const proof = { id: String(raw.id), amount: Amount.from(num(raw.amount, 'amount')), secret, C: String(raw.C), witness: raw.witness } as Proof;
    let ok = false;
    try {
      if (secret.includes('"SIG_ALL"')) throw new Error('SIG_ALL not supported by this mint');
      ok = verifyP2PKSpendingConditions(proof).success;
    } catch {
      ok = false;
    }
    if (!ok) throw new MintError(10003, 'P2PK spending conditions not met');
  }

  /** Signs outputs (fixed amounts), with DLEQ; rejects reused B_. */
  private signOutputs(outputs: unknown, unit: string): { sigs: Sig[]; total: number } {
    if (!Array.isArray(outputs)) throw new MintError(11002, 'outputs missing');
    const seen = new Set<string>();
    for (const o of outputs as Array<Record<string, unknown>>) {
      const B = String(o.B_);
      if (seen.has(B)) throw new MintError(11008, 'duplicate outputs');
      if (this.signed.has(B)) throw new MintError(10002, 'Blinded message of output already signed');
      seen.add(B);
    }
    const sigs: Sig[] = [];
    let total = 0;
    for (const o of outputs as Array<Record<string, unknown>>) {
      const amount = num(o.amount, 'output amount');
      sigs.push(this.signOne(String(o.id), String(o.B_), amount, unit));
      total += amount;
    }
    return { sigs, total };
  }

  private signOne(id: string, Bhex: string, amount: number, unit: string): Sig {
    const ks = this.keysets.get(id);
    if (!ks) throw new MintError(12001, 'keyset is not known');
    if (!ks.active) throw new MintError(12002, 'keyset is inactive, cannot sign messages');
    if (ks.unit !== unit) throw new MintError(11010, 'inputs and outputs not of same unit');
    const priv = ks.priv[String(amount)];
    if (!priv) throw new MintError(11006, 'output amount has no key');
    let B;
    try {
      B = pointFromHex(Bhex);
    } catch {
      throw new MintError(10003, 'blinded message is not a point');
    }
    const sig = createBlindSignature(B, priv, id);
    const dleq = createDLEQProof(B, priv);
    return { id, amount, C_: sig.C_.toHex(true), dleq: { e: hex(dleq.e), s: hex(dleq.s) } };
  }

  private remember(outputs: Array<Record<string, unknown>>, sigs: Sig[]): void {
    sigs.forEach((s, i) => this.signed.set(String(outputs[i]!.B_), s));
  }

  // ---- endpoints ---------------------------------------------------------------------------------------

  /** NUT-03. */
  swap(body: Record<string, unknown>) {
    const inp = this.verifyInputs(body.inputs);
    const outputs = body.outputs as Array<Record<string, unknown>>;
    const preview = Array.isArray(outputs) ? outputs.reduce((s, o) => s + num(o.amount, 'output amount'), 0) : -1;
    if (preview !== inp.total - inp.fee) throw new MintError(11002, `transaction is not balanced (inputs ${inp.total} - fee ${inp.fee} != outputs ${preview})`);
    const { sigs } = this.signOutputs(outputs, inp.unit);
    for (const y of inp.ys) this.spent.add(y);
    this.remember(outputs, sigs);
    return { signatures: sigs };
  }

  /** NUT-07. */
  checkState(body: Record<string, unknown>) {
    const Ys = body.Ys;
    if (!Array.isArray(Ys)) throw new MintError(10000, 'Ys missing');
    return {
      states: Ys.map((y) => {
        const Y = String(y).toLowerCase();
        return { Y, state: this.spent.has(Y) ? 'SPENT' : this.pending.has(Y) ? 'PENDING' : 'UNSPENT', witness: null };
      }),
    };
  }

  /** NUT-09. */
  restore(body: Record<string, unknown>) {
    const outs = Array.isArray(body.outputs) ? (body.outputs as Array<Record<string, unknown>>) : [];
    const found = outs.filter((o) => this.signed.has(String(o.B_)));
    return { outputs: found, signatures: found.map((o) => this.signed.get(String(o.B_))!) };
  }

  /** NUT-04 quote: a real invoice from the mint's node. */
  private async createMintQuote(body: Record<string, unknown>) {
    const amount = num(body.amount, 'amount');
    const unit = String(body.unit ?? 'sat');
    if (unit !== this.unit) throw new MintError(11005, 'unit not supported');
    if (amount < 1 || amount > 1_000_000) throw new MintError(11006, 'amount outside of limit range');
    const inv = await this.node.createInvoice({ amountMsat: amount * 1000, memo: 'mint quote', expirySecs: 3600 });
    const q: MintQuote = { quote: randomBytes(16).toString('hex'), request: inv.bolt11, paymentHash: inv.paymentHash, amount, unit, state: 'UNPAID', expiry: inv.expiresAt };
    this.mintQuotes.set(q.quote, q);
    return this.mintQuoteJson(q);
  }

  private mintQuoteJson(q: MintQuote) {
    return { quote: q.quote, request: q.request, amount: q.amount, unit: q.unit, state: q.state, expiry: q.expiry };
  }

  private async refreshMintQuote(q: MintQuote): Promise<void> {
    if (q.state !== 'UNPAID') return;
    const st = await this.node.lookupInvoice(q.paymentHash);
    if (st.state === 'settled') q.state = 'PAID';
  }

  private async mintQuoteState(id: string) {
    const q = this.mintQuotes.get(id);
    if (!q) throw new MintError(20003, 'quote not found');
    await this.refreshMintQuote(q);
    return this.mintQuoteJson(q);
  }

  /** NUT-04 mint. */
  private async mint(body: Record<string, unknown>) {
    const q = this.mintQuotes.get(String(body.quote));
    if (!q) throw new MintError(20003, 'quote not found');
    await this.refreshMintQuote(q);
    if (q.state === 'UNPAID') throw new MintError(20001, 'quote request is not paid');
    if (q.state === 'ISSUED') throw new MintError(20002, 'tokens have already been issued for quote');
    const outputs = body.outputs as Array<Record<string, unknown>>;
    const want = Array.isArray(outputs) ? outputs.reduce((s, o) => s + num(o.amount, 'output amount'), 0) : -1;
    if (want !== q.amount) throw new MintError(11002, `outputs (${want}) do not match the quote amount (${q.amount})`);
    const { sigs } = this.signOutputs(outputs, q.unit);
    q.state = 'ISSUED';
    this.remember(outputs, sigs);
    return { signatures: sigs };
  }

  /** NUT-05 quote for a BOLT11 invoice (amount taken from the invoice). */
  private async createMeltQuote(body: Record<string, unknown>) {
    const request = String(body.request ?? '');
    const unit = String(body.unit ?? 'sat');
    if (unit !== this.unit) throw new MintError(11005, 'unit not supported');
    let msat: number;
    try {
      const d = lightBolt11.decode(request);
      const a = d.sections.find((s) => s.name === 'amount');
      msat = Number(a && 'value' in a ? a.value : NaN);
    } catch {
      throw new MintError(20008, 'invalid invoice');
    }
    if (!Number.isSafeInteger(msat) || msat <= 0) throw new MintError(20008, 'invoice has no amount');
    const amount = Math.ceil(msat / 1000) + (this.knobs.tamperMeltQuote === 'amount' ? 5 : 0);
    const q: MeltQuote = {
      quote: randomBytes(16).toString('hex'),
      request: this.knobs.tamperMeltQuote === 'request' ? (await this.node.createInvoice({ amountMsat: msat, memo: 'not yours', expirySecs: 600 })).bolt11 : request,
      amount,
      fee_reserve: this.feeReserve(amount),
      unit,
      state: 'UNPAID',
      expiry: now() + 3600,
      payment_preimage: null,
    };
    this.meltQuotes.set(q.quote, q);
    return q;
  }

  /** NUT-05 melt with NUT-08 change: pays by settling the payee's DevWallet invoice. */
  private melt(body: Record<string, unknown>) {
    const q = this.meltQuotes.get(String(body.quote));
    if (!q) throw new MintError(20003, 'quote not found');
    if (q.state === 'PAID') throw new MintError(20006, 'invoice already paid');
    if (q.state === 'PENDING') throw new MintError(20005, 'quote is pending');
    const inp = this.verifyInputs(body.inputs);
    const available = inp.total - inp.fee;
    if (available < q.amount + q.fee_reserve) {
      throw new MintError(11002, `not enough inputs: ${available} after fees, need ${q.amount + q.fee_reserve}`);
    }
    let preimage: Buffer | undefined;
    let lastErr = 'no route to the payee';
    for (const w of this.payees) {
      try {
        preimage = w.pay(q.request);
        break;
      } catch (err) {
        lastErr = err instanceof DevWalletError ? err.code : (err as Error).message;
        if (err instanceof DevWalletError && err.code !== 'unknown') break;
      }
    }
    if (!preimage) throw new MintError(20004, `lightning payment failed: ${lastErr}`);
    for (const y of inp.ys) this.spent.add(y);
    q.state = 'PAID';
    q.payment_preimage = preimage.toString('hex');
    // NUT-08: return the unused fee reserve as change on the blank outputs.
    const outputs = Array.isArray(body.outputs) ? (body.outputs as Array<Record<string, unknown>>) : [];
    const changeAmounts = split(available - q.amount - Math.min(this.feePaid, q.fee_reserve)).slice(0, outputs.length);
    const change = changeAmounts.map((a, i) => this.signOne(String(outputs[i]!.id), String(outputs[i]!.B_), a, inp.unit));
    this.remember(outputs.slice(0, change.length), change);
    return { ...q, change };
  }
}
