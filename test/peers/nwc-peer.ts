// A NIP-47 wallet service behind a real Nostr relay, for testing the nwc backend over the real wire protocol.
//
// - The relay is snstr's ephemeral relay (a real NIP-01 WebSocket relay) on a free loopback port; it can be
//   stopped and restarted on the same port.
// - The wallet service is @getalby/sdk's NWCWalletService: it decrypts requests (NIP-44 v2 or NIP-04, per the
//   request's `encryption` tag), dispatches them to our handler and publishes encrypted, signed replies.
// - The handler issues REAL signed regtest BOLT11 invoices through a DevWallet in a temp dir; a preimage is
//   revealed (by lookup_invoice) only after `settle(bolt11)` paid the invoice.
//
// Knobs: which encryption the info event advertises (and a NIP-04-only wallet that, like a legacy one,
// decrypts everything as NIP-04), whether lookup_invoice / get_info exist, and faults: slow replies,
// error replies, wrong-amount invoices, undecryptable replies, preimages leaked for unpaid invoices,
// settled invoices with a wrong preimage.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { NostrRelay } from 'snstr/utils/ephemeral-relay';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import * as nip44 from 'nostr-tools/nip44';
import {
  NWCWalletService,
  NWCWalletServiceKeyPair,
  type Nip47EncryptionType,
  type Nip47SingleMethod,
  type Nip47Transaction,
  type NWCWalletServiceRequestHandler,
  type NWCWalletServiceResponse,
} from '@getalby/sdk/nwc';
import lightBolt11 from 'light-bolt11-decoder';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { freePort, waitFor } from '../integration/harness.js';

// @getalby/sdk 7 inlines nostr-tools' relay code, which dials through the global WebSocket (Node 20 has none).
if (typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'undefined') {
  (globalThis as { WebSocket?: unknown }).WebSocket = WebSocket;
}

export type PeerEncryption = 'nip44_v2 nip04' | 'nip04' | 'none';

export interface NwcPeerOptions {
  /** What the info event's `encryption` tag says. 'none' omits the tag (legacy: NIP-04 only). Default both. */
  encryption?: PeerEncryption;
  /** Offer lookup_invoice (info event and handler). Default true. */
  lookupInvoice?: boolean;
  /** Offer get_info. Default true. */
  getInfo?: boolean;
  /** Publish no info event at all. */
  noInfoEvent?: boolean;
}

export interface NwcPeerFaults {
  /** Delay before every reply, ms. */
  delayMs: number;
  /** Reply to these methods with this NIP-47 error. */
  errors: Partial<Record<'make_invoice' | 'lookup_invoice' | 'get_info', { code: string; message: string }>>;
  /** make_invoice issues an invoice for 1000 msat more than asked. */
  wrongAmount: boolean;
  /** make_invoice names a payment hash that is not the invoice's. */
  wrongHash: boolean;
  /** Replies are not decryptable (garbage content, still signed by the wallet key). */
  garbleReplies: boolean;
  /** lookup_invoice returns the preimage of unpaid invoices too (as many real wallets do). */
  preimageWhenOpen: boolean;
  /** lookup_invoice reports settled invoices with a preimage that does not match. */
  wrongPreimage: boolean;
  /**
   * Anyone on the relay can read a request's id and the client's key: an impostor (its own key, not the wallet's)
   * answers every request first, tagged with its id and encrypted to the client, with an invoice of its own for
   * make_invoice and "settled" (with a preimage of its choosing) for lookup_invoice. Set delayMs so the wallet's
   * real reply comes second.
   */
  impostorReplies: boolean;
}

