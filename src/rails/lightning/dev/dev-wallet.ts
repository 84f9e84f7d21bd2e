// Development-only Lightning backend: issues real, signed regtest BOLT11 invoices from a local
// node key and "pays" them by marking a SQLite row settled. NO real money moves, ever.
//
// State lives only on disk so that several processes (the gate and `l402d dev pay`) can share it:
//   <dataDir>/dev-node.key   32-byte secp256k1 secret, hex, mode 0600
//   <dataDir>/dev-wallet.db  SQLite (WAL) with one `invoices` table
import { createECDH, createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { readOrCreatePrivateFile } from '../../../util/private-file.js';
import { encode as bolt11Encode } from '@atomiqlabs/bolt11';
import { bech32 } from '@scure/base';
import { libsecp256k1 } from '../../../util/libsecp256k1.js';
import type { CreatedInvoice, InvoiceRequest, InvoiceState, LightningBackend } from '../backend.js';
import { decodeBolt11 } from '../codecs/bolt11.js';

/** Bitcoin regtest as @atomiqlabs/bolt11 spells it (identical to its built-in REGTESTNETWORK). */
const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1], wif: 0xef };
const HRP_PREFIX = 'lnbcrt';
const KEY_FILE = 'dev-node.key';
const DB_FILE = 'dev-wallet.db';
const MIN_FINAL_CLTV_EXPIRY = 18;
/** BOLT11 `d` field limit (10-bit data_length in 5-bit words). */
const MAX_DESCRIPTION_BYTES = 639;
/** secp256k1 group order; a secret key must be in [1, n-1]. */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

export type DevWalletErrorCode = 'unknown' | 'expired' | 'already_paid' | 'malformed';

/** Why DevWallet.pay refused an invoice. */
export class DevWalletError extends Error {
  readonly code: DevWalletErrorCode;
  constructor(code: DevWalletErrorCode, message: string) {
    super(message);
    this.name = 'DevWalletError';
    this.code = code;
  }
}

interface InvoiceRow {
  payment_hash: string;
  preimage: string;
  bolt11: string;
  amount_msat: number;
  created_at: number;
  expires_at: number;
  paid_at: number | null;
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * BOLT11 signing: the library builds the tagged fields; we sign here because the library's sign() derives
 * the node public key again for every invoice, half the cost of a challenge on the dev wallet (see
 * bench/README.md). @atomiqlabs/bolt11 stays the test oracle: its decoder recovers our key from these
 * signatures.
 */
function signBolt11(prefix: string, wordsTemp: string, nodeKey: Buffer): string {
  const words = bech32.decode(wordsTemp as `${string}1${string}`, false).words;
  // Signed data: the human-readable part, then the data words as bytes, right-padded with zero bits.
  const hash = sha256(Buffer.concat([Buffer.from(prefix, 'utf8'), Buffer.from(wordsToBytesPadded(words))]));
  // libsecp256k1: RFC 6979 nonce, low-S, the recovery id BOLT11 appends.
  const sig = libsecp256k1.ecdsaSign(hash, nodeKey);
  const sigBytes = Buffer.concat([sig.signature, Buffer.from([sig.recid])]);
  return bech32.encode(prefix, [...words, ...bech32.toWords(sigBytes)], false);
}

/** 5-bit words to bytes, the last byte padded with zero bits (BOLT11's signing rule). */
function wordsToBytesPadded(words: number[]): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const w of words) {
    acc = (acc << 5) | w;
    bits += 5;
    while (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  if (bits > 0) out.push((acc << (8 - bits)) & 0xff);
  return Uint8Array.from(out);
}

function nowSecs(): number {
  return Math.floor(Date.now() / 1000);
}

/** Trim, drop an optional `lightning:` URI scheme, lower-case (bech32 is case-insensitive). */
function normalizeBolt11(input: string): string {
  return input.trim().replace(/^lightning:/i, '').toLowerCase();
}

/** Reads the node key, creating it (0600, atomically) if missing. Returns the 32-byte secret. */
function loadOrCreateNodeKey(dataDir: string): Buffer {
  const keyPath = join(dataDir, KEY_FILE);
  // Several processes (the gate, `l402d dev pay`) may create it at once; all end up with the same key.
  const text = readOrCreatePrivateFile(keyPath, () => randomBytes(32).toString('hex') + '\n');
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new Error(`dev wallet key file ${keyPath} must contain exactly 64 hex characters (a 32-byte key); refusing to use it`);
  }
  const k = BigInt('0x' + hex);
  if (k === 0n || k >= SECP256K1_N) {
    throw new Error(`dev wallet key file ${keyPath} does not hold a valid secp256k1 secret key; refusing to use it`);
  }
  return Buffer.from(hex, 'hex');
}

