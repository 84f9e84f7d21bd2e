// One LNC connection, client side, layer by layer: mailbox websockets → go-back-N → LNC data messages
// (version 0, u32 length, payload) → Noise handshake → an encrypted byte stream that HTTP/2 (gRPC) runs
// on. The first connection of a pairing uses the phrase (XX); once the node's static key is known every
// later one uses both static keys (KK) and a session id derived from them.
import { createHash, createHmac } from 'node:crypto';
import { Duplex } from 'node:stream';
import { GbnConn } from './gbn.js';
import { MailboxError, MailboxLink, streamIds, type MailboxAddress } from './mailbox.js';
import { ecdh, Handshake, MAX_NOISE_MESSAGE, NoiseError, type NoiseTransport } from './noise.js';
import { pairingSid } from './phrase.js';
import { withTimeout, type TimeoutOptions } from '../../../util/timeout.js';

/** LNC's data message: version byte 0, big-endian u32 length, payload. */
export function encodeMsgData(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

export function decodeMsgData(b: Buffer): Buffer {
  if (b.length < 5) throw new Error('LNC data message shorter than its header');
  const len = b.readUInt32BE(1);
  if (b.length < 5 + len) throw new Error('LNC data message shorter than its length says');
  return b.subarray(5, 5 + len);
}

/** Session id of a connection between two known static keys: SHA-512(HMAC-SHA256(ECDH, "mailbox")). */
export function knownKeysSid(localPriv: Buffer, remotePub: Buffer): Buffer {
  const secret = createHmac('sha256', ecdh(remotePub, localPriv)).update('mailbox').digest();
  return createHash('sha512').update(secret).digest();
}

export function sessionSid(entropy: Buffer, localPriv: Buffer, remotePub: Buffer | undefined): Buffer {
  return remotePub ? knownKeysSid(localPriv, remotePub) : pairingSid(entropy);
}

/** Thrown while connecting; `kind` lets the backend word it for the operator. */
export class LncConnectError extends Error {
  override readonly name = 'LncConnectError';
  constructor(readonly kind: 'not-found' | 'occupied' | 'unreachable' | 'handshake' | 'timeout' | 'closed', message: string) {
    super(message);
  }
}

/**
 * Writes to the encrypted stream are gathered until the end of the current tick and sent as one noise
 * message (header and body in one data message, which Go's reader takes as the byte stream it is): the
 * mailbox rate-limits each stream (aperture: one message per 500 ms after a burst of 10), so every
 * go-back-N packet saved is latency saved.
 */
export class SealedWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private scheduled = false;

  constructor(private readonly noise: NoiseTransport, private readonly send: (msg: Buffer) => void, private readonly onError: (err: Error) => void) {}

  write(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= MAX_NOISE_MESSAGE) return this.flush();
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (!this.pending.length) return;
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      for (let off = 0; off < all.length; off += MAX_NOISE_MESSAGE) {
        const [head, body] = this.noise.seal(all.subarray(off, off + MAX_NOISE_MESSAGE));
        this.send(encodeMsgData(Buffer.concat([head, body])));
      }
    } catch (err) {
      this.onError(err as Error);
    }
  }
}

/** The encrypted stream; `onClosed` reasons never carry secrets. */
export class LncStream extends Duplex {
  private readonly writer: SealedWriter;

  constructor(private readonly gbn: GbnConn, private readonly link: MailboxLink, private readonly noise: NoiseTransport) {
    super({ allowHalfOpen: false });
    this.writer = new SealedWriter(noise, (m) => gbn.send(m), (err) => this.destroy(err));
    // Failures surface through 'close' (the backend reconnects); an unheard 'error' must not end the process.
    this.on('error', () => {});
  }

  /** Called with each data message once the handshake is over. */
  deliver(payload: Buffer): void {
    let msgs: Buffer[];
    try {
      msgs = this.noise.open(payload);
    } catch {
      this.destroy(new Error('LNC message failed authentication'));
      return;
    }
    for (const m of msgs) this.push(m);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.gbn.closed) return cb(new Error('LNC connection closed'));
    this.writer.write(chunk);
    cb();
  }

  override _read(): void {}

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.gbn.close();
    this.link.close();
    cb(err);
  }
}

