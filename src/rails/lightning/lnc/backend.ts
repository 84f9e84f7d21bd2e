// The LNC backend: lnd's Lightning service reached through a Lightning Node Connect session. It keeps one
// encrypted connection through the mailbox, opens it at start (pairing with the phrase the first time,
// then with the stored session keys), reopens it with backoff when the mailbox or the node drops it, and
// bounds every call by the backend budget: while the connection is down, calls fail at once (the gate's
// 503 with Retry-After) with the last reason. Answers get the same checks as the lnd backend's: the
// invoice must be for the amount and hash asked, a settled state needs a preimage that hashes to it.
import { BackendCallError, type BackendContext, type CreatedInvoice, type InvoiceRequest, type InvoiceState, type LightningBackend } from '../backend.js';
import { GrpcCode, isInvoiceNotFound, LndRpcError } from '../lnd/lnd-rest.js';
import { LncConnectError, openLncConnection } from './conn.js';
import { GrpcCallError, GrpcOverStream, type LncMethod } from './grpc.js';
import type { MailboxAddress } from './mailbox.js';
import { phraseToEntropy, stretchEntropy } from './phrase.js';
import { sleep } from '../../../util/timeout.js';
import { loadOrCreateSession, pairingTag, saveRemoteKey, sessionPath, type LncSession } from './session.js';
import { asBuffer, asInt, asString } from '../codecs/proto-fields.js';
import { createdInvoiceOf, invoiceStateOf, lndInvoiceOf } from '../lnd/invoice-answers.js';

export interface LncBackendOptions {
  phrase: string;
  mailbox: MailboxAddress;
  /** host:port as configured, for messages. */
  mailboxLabel: string;
  /** First and largest pause between reconnect attempts. */
  backoffMs?: { min: number; max: number };
}

const MAX_AUTH_LINES = 16;

/** Go's LNC client turns the auth data ("Key: value" lines) into gRPC metadata; so do we. */
export function authDataToMetadata(auth: Buffer): Record<string, string> {
  const md: Record<string, string> = {};
  for (const line of auth.toString('utf8').split('\r\n').slice(0, MAX_AUTH_LINES)) {
    const parts = line.split(': ');
    if (parts.length !== 2) continue;
    const key = parts[0]!.toLowerCase();
    const value = parts[1]!;
    if (!/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(key) || key.startsWith('grpc-') || key === 'te' || key === 'content-type') continue;
    if (!/^[\x20-\x7e]{1,65536}$/.test(value)) continue;
    md[key] = value;
  }
  return md;
}



interface Live {
  grpc: GrpcOverStream;
  close(): void;
}

export class LncBackend implements LightningBackend {
  readonly kind = 'lnc';
  private readonly entropy: Buffer;
  private readonly tag: string;
  private readonly path: string;
  private session: LncSession;
  private stretched: Promise<Buffer> | undefined;
  private live: Live | undefined;
  private connecting: Promise<Live> | undefined;
  private lastError: string | undefined;
  private attempts = 0;
  private nextAttemptAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Aborts a connection attempt in progress when the backend closes. */
  private readonly closing = new AbortController();
  private readonly backoff: { min: number; max: number };
  private readonly phrasePattern: RegExp;
  private macaroonHex: string | undefined;

  constructor(private readonly o: LncBackendOptions, private readonly ctx: BackendContext) {
    this.entropy = phraseToEntropy(o.phrase);
    // The phrase with any run of whitespace or punctuation between its words.
    this.phrasePattern = new RegExp(o.phrase.toLowerCase().split(' ').join('[\\s,;:._-]+'), 'gi');
    this.tag = pairingTag(this.entropy, o.mailboxLabel);
    this.path = sessionPath(ctx.dataDir);
    const s = loadOrCreateSession(this.path, this.tag);
    this.session = { localPriv: s.localPriv, remotePub: s.remotePub };
    if (s.archived) ctx.log.warn({ session_file: this.path, kept_as: s.archived }, 'lnc: the stored session is for another pairing phrase or mailbox; kept aside (it comes back if that phrase and mailbox are configured again)');
    else if (s.replaced) ctx.log.warn({ session_file: this.path }, 'lnc: the stored session file was unreadable; starting a new one');
    if (s.restored) ctx.log.info({ session_file: this.path }, 'lnc: using the session kept aside for this pairing phrase and mailbox');
    else if (s.fresh) ctx.log.info({ session_file: this.path }, 'lnc: no session for this pairing phrase and mailbox yet; pairing with the phrase');
    this.backoff = o.backoffMs ?? { min: 500, max: 5000 };
    this.startConnect();
  }