/**
 * Development wallet. Every method is synchronous underneath (better-sqlite3); the
 * LightningBackend methods return promises only because the interface requires it.
 * `pay` is synchronous and returns the preimage directly.
 */
export class DevWallet implements LightningBackend {
  readonly kind = 'dev';

  private readonly dataDir: string;
  private readonly nodeKey: Buffer;
  private readonly nodePubkeyHex: string;
  private readonly db: Database.Database;
  private readonly insertStmt: Database.Statement<[string, string, string, number, number, number]>;
  private readonly selectStmt: Database.Statement<[string], InvoiceRow>;
  private readonly markPaidStmt: Database.Statement<[number, string, string, number]>;
  private readonly payAmountStmt: Database.Statement<[number, number, string, string, number, number]>;

  private constructor(dataDir: string, nodeKey: Buffer, db: Database.Database) {
    this.dataDir = dataDir;
    this.nodeKey = nodeKey;
    const ecdh = createECDH('secp256k1');
    ecdh.setPrivateKey(nodeKey);
    this.nodePubkeyHex = ecdh.getPublicKey('hex', 'compressed');
    this.db = db;
    this.insertStmt = db.prepare(
      'INSERT INTO invoices (payment_hash, preimage, bolt11, amount_msat, created_at, expires_at, paid_at) VALUES (?, ?, ?, ?, ?, ?, NULL)',
    );
    this.selectStmt = db.prepare('SELECT * FROM invoices WHERE payment_hash = ?');
    // The single-statement compare-and-set is what makes concurrent payers safe: only one UPDATE
    // can see paid_at IS NULL, the rest report changes === 0.
    this.markPaidStmt = db.prepare(
      'UPDATE invoices SET paid_at = ? WHERE payment_hash = ? AND bolt11 = ? AND paid_at IS NULL AND expires_at > ? AND amount_msat > 0',
    );
    // payInvoice: the same compare-and-set, also fixing the amount of an amountless invoice (stored as 0).
    this.payAmountStmt = db.prepare(
      'UPDATE invoices SET paid_at = ?, amount_msat = ? WHERE payment_hash = ? AND bolt11 = ? AND paid_at IS NULL AND expires_at > ? AND (amount_msat = 0 OR amount_msat = ?)',
    );
  }