export interface OpenOptions {
  mailbox: MailboxAddress;
  entropy: Buffer;
  /** The scrypt-stretched entropy (pairing only). */
  stretched: () => Promise<Buffer>;
  localPriv: Buffer;
  remotePub?: Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface OpenedConnection {
  stream: LncStream;
  /** The node's static key (to keep for later KK connections; only from handshake version ≥ 2). */
  remotePub: Buffer | undefined;
  authData: Buffer;
  pattern: 'XX' | 'KK';
}

/** Opens one connection and completes the handshake within `timeoutMs`. */
export async function openLncConnection(o: OpenOptions): Promise<OpenedConnection> {
  const pattern = o.remotePub ? 'KK' : 'XX';
  const stretched = pattern === 'XX' ? await o.stretched() : undefined;
  const sid = sessionSid(o.entropy, o.localPriv, o.remotePub);
  const opening = MailboxLink.open(o.mailbox, streamIds(sid), o.timeoutMs);
  // Given up on (timeout, close): a link that opens later is closed at once.
  const link = await withTimeout(opening, o.timeoutMs, 'LNC mailbox', attemptBounds(o.timeoutMs, o.signal, () => void opening.then((l) => l.close(), () => {}))).catch((err: unknown) => {
    if (err instanceof MailboxError) throw new LncConnectError(err.kind === 'unreachable' ? 'unreachable' : 'closed', err.message);
    throw err;
  });
  const inbox: Buffer[] = [];
  let wake: (() => void) | undefined;
  let failure: LncConnectError | undefined;
  const fail = (e: LncConnectError): void => {
    failure ??= e;
    wake?.();
  };
  let stream: LncStream | undefined;
  const gbn = new GbnConn({
    role: 'client',
    send: (b) => link.send(b),
    onMessage: (m) => {
      let payload: Buffer;
      try {
        payload = decodeMsgData(m);
      } catch (err) {
        gbn.close((err as Error).message);
        return;
      }
      if (stream) stream.deliver(payload);
      else {
        inbox.push(payload);
        wake?.();
      }
    },
    onClose: (reason) => {
      if (stream) stream.destroy(new Error(`LNC connection closed: ${reason}`));
      else fail(new LncConnectError('closed', `the node closed the connection during the handshake: ${reason}`));
    },
  });
  link.onMessage = (b) => gbn.receive(b);
  link.onClose = (err: MailboxError) => {
    const kind = err.kind === 'not-found' || err.kind === 'occupied' ? err.kind : err.kind === 'unreachable' ? 'unreachable' : 'closed';
    if (stream) stream.destroy(new Error(err.message));
    else fail(new LncConnectError(kind, err.message));
    gbn.close(err.message, false);
  };
  const cleanup = (): void => {
    gbn.close('connect failed', false);
    link.close();
  };
  const next = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (failure) {
          reject(failure);
          return true;
        }
        const m = inbox.shift();
        if (m) {
          resolve(m);
          return true;
        }
        return false;
      };
      if (!check()) wake = () => void check();
    });
  const run = async (): Promise<OpenedConnection> => {
    // A mailbox failure closes the go-back-n connection, which rejects its handshake.
    await gbn.handshake().catch((err: Error) => {
      throw failure ?? new LncConnectError('closed', err.message);
    });
    if (failure) throw failure;
    const hs = new Handshake({ initiator: true, pattern, localPriv: o.localPriv, remotePub: o.remotePub, stretched });
    try {
      while (!hs.done) {
        if (hs.ourTurn) gbn.send(encodeMsgData(hs.writeAct()));
        else hs.readAct(await next());
      }
    } catch (err) {
      if (err instanceof NoiseError) {
        throw new LncConnectError('handshake', pattern === 'XX'
          ? 'the LNC handshake failed: the node did not prove it knows this pairing phrase'
          : 'the LNC handshake failed: the node did not prove it holds the paired session key');
      }
      throw err;
    }
    const s = new LncStream(gbn, link, hs.split());
    stream = s;
    for (const m of inbox.splice(0)) s.deliver(m);
    return { stream: s, remotePub: hs.version >= 2 ? hs.remoteStatic : undefined, authData: hs.receivedPayload ?? Buffer.alloc(0), pattern };
  };
  try {
    return await withTimeout(run(), o.timeoutMs, 'LNC handshake', attemptBounds(o.timeoutMs, o.signal, cleanup));
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** The bounds of a connection attempt: `ms`, or the caller's abort; either runs `cleanup` and names its reason. */
function attemptBounds(ms: number, signal: AbortSignal | undefined, cleanup: () => void): TimeoutOptions {
  return {
    signal,
    onGiveUp: cleanup,
    timeoutError: () => new LncConnectError('timeout', `no LNC connection within ${ms} ms`),
    abortError: () => new LncConnectError('closed', 'aborted'),
  };
}