export interface NwcPeer {
  relayUrl: string;
  relayPort: number;
  /** Connection URI for the client (carries the client secret). */
  uri: string;
  walletPubkey: string;
  clientSecretHex: string;
  wallet: DevWallet;
  faults: NwcPeerFaults;
  /** Every request the wallet service decrypted: method and the encryption the request said it used. */
  seen: Array<{ method: string; encryption: Nip47EncryptionType }>;
  /** Pays one of the peer's invoices; returns the preimage. */
  settle(bolt11: string): Buffer;
  stopRelay(): Promise<void>;
  /** Restarts the relay on the same port and waits until the wallet service listens on it again. */
  startRelay(): Promise<void>;
  close(): Promise<void>;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

interface IssuedInvoice {
  bolt11: string;
  description: string;
  amountMsat: number;
  createdAt: number;
  expiresAt: number;
  settledAt?: number;
}

/** A wallet service that records which encryption each request used, and can play a legacy or broken wallet. */
class RecordingWalletService extends NWCWalletService {
  constructor(
    relayUrl: string,
    private readonly nip04Only: boolean,
    private readonly peerFaults: NwcPeerFaults,
    private readonly onDecrypted: (encryption: Nip47EncryptionType, plaintext: string) => void,
  ) {
    super({ relayUrl });
  }

  override async decrypt(keypair: NWCWalletServiceKeyPair, content: string, encryptionType: Nip47EncryptionType): Promise<string> {
    // A legacy wallet knows no `encryption` tag: it decrypts everything as NIP-04 (and fails on NIP-44 payloads).
    const text = (await super.decrypt(keypair, content, this.nip04Only ? 'nip04' : encryptionType)) as string;
    this.onDecrypted(encryptionType, text);
    return text;
  }