  private get connectTimeoutMs(): number {
    return Math.max(this.ctx.timeoutMs * 2, 10_000);
  }

  /**
   * Removes the phrase and the session macaroon from text that came from the network (node, mailbox,
   * socket errors) before it reaches a log or an error. Single words are left alone: they are ordinary
   * English, and blanking them would tell a reader which words the phrase contains.
   */
  private scrub(text: string): string {
    let out = text.replace(this.phrasePattern, '[pairing phrase]');
    if (this.macaroonHex) out = out.split(this.macaroonHex).join('[macaroon]');
    return out;
  }

  private startConnect(): Promise<Live> {
    if (this.connecting) return this.connecting;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const pairing = !this.session.remotePub;
    const p = (async (): Promise<Live> => {
      if (pairing) this.stretched ??= stretchEntropy(this.entropy);
      const opened = await openLncConnection({
        signal: this.closing.signal,
        mailbox: this.o.mailbox,
        entropy: this.entropy,
        stretched: () => this.stretched!,
        localPriv: this.session.localPriv,
        remotePub: this.session.remotePub,
        timeoutMs: this.connectTimeoutMs,
      });
      if (this.closed) {
        opened.stream.destroy();
        throw new Error('backend is closed');
      }
      if (pairing && opened.remotePub) {
        this.session = { localPriv: this.session.localPriv, remotePub: opened.remotePub };
        this.stretched = undefined; // the phrase's secret has done its one job
        try {
          saveRemoteKey(this.path, this.tag, this.session);
        } catch (err) {
          this.ctx.log.error({ session_file: this.path, err: (err as NodeJS.ErrnoException).code ?? 'write failed' }, 'lnc: cannot store the paired session; a restart will need a new pairing phrase');
        }
      }
      const md = authDataToMetadata(opened.authData);
      this.macaroonHex = md.macaroon;
      const grpc = new GrpcOverStream(opened.stream, md, this.o.mailboxLabel);
      const live: Live = { grpc, close: () => grpc.close() };
      opened.stream.once('close', () => this.dropped(live, 'the LNC connection closed'));
      grpc.onDead = (why) => this.dropped(live, why);
      return live;
    })();
    this.connecting = p;
    p.then(
      (live) => {
        this.connecting = undefined;
        this.live = live;
        this.attempts = 0;
        this.lastError = undefined;
        this.ctx.log.info({ mailbox: this.o.mailboxLabel, handshake: pairing ? 'pairing' : 'session keys' }, 'lnc: connected to the node');
      },
      (err: Error) => {
        this.connecting = undefined;
        if (this.closed) return;
        this.lastError = this.describeConnectError(err, pairing);
        this.ctx.log.warn({ mailbox: this.o.mailboxLabel, reason: this.lastError }, 'lnc: connection attempt failed');
        this.scheduleRetry();
      },
    );
    return p;
  }

