// Nostr Wallet Connect (NIP-47) backend: invoices come from a remote wallet service, reached through
// one or more Nostr relays with end-to-end encrypted request/response events.
//
// Built on nostr-tools primitives (keys, signatures, NIP-44 v2, NIP-04) and our own relay connection
// (nwc-relay.ts), not on @getalby/sdk's NWCClient: NWCClient takes no AbortSignal, and an abandoned call
// keeps its 60 s reply timer and relay subscription alive (the process cannot exit); an undecryptable reply
// becomes an unhandled promise rejection inside its event callback, which crashes Node; and it prints to the
// console. Here every call is bounded by the caller's signal and ctx.timeoutMs, and a malformed reply is a
// BackendCallError.
//
// Start-up is asynchronous on purpose: whether the wallet answers `lookup_invoice` (and so whether
// `lookupInvoice` exists, which decides if auto_detect_payment may be configured) and which encryption it
// speaks are only known after reading its info event (kind 13194) and, where offered, `get_info`.
import { createHash } from 'node:crypto';
import { readConfigFile, resolveConfigPath } from '../transports/config-file.js';
import { finalizeEvent, type Event } from 'nostr-tools/pure';
import * as nip44 from 'nostr-tools/nip44';
import * as nip04 from 'nostr-tools/nip04';
import { z } from 'zod';
import { BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend } from '../backend.js';
import { checkReturnedInvoice } from '../codecs/bolt11.js';
import { NwcUriError, parseNwcUri, relayHost, type NwcConnection } from './nwc-uri.js';
import { RelayConnection, peerText } from './nwc-relay.js';

const KIND_INFO = 13194;
const KIND_REQUEST = 23194;
const KIND_RESPONSE = 23195;
/** NIP-47 relays SHOULD accept 64 KB; a reply to our two methods is far smaller. */
const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_CONTENT_CHARS = 128 * 1024;
/**
 * A request carries an `expiration` tag so a wallet that sees it late (a relay that stores ephemeral events,
 * a wallet reconnecting) ignores it instead of creating an invoice nobody waits for. The slack above our own
 * bound absorbs clock skew between us and the wallet service.
 */
const REQUEST_EXPIRY_SLACK_SECS = 60;
/** Back-off for a relay whose last dials failed: skip it for 0.5, 1, 2, … up to 30 s (unless all relays are failing). */
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export type NwcEncryption = 'nip44_v2' | 'nip04';

/** Wallet error codes a retry will not fix. */
const PERMANENT_CODES = new Set(['NOT_IMPLEMENTED', 'RESTRICTED', 'UNAUTHORIZED', 'QUOTA_EXCEEDED', 'UNSUPPORTED_ENCRYPTION', 'NOT_FOUND', 'INSUFFICIENT_BALANCE']);

export const nwcConfigSchema = z
  .object({
    type: z.literal('nwc'),
    /** `nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<hex>`; a secret (write `${NWC_URI}`). */
    uri: z
      .string()
      .superRefine((v, ctx) => {
        try {
          parseNwcUri(v);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: e instanceof NwcUriError ? e.message : 'NWC URI: invalid' });
        }
      })
      .optional(),
    /** File holding the URI (first line), resolved against the config directory. */
    uri_file: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.uri === undefined && c.uri_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['uri'], message: 'the NWC connection URI is required: set `uri` (e.g. uri: ${NWC_URI}), `uri_file` or NWC_URI' });
    }
    if (c.uri !== undefined && c.uri_file !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['uri_file'], message: 'set either `uri` or `uri_file`, not both' });
    }
  });

export type NwcConfig = z.output<typeof nwcConfigSchema>;

/** The raw `lightning:` section from ngx_l402's environment (NWC_URI). */
export function nwcFromLegacyEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const raw: Record<string, unknown> = { type: 'nwc' };
  const uri = env.NWC_URI?.trim();
  if (uri) raw.uri = uri;
  return raw;
}

/** A NIP-47 error response: `code` is the wallet's error code (e.g. QUOTA_EXCEEDED, NOT_FOUND). */
export class NwcWalletError extends BackendCallError {
  constructor(
    readonly method: string,
    readonly code: string,
    walletMessage: string,
  ) {
    super(`NWC wallet service refused ${method}: ${code}${walletMessage ? ` (${walletMessage})` : ''}`, !PERMANENT_CODES.has(code));
    this.name = 'NwcWalletError';
  }
}