  override async encrypt(keypair: NWCWalletServiceKeyPair, content: string, encryptionType: Nip47EncryptionType): Promise<string> {
    if (this.peerFaults.garbleReplies) return 'this is not an encrypted payload';
    return (await super.encrypt(keypair, content, this.nip04Only ? 'nip04' : encryptionType)) as string;
  }
}

export async function startNwcPeer(opts: NwcPeerOptions = {}): Promise<NwcPeer> {
  const encryption = opts.encryption ?? 'nip44_v2 nip04';
  const offerLookup = opts.lookupInvoice ?? true;
  const offerGetInfo = opts.getInfo ?? true;
  const dir = mkdtempSync(join(tmpdir(), 'l402-nwc-peer-'));
  const wallet = DevWallet.open(dir);
  const relayPort = await freePort();
  const relay = new NostrRelay(relayPort);
  await relay.start();
  const relayUrl = relay.url;

  const walletSecret = hex(generateSecretKey());
  const clientSecret = generateSecretKey();
  const clientSecretHex = hex(clientSecret);
  const walletPubkey = getPublicKey(Buffer.from(walletSecret, 'hex'));
  const keypair = new NWCWalletServiceKeyPair(walletSecret, getPublicKey(clientSecret));

  const faults: NwcPeerFaults = {
    delayMs: 0,
    errors: {},
    wrongAmount: false,
    wrongHash: false,
    garbleReplies: false,
    preimageWhenOpen: false,
    wrongPreimage: false,
    impostorReplies: false,
  };
  const seen: NwcPeer['seen'] = [];
  const issued = new Map<string, IssuedInvoice>();
  const closing = new AbortController();

  const methods: Nip47SingleMethod[] = ['make_invoice'];
  if (offerLookup) methods.push('lookup_invoice');
  if (offerGetInfo) methods.push('get_info');

  const delay = () =>
    new Promise<void>((resolve) => {
      if (faults.delayMs <= 0) return resolve();
      if (closing.signal.aborted) return;
      const t = setTimeout(() => {
        closing.signal.removeEventListener('abort', stop);
        resolve();
      }, faults.delayMs);
      // On close the request is dropped (never answered), as by a wallet service that shuts down.
      const stop = () => clearTimeout(t);
      closing.signal.addEventListener('abort', stop, { once: true });
    });
  const fail = <T>(code: string, message: string): NWCWalletServiceResponse<T> => ({ result: undefined, error: { code, message } });

  const service = new RecordingWalletService(relayUrl, encryption !== 'nip44_v2 nip04', faults, (enc, text) => {
    let method = '?';
    try {
      method = String((JSON.parse(text) as { method?: unknown }).method);
    } catch {
      // recorded as '?'
    }
    seen.push({ method, encryption: enc });
  });

  const transaction = (hash: string, inv: IssuedInvoice, settled: boolean, preimage?: string): Nip47Transaction => ({
    type: 'incoming',
    state: (settled ? 'settled' : inv.expiresAt <= Date.now() / 1000 ? 'expired' : 'pending') as Nip47Transaction['state'],
    invoice: inv.bolt11,
    description: inv.description,
    description_hash: '',
    preimage: preimage ?? '',
    payment_hash: hash,
    amount: inv.amountMsat,
    fees_paid: 0,
    settled_at: settled ? (inv.settledAt ?? Math.floor(Date.now() / 1000)) : 0,
    created_at: inv.createdAt,
    expires_at: inv.expiresAt,
  });

  const handler: NWCWalletServiceRequestHandler = {
    async makeInvoice(req) {
      await delay();
      const e = faults.errors.make_invoice;
      if (e) return fail(e.code, e.message);
      const amountMsat = req.amount + (faults.wrongAmount ? 1000 : 0);
      const inv = await wallet.createInvoice({ amountMsat, memo: req.description ?? '', expirySecs: req.expiry ?? 3600 });
      const hash = inv.paymentHash.toString('hex');
      const row: IssuedInvoice = { bolt11: inv.bolt11, description: req.description ?? '', amountMsat, createdAt: Math.floor(Date.now() / 1000), expiresAt: inv.expiresAt };
      issued.set(hash, row);
      const tx = transaction(hash, row, false);
      if (faults.wrongHash) tx.payment_hash = 'ab'.repeat(32);
      return { result: tx, error: undefined };
    },
    getInfo: offerGetInfo
      ? async () => {
          await delay();
          const e = faults.errors.get_info;
          if (e) return fail(e.code, e.message);
          return {
            result: { alias: 'nwc-peer', color: '#3399ff', pubkey: walletPubkey, network: 'regtest', block_height: 1, block_hash: '00'.repeat(32), methods },
            error: undefined,
          };
        }
      : undefined,
    lookupInvoice: offerLookup
      ? async (req) => {
          await delay();
          const e = faults.errors.lookup_invoice;
          if (e) return fail(e.code, e.message);
          let hash = req.payment_hash?.toLowerCase();
          if (!hash && req.invoice) {
            const section = lightBolt11.decode(req.invoice).sections.find((s) => s.name === 'payment_hash');
            hash = section && 'value' in section ? String(section.value) : undefined;
          }
          const inv = hash ? issued.get(hash) : undefined;
          if (!hash || !inv) return fail('NOT_FOUND', 'invoice not found');
          const state = await wallet.lookupInvoice(Buffer.from(hash, 'hex'));
          if (state.state === 'settled') {
            const pre = faults.wrongPreimage ? 'cd'.repeat(32) : state.preimage.toString('hex');
            return { result: transaction(hash, inv, true, pre), error: undefined };
          }
          // The dev wallet knows the preimage of its own invoices; a leaky wallet shows it before payment.
          const leaked = faults.preimageWhenOpen ? '11'.repeat(32) : undefined;
          return { result: transaction(hash, inv, false, leaked), error: undefined };
        }
      : undefined,
  };

  async function publishInfo(): Promise<void> {
    if (opts.noInfoEvent) return;
    if (encryption === 'nip44_v2 nip04') {
      await service.publishWalletServiceInfoEvent(walletSecret, methods, []);
      return;
    }
    // The library always advertises both schemes; a legacy wallet's info event is signed and sent by hand.
    const tags = encryption === 'nip04' ? [['encryption', 'nip04']] : [];
    const ev = finalizeEvent({ kind: 13194, created_at: Math.floor(Date.now() / 1000), tags, content: methods.join(' ') }, Buffer.from(walletSecret, 'hex'));
    if (!service.connected) await service.relay.connect();
    await service.relay.publish(ev);
  }

  /** The wallet service's subscription is registered at the relay once the relay reports one open sub. */
  const waitListening = () => waitFor('NWC wallet service subscribed at the relay', () => service.connected && relay.subs.size > 0, { timeoutMs: 10_000, intervalMs: 25 });

  const unsubscribe = await service.subscribe(keypair, handler);
  await waitListening();
  // The impostor reads requests off the relay like anyone can, and answers them with its own key.
  const impostorSecret = generateSecretKey();
  const impostorDir = mkdtempSync(join(tmpdir(), 'l402-nwc-impostor-'));
  const impostorWallet = DevWallet.open(impostorDir);
  const clientPubkey = getPublicKey(clientSecret);
  const impostor = async (ev: { id: string; content: string }): Promise<void> => {
    const req = JSON.parse(nip44.v2.decrypt(ev.content, nip44.v2.utils.getConversationKey(Buffer.from(walletSecret, 'hex'), clientPubkey))) as { method: string; params: Record<string, unknown> };
    let reply: Record<string, unknown>;
    if (req.method === 'make_invoice') {
      const inv = await impostorWallet.createInvoice({ amountMsat: Number(req.params.amount), memo: String(req.params.description ?? ''), expirySecs: 600 });
      reply = { result_type: 'make_invoice', result: { type: 'incoming', state: 'pending', invoice: inv.bolt11, payment_hash: inv.paymentHash.toString('hex'), amount: Number(req.params.amount), created_at: Math.floor(Date.now() / 1000), expires_at: inv.expiresAt } };
    } else if (req.method === 'lookup_invoice') {
      reply = { result_type: 'lookup_invoice', result: { type: 'incoming', state: 'settled', preimage: hex(generateSecretKey()), payment_hash: req.params.payment_hash, settled_at: Math.floor(Date.now() / 1000) } };
    } else {
      return;
    }
    const content = nip44.v2.encrypt(JSON.stringify(reply), nip44.v2.utils.getConversationKey(impostorSecret, clientPubkey));
    const forged = finalizeEvent({ kind: 23195, created_at: Math.floor(Date.now() / 1000), tags: [['p', clientPubkey], ['e', ev.id], ['encryption', 'nip44_v2']], content }, impostorSecret);
    await service.relay.publish(forged);
  };
  service.relay.subscribe([{ kinds: [23194], '#p': [walletPubkey] }], {
    onevent: (ev: { id: string; content: string }) => {
      if (faults.impostorReplies) impostor(ev).catch(() => undefined);
    },
  });
  await publishInfo();

  let relayRunning = true;
  const params = new URLSearchParams();
  params.append('relay', relayUrl);
  params.append('secret', clientSecretHex);
  return {
    relayUrl,
    relayPort,
    uri: `nostr+walletconnect://${walletPubkey}?${params.toString()}`,
    walletPubkey,
    clientSecretHex,
    wallet,
    faults,
    seen,
    settle(bolt11: string): Buffer {
      const pre = wallet.pay(bolt11);
      const section = lightBolt11.decode(bolt11.toLowerCase()).sections.find((s) => s.name === 'payment_hash');
      const hash = section && 'value' in section ? String(section.value) : '';
      const row = issued.get(hash);
      if (row) row.settledAt = Math.floor(Date.now() / 1000);
      return pre;
    },
    async stopRelay() {
      if (!relayRunning) return;
      relayRunning = false;
      await relay.close();
    },
    async startRelay() {
      if (relayRunning) return;
      await relay.start();
      relayRunning = true;
      // The service's own loop redials about a second after losing the relay; the restarted relay lost the info event.
      await waitListening();
      await publishInfo();
    },
    async close() {
      closing.abort();
      unsubscribe();
      service.close();
      if (relayRunning) await relay.close();
      relayRunning = false;
      await wallet.close();
      await impostorWallet.close();
      rmSync(dir, { recursive: true, force: true });
      rmSync(impostorDir, { recursive: true, force: true });
    },
  };
}