  /** Opens (creating if needed) the wallet in dataDir. Throws on an unusable key file. */
  static open(dataDir: string): DevWallet {
    const dir = resolve(dataDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const nodeKey = loadOrCreateNodeKey(dir);
    const db = new Database(join(dir, DB_FILE));
    try {
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // No fsync per invoice: test money, and a challenge waiting on the disk was most of a challenge's time.
      // (WAL with NORMAL still never corrupts the file; a power cut may forget the last invoices.)
      db.pragma('synchronous = NORMAL');
      db.exec(`CREATE TABLE IF NOT EXISTS invoices (
        payment_hash TEXT PRIMARY KEY,
        preimage     TEXT NOT NULL,
        bolt11       TEXT NOT NULL,
        amount_msat  INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        paid_at      INTEGER NULL
      )`);
      return new DevWallet(dir, nodeKey, db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    signal?.throwIfAborted();
    const { amountMsat, memo, expirySecs } = req;
    if (!Number.isSafeInteger(amountMsat) || amountMsat <= 0) {
      throw new Error(`dev wallet: amountMsat must be a positive integer, got ${amountMsat}`);
    }
    const { row, created } = this.mint(amountMsat, memo, expirySecs);
    await this.insertInvoice(row);
    return created;
  }

  /**
   * An invoice with no amount (what an MPP session client gives as its return invoice): paid only through
   * payInvoice, which names the amount. Stored with amount 0 until then.
   */
  createAmountlessInvoice(req: { memo: string; expirySecs: number }): CreatedInvoice {
    const { row, created } = this.mint(undefined, req.memo, req.expirySecs);
    // Written at once (not batched like challenges): the client hands it out right away.
    this.insertStmt.run(...row);
    return created;
  }

  /** A signed invoice and the row that records it (written by the caller before the invoice is handed out). */
  private mint(amountMsat: number | undefined, memo: string, expirySecs: number): { row: [string, string, string, number, number, number]; created: CreatedInvoice } {
    if (!Number.isSafeInteger(expirySecs) || expirySecs <= 0) {
      throw new Error(`dev wallet: expirySecs must be a positive integer, got ${expirySecs}`);
    }
    if (Buffer.byteLength(memo, 'utf8') > MAX_DESCRIPTION_BYTES) {
      throw new Error(`dev wallet: memo is longer than the BOLT11 limit of ${MAX_DESCRIPTION_BYTES} bytes`);
    }

    const preimage = randomBytes(32);
    const paymentHash = sha256(preimage);
    const paymentSecret = randomBytes(32);
    const timestamp = nowSecs();
    const expiresAt = timestamp + expirySecs;

    const unsigned = bolt11Encode(
      {
        network: REGTEST,
        ...(amountMsat !== undefined ? { millisatoshis: String(amountMsat) } : {}),
        timestamp,
        tags: [
          { tagName: 'payment_hash', data: paymentHash.toString('hex') },
          { tagName: 'payment_secret', data: paymentSecret.toString('hex') },
          { tagName: 'description', data: memo },
          { tagName: 'expire_time', data: expirySecs },
          { tagName: 'min_final_cltv_expiry', data: MIN_FINAL_CLTV_EXPIRY },
          {
            tagName: 'feature_bits',
            data: {
              word_length: 3, // bits 8 and 14 fit in 15 bits
              var_onion_optin: { required: true, supported: false },
              payment_secret: { required: true, supported: false },
            },
          },
        ],
      },
      false,
    );
    const bolt11 = signBolt11(unsigned.prefix!, unsigned.wordsTemp!, this.nodeKey);
    if (!bolt11 || !bolt11.startsWith(HRP_PREFIX)) {
      throw new Error('dev wallet: BOLT11 encoder produced no regtest payment request');
    }

    return { row: [paymentHash.toString('hex'), preimage.toString('hex'), bolt11, amountMsat ?? 0, timestamp, expiresAt], created: { bolt11, paymentHash, expiresAt } };
  }

  /**
   * Invoices made in one turn of the event loop are written in one transaction at its end (one WAL append
   * for a burst of challenges). No invoice is handed out before its row is committed, so nobody can look
   * up or pay one that is not there yet.
   */
  private pending: Array<{ row: [string, string, string, number, number, number]; done: (e?: unknown) => void }> = [];
  private insertInvoice(row: [string, string, string, number, number, number]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.pending.push({ row, done: (e) => (e === undefined ? resolve() : reject(e)) }) === 1) setImmediate(this.commitInvoices);
    });
  }
  private readonly commitInvoices = (): void => {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    try {
      this.db.transaction(() => {
        for (const p of batch) this.insertStmt.run(...p.row);
      })();
    } catch (e) {
      for (const p of batch) p.done(e);
      return;
    }
    for (const p of batch) p.done();
  };

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    signal?.throwIfAborted();
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const row = this.selectStmt.get(paymentHash.toString('hex'));
    if (!row) return { state: 'unknown' };
    if (row.paid_at !== null) return { state: 'settled', preimage: Buffer.from(row.preimage, 'hex') };
    if (Date.now() / 1000 >= row.expires_at) return { state: 'expired' };
    return { state: 'open' };
  }

  /**
   * Pays one of this wallet's invoices (synchronously) and returns its 32-byte preimage.
   * Accepts the bolt11 string as issued, case-insensitively, with an optional `lightning:` prefix.
   * Throws DevWalletError: 'malformed' (not a decodable BOLT11 invoice), 'unknown' (not issued by
   * this wallet, or altered), 'expired', 'already_paid'. Safe against concurrent payers in any
   * number of processes: exactly one succeeds.
   */
  pay(bolt11: string): Buffer {
    if (typeof bolt11 !== 'string') throw new DevWalletError('malformed', 'invoice must be a string');
    const invoice = normalizeBolt11(bolt11);
    let hashHex: string;
    try {
      hashHex = decodeBolt11(invoice).paymentHash.toString('hex');
    } catch (err) {
      throw new DevWalletError('malformed', (err as Error).message);
    }

    const now = Date.now() / 1000;
    const result = this.markPaidStmt.run(nowSecs(), hashHex, invoice, now);
    const row = this.selectStmt.get(hashHex);
    if (result.changes === 1 && row) return Buffer.from(row.preimage, 'hex');
    if (row && row.bolt11 === invoice && row.paid_at === null && row.amount_msat === 0) {
      throw new DevWalletError('malformed', `invoice ${hashHex} has no amount: only payInvoice, naming one, pays it`);
    }
    return this.whyNotPaid(hashHex, invoice, row);
  }

  /**
   * LightningBackend.payInvoice: pays one of this wallet's invoices with `amountMsat` (an amountless one gets
   * exactly that amount, one with an amount must be for exactly it), once. The "payment" is the same atomic
   * compare-and-set as pay(); no money moves. Throws DevWalletError as pay() does.
   */
  async payInvoice(req: { bolt11: string; amountMsat: number }, signal?: AbortSignal): Promise<{ preimage: Buffer }> {
    signal?.throwIfAborted();
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new DevWalletError('malformed', `amount must be a positive integer of msat, got ${req.amountMsat}`);
    if (typeof req.bolt11 !== 'string') throw new DevWalletError('malformed', 'invoice must be a string');
    const invoice = normalizeBolt11(req.bolt11);
    let hashHex: string;
    let encoded: number | undefined;
    try {
      const d = decodeBolt11(invoice);
      hashHex = d.paymentHash.toString('hex');
      encoded = d.amountMsat;
    } catch (err) {
      throw new DevWalletError('malformed', (err as Error).message);
    }
    if (encoded !== undefined && encoded !== req.amountMsat) throw new DevWalletError('malformed', `invoice ${hashHex} is for ${encoded} msat, not ${req.amountMsat}`);
    const result = this.payAmountStmt.run(nowSecs(), req.amountMsat, hashHex, invoice, Date.now() / 1000, req.amountMsat);
    const row = this.selectStmt.get(hashHex);
    if (result.changes === 1 && row) return { preimage: Buffer.from(row.preimage, 'hex') };
    return this.whyNotPaid(hashHex, invoice, row);
  }

  /** msat an invoice of this wallet was paid with; undefined while unpaid or unknown. */
  paidMsat(paymentHash: Buffer): number | undefined {
    const row = this.selectStmt.get(paymentHash.toString('hex'));
    return row && row.paid_at !== null ? row.amount_msat : undefined;
  }

  /** After a compare-and-set that changed nothing: why (the row cannot disappear or be un-paid). */
  private whyNotPaid(hashHex: string, invoice: string, row: InvoiceRow | undefined): never {
    if (!row || row.bolt11 !== invoice) {
      throw new DevWalletError('unknown', `invoice ${hashHex} was not issued by this development wallet (${this.dataDir})`);
    }
    if (row.paid_at !== null) {
      throw new DevWalletError('already_paid', `invoice ${hashHex} is already paid`);
    }
    throw new DevWalletError('expired', `invoice ${hashHex} expired at ${new Date(row.expires_at * 1000).toISOString()}`);
  }

  describe(): string {
    return `development wallet (regtest, NOT real money, development only) at ${this.dataDir}, node ${this.nodePubkeyHex}`;
  }

  async close(): Promise<void> {
    if (this.db.open) this.commitInvoices();
    if (this.db.open) this.db.close();
  }
}