/** What start-up learnt about the wallet service. */
export interface NwcWalletInfo {
  encryption: NwcEncryption;
  /** Methods this connection may call (get_info's list when offered, else the info event's). */
  methods: string[];
  /** Encryption schemes the info event advertises (empty tag = NIP-04 only). */
  advertisedEncryptions: string[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

const HEX32 = /^[0-9a-f]{64}$/i;

function errText(e: unknown): string {
  return peerText(e instanceof Error ? e.message : String(e), 600);
}

/** Reasons a call ends early; kept apart from relay errors so the message says which bound was hit. */
class CallTimeout extends Error {}
class CallAborted extends Error {}
class BackendClosed extends Error {}
class CallDone extends Error {}

/** Picks the scheme per NIP-47 "Encryption": NIP-44 v2 whenever offered; no tag means NIP-04 only. */
export function negotiateEncryption(infoEvent: Pick<Event, 'tags'>): { encryption: NwcEncryption | undefined; advertised: string[] } {
  const tag = infoEvent.tags.find((t) => t[0] === 'encryption');
  const advertised = tag ? (tag[1] ?? '').split(/[\s,]+/).map((s) => s.trim().toLowerCase()).filter(Boolean) : [];
  if (!tag) return { encryption: 'nip04', advertised };
  if (advertised.includes('nip44_v2')) return { encryption: 'nip44_v2', advertised };
  if (advertised.includes('nip04')) return { encryption: 'nip04', advertised };
  return { encryption: undefined, advertised };
}

/** Capabilities from the info event's content; space-separated per NIP-47, commas tolerated (older Alby). */
export function infoMethods(infoEvent: Pick<Event, 'content'>): string[] {
  return infoEvent.content.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** One round of relay subscriptions that settles once: by its relays' answers, or by `sig` ending it. */
interface RelayRound<T> {
  /** True once the round has settled; relay callbacks that come later do nothing. */
  readonly done: boolean;
  /** Keeps a subscription to close when the round settles. */
  track(sub: { close(): void }): void;
  /** First call only: removes the abort listener, closes every subscription, then settles with `outcome()` (its value, or what it throws). */
  settle(outcome: () => T): void;
}

/**
 * Runs `start` (which connects and subscribes) and settles on its first outcome. `onAbort` runs when `sig`
 * ends the round first (the caller's abort, the call's timeout, close()), and must settle it.
 */
function relayRound<T>(sig: AbortSignal, onAbort: (round: RelayRound<T>) => void, start: (round: RelayRound<T>) => void): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    const subs: Array<{ close(): void }> = [];
    let done = false;
    const round: RelayRound<T> = {
      get done() {
        return done;
      },
      track: (sub) => void subs.push(sub),
      settle: (outcome) => {
        if (done) return;
        done = true;
        sig.removeEventListener('abort', abort);
        for (const s of subs) s.close();
        try {
          resolvePromise(outcome());
        } catch (e) {
          reject(e);
        }
      },
    };
    const abort = () => onAbort(round);
    // A listener added to an already aborted signal would never run.
    if (sig.aborted) return abort();
    sig.addEventListener('abort', abort, { once: true });
    start(round);
  });
}

/**
 * The NIP-47 client: one request event out through every usable relay, the first authentic reply wins.
 * Exported for tests and for `l402d doctor`; the gate uses the LightningBackend made by createNwcBackend.
 */
export class NwcClient {
  readonly walletPubkey: string;
  readonly relays: RelayConnection[];
  private readonly secret: Uint8Array;
  private readonly nip44Key: Uint8Array;
  private encryption: NwcEncryption = 'nip44_v2';
  private closed = false;
  private readonly inflight = new Set<AbortController>();

  constructor(
    conn: NwcConnection,
    private readonly ctx: Pick<BackendContext, 'log' | 'timeoutMs'>,
  ) {
    this.walletPubkey = conn.walletPubkey;
    this.secret = conn.secret;
    this.nip44Key = nip44.getConversationKey(conn.secret, conn.walletPubkey);
    this.relays = conn.relays.map(
      (url) =>
        new RelayConnection(url, relayHost(url), {
          handshakeTimeoutMs: ctx.timeoutMs,
          maxMessageBytes: MAX_MESSAGE_BYTES,
          onNotice: (host, message) => ctx.log.debug({ relay: host, notice: message }, 'nwc relay notice'),
          onDisconnect: (host, reason) => ctx.log.info({ relay: host, reason }, 'nwc relay connection dropped; the next call reconnects'),
        }),
    );
  }

