// One WebSocket connection to one Nostr relay (NIP-01), reduced to what a NIP-47 client needs: publish an
// event and wait for the relay's OK, and hold short-lived subscriptions for the wallet's replies.
//
// Why not nostr-tools' SimplePool: it assigns `signal.onabort` (so one signal shared by several relays aborts
// only the last one's wait), its subscription and publish timers (4.4 s) and ping timer (20 s) are not
// cleared by close(), which keeps a process that has closed everything alive, and it logs to the console.
// Here the caller's AbortSignal bounds every wait, and once close() has run nothing of this module holds a
// timer or a socket.
//
// A dropped connection is noticed through the socket's close event; the next call dials again.
import WebSocket from 'ws';
import { verifyEvent, type Event } from 'nostr-tools/pure';
import { matchFilter, type Filter } from 'nostr-tools/filter';

export interface RelaySubscriptionHandlers {
  onEvent(event: Event): void;
  /** The relay ended the subscription (CLOSED) or the connection dropped. */
  onClosed(reason: string): void;
  onEose?(): void;
}

export interface RelaySubscription {
  close(): void;
}

export interface RelayConnectionOptions {
  /** Bound for the WebSocket handshake (TCP + HTTP upgrade). */
  handshakeTimeoutMs: number;
  /** Larger frames are refused by the socket (ws closes the connection). */
  maxMessageBytes: number;
  onNotice?(host: string, message: string): void;
  onDisconnect?(host: string, reason: string): void;
}

interface OpenSub {
  filter: Filter;
  handlers: RelaySubscriptionHandlers;
}

interface PendingPublish {
  resolve(): void;
  reject(err: Error): void;
}

/** Printable, bounded text from a peer (relay notices, rejection reasons). */
export function peerText(value: unknown, max = 200): string {
  const s = typeof value === 'string' ? value : String(value);
  const clean = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > max ? clean.slice(0, max) + '…' : clean;
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error('aborted');
}

export class RelayConnection {
  readonly url: string;
  readonly host: string;
  /** Consecutive failed dials; 0 once a dial succeeds. */
  failures = 0;
  lastFailureAt = 0;

  private ws: WebSocket | undefined;
  private opening: Promise<WebSocket> | undefined;
  private readonly subs = new Map<string, OpenSub>();
  private readonly publishes = new Map<string, PendingPublish>();
  private serial = 0;
  private closed = false;

  constructor(url: string, host: string, private readonly opts: RelayConnectionOptions) {
    this.url = url;
    this.host = host;
  }

  get isOpen(): boolean {
    return this.ws !== undefined && this.ws.readyState === WebSocket.OPEN;
  }