  private dropped(live: Live, why: string): void {
    if (this.live !== live) return;
    this.live = undefined;
    live.close();
    if (this.closed) return;
    this.lastError = `the LNC connection dropped (${this.scrub(why)})`;
    this.ctx.log.warn({ mailbox: this.o.mailboxLabel, reason: this.lastError }, 'lnc: connection lost; reconnecting');
    this.attempts = 0;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    const delay = Math.min(this.backoff.max, this.backoff.min * 2 ** Math.min(this.attempts, 10));
    this.attempts++;
    this.nextAttemptAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.startConnect().catch(() => {});
    }, delay);
    this.retryTimer.unref();
  }

  private describeConnectError(err: Error, pairing: boolean): string {
    const where = `LNC mailbox ${this.o.mailboxLabel}`;
    if (!(err instanceof LncConnectError)) return this.scrub(`${where}: ${err.message}`);
    switch (err.kind) {
      case 'not-found':
        return pairing
          ? `${where} has no session for lightning.pairing_phrase: the phrase is mistyped, was already used to pair another client (a phrase pairs once), the session expired or was revoked, or litd is offline`
          : `${where} has no stream for the paired session: litd is offline, or the session was revoked or expired (then create a new session and put its phrase in lightning.pairing_phrase)`;
      case 'occupied':
        return `${where}: another client is connected to this LNC session (a second l402d, workers > 1, or l402d doctor while l402d runs)`;
      case 'handshake':
        return pairing ? `lightning.pairing_phrase: ${err.message}` : `${err.message}; if the session was recreated, its new phrase goes in lightning.pairing_phrase`;
      case 'unreachable':
        return this.scrub(`lightning.mailbox_server: ${err.message}`);
      case 'timeout':
        return `${where}: the node did not complete the connection within ${this.connectTimeoutMs} ms (litd offline or the mailbox slow)`;
      case 'closed':
        return this.scrub(`${where}: ${err.message}`);
    }
  }

  /**
   * The live connection. Waits, never past `deadline`, for one being opened or for the next attempt when
   * that is due before the deadline; otherwise fails at once with the last reason (the gate's 503).
   */
  private async grpc(deadline: number, signal?: AbortSignal): Promise<GrpcOverStream> {
    for (;;) {
      if (this.closed) throw new BackendCallError('lnc: backend is closed');
      if (signal?.aborted) throw new BackendCallError(this.live ? 'lnc: aborted by the caller' : this.stillConnecting());
      if (this.live && !this.live.grpc.closedReason) return this.live.grpc;
      if (this.live) this.dropped(this.live, this.live.grpc.closedReason ?? 'closed');
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new BackendCallError(this.stillConnecting());
      }
      let pending: Promise<unknown>;
      if (this.connecting) {
        pending = this.connecting;
      } else {
        const wait = this.nextAttemptAt - Date.now();
        if (wait > left && this.lastError) {
          throw new BackendCallError(`lnc: not connected to the node: ${this.lastError}; next attempt in ${Math.ceil(wait / 1000)} s`);
        }
        if (wait > 0) {
          pending = sleep(wait);
        } else {
          pending = this.startConnect();
        }
      }
      await this.within(pending, deadline, signal);
    }
  }

  private stillConnecting(): string {
    return `lnc: still connecting to the node through ${this.o.mailboxLabel}${this.lastError ? ` (last failure: ${this.lastError})` : ''}`;
  }

  /** Settles when `p` does (either way), the deadline passes or the caller aborts. */
  private within(p: Promise<unknown>, deadline: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
      signal?.addEventListener('abort', done, { once: true });
      p.then(done, done);
    });
  }

  private async call(method: LncMethod, req: object, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const deadline = Date.now() + this.ctx.timeoutMs;
    const grpc = await this.grpc(deadline, signal);
    try {
      return await grpc.call(method, req, Math.max(1, deadline - Date.now()), signal);
    } catch (err) {
      if (!(err instanceof GrpcCallError)) throw new BackendCallError(`lnc ${method}: ${this.scrub((err as Error).message)}`);
      // No answer at all: the node or the mailbox path is likely gone. Start over now rather than wait for
      // go-back-N's keepalive to notice; a reconnect with the session keys is cheap.
      if (err.transportFailure && err.code === GrpcCode.DEADLINE_EXCEEDED && this.live?.grpc === grpc) this.dropped(this.live, `${method} got no answer within the budget`);
      throw new LndRpcError(method, err.code, this.scrub(err.detail), err.transportFailure);
    }
  }

  private wrap(err: unknown): BackendCallError {
    if (err instanceof BackendCallError) return err;
    if (!(err instanceof LndRpcError)) return new BackendCallError(`lnc: ${this.scrub((err as Error).message)}`);
    const where = `lnd over LNC (mailbox ${this.o.mailboxLabel})`;
    if (
      err.code === GrpcCode.UNAUTHENTICATED || err.code === GrpcCode.PERMISSION_DENIED ||
      (err.code === GrpcCode.UNKNOWN && /macaroon|verification failed|permission denied|invalid auth/i.test(err.detail))
    ) {
      return new BackendCallError(
        `${where} refused ${err.method}: ${err.detail}. The LNC session's macaroon must allow invoices:read, invoices:write and info:read ` +
          '(litcli sessions add --type custom --uri /lnrpc.Lightning/AddInvoice --uri /lnrpc.Lightning/LookupInvoice --uri /lnrpc.Lightning/GetInfo, or an admin session)',
        false,
      );
    }
    if (err.transportFailure) return new BackendCallError(`${where} ${err.method}: ${err.detail}`);
    const retryable = err.code === GrpcCode.UNAVAILABLE || err.code === GrpcCode.DEADLINE_EXCEEDED || err.code === GrpcCode.INTERNAL || err.code === GrpcCode.UNKNOWN;
    return new BackendCallError(`${where} ${err.method} failed (code ${err.code}): ${err.detail}`, retryable);
  }

  async createInvoice(req: InvoiceRequest, signal?: AbortSignal): Promise<CreatedInvoice> {
    if (!Number.isSafeInteger(req.amountMsat) || req.amountMsat <= 0) throw new BackendCallError(`lnc: amountMsat must be a positive integer, got ${req.amountMsat}`, false);
    if (!Number.isSafeInteger(req.expirySecs) || req.expirySecs <= 0) throw new BackendCallError(`lnc: expirySecs must be a positive integer, got ${req.expirySecs}`, false);
    let res: Record<string, unknown>;
    try {
      res = await this.call('AddInvoice', { value_msat: String(req.amountMsat), memo: req.memo, expiry: String(req.expirySecs) }, signal);
    } catch (err) {
      throw this.wrap(err);
    }
    return createdInvoiceOf({ rHash: asBuffer(res.r_hash), paymentRequest: asString(res.payment_request) }, req, 'lnd over LNC');
  }

  async lookupInvoice(paymentHash: Buffer, signal?: AbortSignal): Promise<InvoiceState> {
    if (paymentHash.length !== 32) return { state: 'unknown' };
    let res: Record<string, unknown>;
    try {
      res = await this.call('LookupInvoice', { r_hash: paymentHash }, signal);
    } catch (err) {
      if (err instanceof LndRpcError && isInvoiceNotFound(err)) return { state: 'unknown' };
      throw this.wrap(err);
    }
    return invoiceStateOf(lndInvoiceOf(res), paymentHash, 'lnd over LNC');
  }

  async check(signal?: AbortSignal): Promise<string> {
    // The first connection (pairing: scrypt, then the handshake through the mailbox) may need more than one
    // call's budget. A check (at start, doctor) waits for it as long as its caller's signal allows, at most
    // one connection attempt and one pause; the call itself then has the usual budget.
    if (signal && !this.live) {
      try {
        await this.grpc(Date.now() + this.connectTimeoutMs + this.backoff.max, signal);
      } catch {
        // the call below says why
      }
    }
    let res: Record<string, unknown>;
    try {
      res = await this.call('GetInfo', {}, signal);
    } catch (err) {
      throw this.wrap(err);
    }
    const chains = Array.isArray(res.chains) ? (res.chains as Array<{ network?: unknown }>) : [];
    const networks = chains.map((c) => asString(c?.network)).filter(Boolean);
    const pubkey = asString(res.identity_pubkey);
    const pk = /^[0-9a-f]{66}$/.test(pubkey) ? `${pubkey.slice(0, 12)}…` : 'no pubkey';
    const sync = res.synced_to_chain === true ? 'synced to chain' : 'NOT synced to chain (invoices may not be payable until it is)';
    return `lnd ${JSON.stringify(asString(res.alias))} (${pk}) on ${networks.length ? networks.join('/') : 'unknown network'}, version ${asString(res.version) || 'unknown'}, block ${asInt(res.block_height)}, ${sync}, via LNC mailbox ${this.o.mailboxLabel}`;
  }

  describe(): string {
    const state = this.live ? 'connected' : this.connecting ? 'connecting' : `not connected${this.lastError ? ` (${this.lastError})` : ''}`;
    return `lnc via mailbox ${this.o.mailboxLabel}, ${this.session.remotePub ? 'paired session' : 'pairing with the configured phrase'}, ${state}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    clearTimeout(this.retryTimer);
    this.live?.close();
    this.live = undefined;
    await this.connecting?.then((l) => l.close(), () => {});
  }
}