  get walletLabel(): string {
    return `${this.walletPubkey.slice(0, 8)}…`;
  }

  setEncryption(e: NwcEncryption): void {
    this.encryption = e;
  }

  get currentEncryption(): NwcEncryption {
    return this.encryption;
  }

  /** Relays worth trying now: those not backing off after failed dials, or all of them if every one is. */
  private usableRelays(): RelayConnection[] {
    const now = Date.now();
    const ok = this.relays.filter((r) => r.failures === 0 || now - r.lastFailureAt >= Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (r.failures - 1)));
    return ok.length > 0 ? ok : this.relays;
  }

  /**
   * Runs `fn` under one bound: the caller's signal, ctx.timeoutMs (or `timeoutMs`) and close().
   * Every rejection leaves as a BackendCallError.
   */
  async bounded<T>(what: string, signal: AbortSignal | undefined, fn: (sig: AbortSignal) => Promise<T>, timeoutMs = this.ctx.timeoutMs): Promise<T> {
    if (this.closed) throw new BackendCallError('NWC backend is closed', false);
    if (signal?.aborted) throw new BackendCallError(`NWC ${what} aborted by the caller`);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new CallTimeout()), timeoutMs);
    const onCallerAbort = () => ctl.abort(new CallAborted());
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    this.inflight.add(ctl);
    try {
      return await fn(ctl.signal);
    } catch (e) {
      if (e instanceof BackendCallError) throw e;
      const reason: unknown = ctl.signal.aborted ? ctl.signal.reason : undefined;
      const detail = e instanceof Error && e !== reason && e.message ? ` (${errText(e)})` : '';
      if (reason instanceof CallTimeout) throw new BackendCallError(`NWC ${what} timed out after ${timeoutMs} ms${detail}`);
      if (reason instanceof CallAborted) throw new BackendCallError(`NWC ${what} aborted by the caller${detail}`);
      if (reason instanceof BackendClosed) throw new BackendCallError(`NWC ${what} aborted: backend closed`, false);
      throw new BackendCallError(`NWC ${what} failed: ${errText(e)}`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
      this.inflight.delete(ctl);
      // Releases what is still waiting on this call (a slow relay's OK, a dial): nothing outlives the call.
      ctl.abort(new CallDone());
    }
  }

  /** Reads the wallet's newest info event (kind 13194) from the relays. */
  fetchInfoEvent(sig: AbortSignal): Promise<Event> {
    const filter = { kinds: [KIND_INFO], authors: [this.walletPubkey], limit: 1 };
    const relays = this.usableRelays();
    const status = new Map<RelayConnection, string>(relays.map((r) => [r, 'no answer']));
    let best: Event | undefined;
    let remaining = relays.length;
    const noInfo = () => {
      const reached = relays.filter((r) => status.get(r) === 'no info event').map((r) => r.host);
      const others = [...status].filter(([, st]) => st !== 'no info event').map(([r, st]) => `${r.host}: ${st}`);
      if (reached.length === 0) return new Error(`could not reach any relay (${others.join('; ')})`);
      return new Error(
        `wallet service ${this.walletLabel} has no info event (kind 13194) on ${reached.join(', ')}; is it running and connected to these relays?` +
          (others.length ? ` (${others.join('; ')})` : ''),
      );
    };
    const outcome = (): Event => {
      if (best) return best;
      throw noInfo();
    };
    return relayRound<Event>(
      sig,
      (round) => round.settle(outcome),
      (round) => {
        for (const relay of relays) {
          let ended = false;
          const end = (st: string) => {
            if (ended || round.done) return;
            ended = true;
            status.set(relay, st);
            remaining--;
            // The wallet publishes the same replaceable event everywhere: the first relay that has it is enough.
            if (best || remaining === 0) round.settle(outcome);
          };
          relay
            .connect(sig)
            .then(() => {
              if (round.done) return;
              round.track(
                relay.subscribe(filter, {
                  onEvent: (ev) => {
                    if (ev.kind === KIND_INFO && ev.pubkey === this.walletPubkey && (!best || ev.created_at > best.created_at)) best = ev;
                  },
                  onEose: () => end('no info event'),
                  onClosed: (reason) => end(reason),
                }),
              );
            })
            .catch((e: unknown) => {
              if (!sig.aborted) end(errText(e));
            });
        }
      },
    );
  }

  private encrypt(plaintext: string, enc: NwcEncryption): string {
    return enc === 'nip44_v2' ? nip44.encrypt(plaintext, this.nip44Key) : nip04.encrypt(this.secret, this.walletPubkey, plaintext);
  }

  private decrypt(payload: string, enc: NwcEncryption): string {
    return enc === 'nip44_v2' ? nip44.decrypt(payload, this.nip44Key) : nip04.decrypt(this.secret, this.walletPubkey, payload);
  }

  /** Decodes one authentic reply; a reply that is not a NIP-47 response is an error, not a crash. */
  private decodeReply(ev: Event, method: string, enc: NwcEncryption): Json {
    if (typeof ev.content !== 'string' || ev.content.length > MAX_CONTENT_CHARS) {
      throw new BackendCallError(`NWC ${method}: wallet service reply is missing or too large`, false);
    }
    let text: string;
    try {
      text = this.decrypt(ev.content, enc);
    } catch {
      throw new BackendCallError(`NWC ${method}: wallet service reply could not be decrypted (${enc})`, false);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new BackendCallError(`NWC ${method}: wallet service reply is not JSON`, false);
    }
    if (!isObject(body)) throw new BackendCallError(`NWC ${method}: wallet service reply is not a JSON object`, false);
    if (body.result_type !== undefined && body.result_type !== method) {
      throw new BackendCallError(`NWC ${method}: wallet service replied with result_type ${peerText(body.result_type, 40)}`, false);
    }
    if (body.error !== undefined && body.error !== null) {
      const err = isObject(body.error) ? body.error : {};
      const code = typeof err.code === 'string' && err.code ? peerText(err.code, 40) : 'OTHER';
      throw new NwcWalletError(method, code, typeof err.message === 'string' ? peerText(err.message) : '');
    }
    if (!isObject(body.result)) throw new BackendCallError(`NWC ${method}: wallet service reply has neither result nor error`, false);
    return body.result;
  }

  /**
   * Sends one NIP-47 request through every usable relay and resolves with the first authentic reply's
   * `result`. Fails fast when no relay can take the request; otherwise waits until `sig` ends it.
   */
  private exchange(method: string, params: Json, sig: AbortSignal): Promise<Json> {
    const enc = this.encryption;
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = now + Math.ceil(this.ctx.timeoutMs / 1000) + REQUEST_EXPIRY_SLACK_SECS;
    const event = finalizeEvent(
      {
        kind: KIND_REQUEST,
        created_at: now,
        tags: [
          ['p', this.walletPubkey],
          ['encryption', enc],
          ['expiration', String(expiresAt)],
        ],
        content: this.encrypt(JSON.stringify({ method, params }), enc),
      },
      this.secret,
    );
    const filter = { kinds: [KIND_RESPONSE], authors: [this.walletPubkey], '#e': [event.id] };
    const relays = this.usableRelays();

    const failures: string[] = [];
    const acked = new Set<RelayConnection>();
    let failed = 0;
    const onAbort = (round: RelayRound<Json>) => {
      if (sig.reason instanceof CallTimeout) {
        // A connected relay that never confirmed our event within the bound may be half-open: redial it next time.
        for (const r of relays) if (r.isOpen && !acked.has(r)) r.reset('no OK for a request within the call bound');
      }
      const reached = acked.size > 0 ? `request accepted by ${[...acked].map((r) => r.host).join(', ')}, no reply` : 'no relay accepted the request';
      round.settle(() => {
        throw new Error(failures.length ? `${reached}; ${failures.join('; ')}` : reached);
      });
    };
    return relayRound<Json>(sig, onAbort, (round) => {
      for (const relay of relays) {
        let relayFailed = false;
        const fail = (why: string) => {
          if (relayFailed || round.done) return;
          relayFailed = true;
          failures.push(`${relay.host}: ${why}`);
          if (++failed === relays.length) {
            round.settle(() => {
              throw new BackendCallError(`NWC ${method}: could not reach the wallet service through any relay (${failures.join('; ')})`);
            });
          }
        };
        void (async () => {
          await relay.connect(sig);
          if (round.done) return;
          // REQ before EVENT on the same socket: the reply cannot arrive before we listen for it.
          round.track(
            relay.subscribe(filter, {
              onEvent: (reply) => {
                if (reply.kind !== KIND_RESPONSE || reply.pubkey !== this.walletPubkey) return;
                if (!reply.tags.some((t) => t[0] === 'e' && t[1] === event.id)) return;
                round.settle(() => this.decodeReply(reply, method, enc));
              },
              onClosed: (reason) => fail(reason),
            }),
          );
          await relay.publish(event, sig);
          acked.add(relay);
        })().catch((e: unknown) => {
          if (!sig.aborted) fail(errText(e));
        });
      }
    });
  }

  /** One NIP-47 call, bounded. */
  call(method: string, params: Json, signal?: AbortSignal): Promise<Json> {
    return this.bounded(method, signal, (sig) => this.exchange(method, params, sig));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ctl of this.inflight) ctl.abort(new BackendClosed());
    for (const r of this.relays) r.close();
  }
}