  /** Resolves once the connection is open; a dial in progress is shared by every caller. */
  async connect(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.closed) throw new Error('connection closed');
    if (this.isOpen) return;
    this.opening ??= this.dial().finally(() => {
      this.opening = undefined;
    });
    const opening = this.opening;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      opening.then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private dial(): Promise<WebSocket> {
    return new Promise<WebSocket>((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(this.url, {
        handshakeTimeout: this.opts.handshakeTimeoutMs,
        maxPayload: this.opts.maxMessageBytes,
        perMessageDeflate: false,
        followRedirects: false,
      });
      this.ws = ws;
      // Errors after the handshake are followed by 'close'; this listener only keeps them from being thrown.
      ws.on('error', (err: Error) => {
        if (opened) return;
        this.failures++;
        this.lastFailureAt = Date.now();
        if (this.ws === ws) this.ws = undefined;
        reject(new Error(peerText(err.message || 'connection failed')));
      });
      ws.once('open', () => {
        opened = true;
        if (this.closed) {
          ws.terminate();
          reject(new Error('connection closed'));
          return;
        }
        this.failures = 0;
        resolve(ws);
      });
      ws.on('close', (code: number) => {
        if (!opened) {
          if (this.ws === ws) this.ws = undefined;
          reject(new Error(`connection closed during handshake (code ${code})`));
          return;
        }
        this.dropped(ws, `connection closed (code ${code})`);
      });
      ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
        if (this.ws !== ws || isBinary) return;
        this.onMessage(data.toString());
      });
    });
  }

  /** Fails everything that waits on this socket; the next call dials a new one. */
  private dropped(ws: WebSocket, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = undefined;
    this.failAll(reason);
    if (!this.closed) this.opts.onDisconnect?.(this.host, reason);
  }

  private failAll(reason: string): void {
    const subs = [...this.subs.values()];
    const pubs = [...this.publishes.values()];
    this.subs.clear();
    this.publishes.clear();
    for (const p of pubs) p.reject(new Error(reason));
    for (const s of subs) s.handlers.onClosed(reason);
  }

  private send(message: unknown[]): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error('not connected');
    ws.send(JSON.stringify(message));
  }

  /** Opens a subscription on the open connection. Its REQ goes out before anything sent after this call. */
  subscribe(filter: Filter, handlers: RelaySubscriptionHandlers): RelaySubscription {
    const id = `nwc:${++this.serial}`;
    this.send(['REQ', id, filter]);
    this.subs.set(id, { filter, handlers });
    return {
      close: () => {
        if (!this.subs.delete(id)) return;
        try {
          this.send(['CLOSE', id]);
        } catch {
          // The connection is gone; so is the subscription.
        }
      },
    };
  }

  /** Sends the event and waits for the relay's OK. Rejects on a refusal, a dropped connection or abort. */
  publish(event: Event, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = () => {
        if (this.publishes.get(event.id) === entry) this.publishes.delete(event.id);
        reject(abortError(signal));
      };
      const entry: PendingPublish = {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.publishes.set(event.id, entry);
      try {
        this.send(['EVENT', event]);
      } catch (err) {
        this.publishes.delete(event.id);
        entry.reject(err as Error);
      }
    });
  }

  private onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!Array.isArray(msg) || typeof msg[0] !== 'string') return;
    switch (msg[0]) {
      case 'EVENT': {
        const sub = typeof msg[1] === 'string' ? this.subs.get(msg[1]) : undefined;
        const event = msg[2] as Event;
        if (!sub || typeof event !== 'object' || event === null) return;
        let valid = false;
        try {
          // A relay can send anything: only events that match our filter and carry a valid signature count.
          valid = matchFilter(sub.filter, event) && verifyEvent(event);
        } catch {
          valid = false;
        }
        if (valid) sub.handlers.onEvent(event);
        return;
      }
      case 'OK': {
        const pending = typeof msg[1] === 'string' ? this.publishes.get(msg[1]) : undefined;
        if (!pending) return;
        this.publishes.delete(msg[1] as string);
        if (msg[2] === true) pending.resolve();
        else pending.reject(new Error(`relay refused the event: ${peerText(msg[3] ?? '')}`));
        return;
      }
      case 'EOSE': {
        const sub = typeof msg[1] === 'string' ? this.subs.get(msg[1]) : undefined;
        sub?.handlers.onEose?.();
        return;
      }
      case 'CLOSED': {
        const id = msg[1];
        const sub = typeof id === 'string' ? this.subs.get(id) : undefined;
        if (!sub) return;
        this.subs.delete(id as string);
        sub.handlers.onClosed(`relay closed the subscription: ${peerText(msg[2] ?? '')}`);
        return;
      }
      case 'NOTICE':
        this.opts.onNotice?.(this.host, peerText(msg[1] ?? ''));
        return;
      default:
        return;
    }
  }

  /** Drops the connection (e.g. it stopped answering); the next call dials again. */
  reset(reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.dropped(ws, reason);
    ws.terminate();
  }

  /** Closes for good. Terminates rather than waits for a closing handshake a dead relay would never finish. */
  close(): void {
    this.closed = true;
    const ws = this.ws;
    this.ws = undefined;
    this.failAll('connection closed');
    ws?.terminate();
  }
}