/** Reads the connection URI from the config (inline or from a file beside it). */
function loadUri(cfg: NwcConfig, configDir: string): NwcConnection {
  if (cfg.uri !== undefined) return parseNwcUri(cfg.uri);
  const path = resolveConfigPath(cfg.uri_file!, configDir);
  const text = readConfigFile('uri_file', cfg.uri_file!, configDir, (m) => new NwcUriError(m)).toString('utf8');
  const first = text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  try {
    return parseNwcUri(first);
  } catch (e) {
    throw new NwcUriError(`lightning.uri_file ${path}: ${(e as Error).message}`);
  }
}

class NwcBackend implements LightningBackend {
  readonly kind = 'nwc';
  /** Present only when the wallet service offers lookup_invoice (see the constructor). */
  declare readonly lookupInvoice?: (paymentHash: Buffer, signal?: AbortSignal) => Promise<InvoiceState>;

  constructor(
    private readonly client: NwcClient,
    private readonly info: NwcWalletInfo,
  ) {
    if (info.methods.includes('lookup_invoice')) {
      Object.defineProperty(this, 'lookupInvoice', { value: (h: Buffer, s?: AbortSignal) => this.lookup(h, s), enumerable: true });
    }
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError(`NWC make_invoice: amount must be a positive integer of msat`, false);
    if (!Number.isSafeInteger(req.expirySecs) || req.expirySecs <= 0) throw new BackendCallError(`NWC make_invoice: expiry must be a positive integer of seconds`, false);
    const result = await this.client.call('make_invoice', { amount: req.amountMsat, description: req.memo, expiry: req.expirySecs }, signal);
    const bolt11 = typeof result.invoice === 'string' ? result.invoice.trim() : '';
    if (!bolt11) throw new BackendCallError('NWC make_invoice: the wallet service returned no invoice', false);
    const inv = checkReturnedInvoice(bolt11, {
      backend: 'NWC make_invoice',
      amountMsat: req.amountMsat,
      // NIP-47 makes payment_hash optional; when named, it must be the invoice's (a non-string never is).
      paymentHash: result.payment_hash ?? undefined,
      retryable: false,
      wording: (p) => (p.kind === 'payment_hash' ? 'the payment hash the wallet service names is not the one in its invoice; refusing it' : undefined),
    });
    return { bolt11, paymentHash: inv.paymentHash, expiresAt: inv.expiresAt };
  }

  private async lookup(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    const hashHex = paymentHash.toString('hex');
    let r: Json;
    try {
      r = await this.client.call('lookup_invoice', { payment_hash: hashHex }, signal);
    } catch (e) {
      if (e instanceof NwcWalletError && e.code === 'NOT_FOUND') return { state: 'unknown' };
      throw e;
    }
    if (r.payment_hash !== undefined && r.payment_hash !== null && String(r.payment_hash).toLowerCase() !== hashHex) {
      throw new BackendCallError('NWC lookup_invoice: the wallet service answered about another payment hash', false);
    }
    if (r.type === 'outgoing') return { state: 'unknown' };
    const state = typeof r.state === 'string' ? r.state.toLowerCase() : undefined;
    const settled = state === 'settled' || (state === undefined && typeof r.settled_at === 'number' && r.settled_at > 0);
    if (settled) {
      // Wallets often return the preimage of unpaid invoices too; only a settlement mark plus a preimage that
      // hashes to the payment hash counts as paid.
      const pre = typeof r.preimage === 'string' && HEX32.test(r.preimage) ? Buffer.from(r.preimage, 'hex') : undefined;
      if (!pre) throw new BackendCallError('NWC lookup_invoice: the wallet service reports the invoice settled but gives no valid preimage', false);
      if (!sha256(pre).equals(paymentHash)) throw new BackendCallError('NWC lookup_invoice: the preimage the wallet service returned does not hash to the payment hash', false);
      return { state: 'settled', preimage: pre };
    }
    if (state === 'expired') return { state: 'expired' };
    if (state === 'failed') return { state: 'canceled' };
    if (state === undefined && typeof r.expires_at === 'number' && r.expires_at > 0 && r.expires_at <= Date.now() / 1000) return { state: 'expired' };
    return { state: 'open' };
  }

  async check(signal?: AbortSignal): Promise<string> {
    if (this.info.methods.includes('get_info')) {
      const r = await this.client.call('get_info', {}, signal);
      const alias = typeof r.alias === 'string' && r.alias ? `"${peerText(r.alias, 64)}"` : '(no alias)';
      const network = typeof r.network === 'string' && r.network ? peerText(r.network, 20) : 'unknown network';
      const methods = Array.isArray(r.methods) ? r.methods.filter((m): m is string => typeof m === 'string').map((m) => peerText(m, 40)) : this.info.methods;
      return `NWC wallet ${this.client.walletLabel} alias ${alias}, network ${network}, methods: ${methods.join(' ')}; ${this.client.currentEncryption}`;
    }
    const ev = await this.client.bounded('info event', signal, (sig) => this.client.fetchInfoEvent(sig));
    return `NWC wallet ${this.client.walletLabel} (no get_info) advertises: ${infoMethods(ev).map((m) => peerText(m, 40)).join(' ')}; ${this.client.currentEncryption}`;
  }

  describe(): string {
    const hosts = this.client.relays.map((r) => r.host).join(', ');
    return `NWC wallet ${this.client.walletLabel} via ${hosts} (${this.client.currentEncryption}, lookup_invoice ${this.lookupInvoice ? 'yes' : 'no'})`;
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

/**
 * Connects to the relays, reads the wallet's info event (encryption and capabilities) and, when offered,
 * `get_info` (this connection's methods). Rejects with a message an operator can act on when the wallet
 * cannot be reached or cannot make invoices. The returned backend has `lookupInvoice` only if the wallet
 * offers lookup_invoice.
 */
export async function createNwcBackend(cfg: NwcConfig, ctx: BackendContext, signal?: AbortSignal): Promise<LightningBackend> {
  const conn = loadUri(cfg, ctx.configDir);
  const client = new NwcClient(conn, ctx);
  try {
    const info = await discover(client, signal);
    const backend = new NwcBackend(client, info);
    if (info.encryption === 'nip04') ctx.log.warn({ wallet: client.walletLabel }, 'NWC wallet service only speaks NIP-04 encryption (deprecated); using it');
    ctx.log.info({ backend: backend.describe(), methods: info.methods }, 'NWC wallet service ready');
    return backend;
  } catch (e) {
    client.close();
    throw e;
  }
}

async function discover(client: NwcClient, signal?: AbortSignal): Promise<NwcWalletInfo> {
  const ev = await client.bounded('wallet discovery', signal, (sig) => client.fetchInfoEvent(sig));
  const { encryption, advertised } = negotiateEncryption(ev);
  if (!encryption) {
    throw new BackendCallError(`NWC wallet ${client.walletLabel} supports no encryption we speak (it advertises: ${advertised.map((a) => peerText(a, 20)).join(' ') || 'nothing'}; we speak nip44_v2 and nip04)`, false);
  }
  client.setEncryption(encryption);
  let methods = infoMethods(ev);
  if (methods.includes('get_info')) {
    try {
      const r = await client.call('get_info', {}, signal);
      if (Array.isArray(r.methods)) methods = r.methods.filter((m): m is string => typeof m === 'string');
    } catch (e) {
      // A wallet that advertises get_info but does not implement it still told us its methods in the info event.
      if (!(e instanceof NwcWalletError && e.code === 'NOT_IMPLEMENTED')) throw e;
    }
  }
  if (!methods.includes('make_invoice')) {
    throw new BackendCallError(`NWC wallet ${client.walletLabel}: this connection may not call make_invoice (methods: ${methods.map((m) => peerText(m, 40)).join(' ') || 'none'}); grant it in the wallet service`, false);
  }
  return { encryption, methods, advertisedEncryptions: advertised };
}
