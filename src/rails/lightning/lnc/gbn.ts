// Go-back-N, the reliability layer LNC runs over the mailbox streams (a message relay that may drop or
// repeat messages when a websocket reconnects). Packets: SYN(1) n, DATA(2) seq final ping payload,
// ACK(3) seq, NACK(4) seq, FIN(5), SYNACK(6). The client sends SYN(n), the server echoes SYN(n), the
// client confirms with SYNACK; then each side numbers its DATA packets modulo n+1, keeps at most n
// unacknowledged, resends them all when no ACK comes in time or on a NACK, and acknowledges in-order
// packets (a NACK names the one it expected). An idle side sends a ping (an empty DATA flagged ping)
// and gives up when nothing comes back. FIN ends the connection.
export const SYN = 0x01;
export const DATA = 0x02;
export const ACK = 0x03;
export const NACK = 0x04;
export const FIN = 0x05;
export const SYNACK = 0x06;
export const DEFAULT_N = 20;
/** Largest message reassembled from chunks (LNC's Go side sends each message as one chunk). */
export const MAX_MESSAGE = 1024 * 1024;
const MAX_RESEND_MS = 30_000;

export type Packet =
  | { type: 'syn'; n: number }
  | { type: 'data'; seq: number; final: boolean; ping: boolean; payload: Buffer }
  | { type: 'ack'; seq: number }
  | { type: 'nack'; seq: number }
  | { type: 'fin' }
  | { type: 'synack' };

export function encodePacket(p: Packet): Buffer {
  switch (p.type) {
    case 'syn': return Buffer.from([SYN, p.n]);
    case 'data': return Buffer.concat([Buffer.from([DATA, p.seq, p.final ? 1 : 0, p.ping ? 1 : 0]), p.payload]);
    case 'ack': return Buffer.from([ACK, p.seq]);
    case 'nack': return Buffer.from([NACK, p.seq]);
    case 'fin': return Buffer.from([FIN]);
    case 'synack': return Buffer.from([SYNACK]);
  }
}

/** Parses one packet; undefined for anything malformed (the connection treats that as fatal). */
export function decodePacket(b: Buffer): Packet | undefined {
  switch (b[0]) {
    case SYN: return b.length >= 2 ? { type: 'syn', n: b[1]! } : undefined;
    case DATA: return b.length >= 4 ? { type: 'data', seq: b[1]!, final: b[2] === 1, ping: b[3] === 1, payload: b.subarray(4) } : undefined;
    case ACK: return b.length >= 2 ? { type: 'ack', seq: b[1]! } : undefined;
    case NACK: return b.length >= 2 ? { type: 'nack', seq: b[1]! } : undefined;
    case FIN: return { type: 'fin' };
    case SYNACK: return { type: 'synack' };
    default: return undefined;
  }
}

export interface GbnOptions {
  role: 'client' | 'server';
  n?: number;
  /** Resend unacknowledged packets after this long without progress. */
  resendMs?: number;
  /** Client: resend SYN after this long. */
  handshakeMs?: number;
  /** Send a ping after this long without hearing anything... */
  pingMs?: number;
  /** ...and give up this long after the ping when still nothing came. */
  pongMs?: number;
  /** Hands one packet to the mailbox. */
  send: (bytes: Buffer) => void;
  /** A complete message (chunks joined). */
  onMessage: (payload: Buffer) => void;
  /** The connection ended: `reason` says why (FIN from the peer, keepalive, protocol error, local close). */
  onClose: (reason: string) => void;
}

interface Timer { ref: NodeJS.Timeout | undefined }

function clear(t: Timer): void {
  if (t.ref) clearTimeout(t.ref);
  t.ref = undefined;
}

export class GbnConn {
  private readonly o: Required<Omit<GbnOptions, 'send' | 'onMessage' | 'onClose'>> & Pick<GbnOptions, 'send' | 'onMessage' | 'onClose'>;
  private n: number;
  private s: number;
  private state: 'handshake' | 'open' | 'closed' = 'handshake';
  private handshakeWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private synSent = false;
  /** Unacknowledged packets, oldest first. */
  private inflight: Array<{ seq: number; final: boolean; ping: boolean; payload: Buffer; sentAt: number; resent: boolean }> = [];
  /** Current resend timeout: 5 × the smoothed round trip (the mailbox may hold packets back), boosted on resends. */
  private resendMs: number;
  private srtt: number | undefined;
  private lastResendAt = 0;
  private backlog: Array<{ final: boolean; ping: boolean; payload: Buffer }> = [];
  private nextSeq = 0;
  private recvSeq = 0;
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private lastNack: { seq: number; at: number } | undefined;
  private readonly resendTimer: Timer = { ref: undefined };
  private readonly pingTimer: Timer = { ref: undefined };
  private readonly pongTimer: Timer = { ref: undefined };
  private readonly synTimer: Timer = { ref: undefined };

  constructor(opts: GbnOptions) {
    this.o = {
      n: DEFAULT_N, resendMs: 1000, handshakeMs: 2000,
      pingMs: opts.role === 'client' ? 7000 : 5000, pongMs: 3000,
      ...opts,
    };
    this.n = this.o.n;
    this.s = this.n + 1;
    this.resendMs = this.o.resendMs;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Resolves once the SYN / SYN / SYNACK exchange is done. */
  handshake(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.handshakeWaiter = { resolve, reject };
      if (this.o.role === 'client') this.sendSyn();
    });
  }

  private sendSyn(): void {
    if (this.state !== 'handshake') return;
    this.raw({ type: 'syn', n: this.n });
    this.synTimer.ref = setTimeout(() => this.sendSyn(), this.o.handshakeMs);
  }

  private raw(p: Packet): void {
    if (this.state === 'closed') return;
    try {
      this.o.send(encodePacket(p));
    } catch (err) {
      this.close(`mailbox send failed: ${(err as Error).message}`, false);
    }
  }

  private opened(): void {
    clear(this.synTimer);
    this.state = 'open';
    this.armPing();
    this.handshakeWaiter?.resolve();
    this.handshakeWaiter = undefined;
  }

  /** Queues one message (sent as a single final chunk, as LNC's Go side does by default). */
  send(payload: Buffer): void {
    if (this.state !== 'open') throw new Error('go-back-n connection is not open');
    this.backlog.push({ final: true, ping: false, payload });
    this.pump();
  }

  private pump(): void {
    while (this.state === 'open' && this.backlog.length && this.inflight.length < this.n) {
      const next = this.backlog.shift()!;
      const pkt = { seq: this.nextSeq, ...next, sentAt: Date.now(), resent: false };
      this.nextSeq = (this.nextSeq + 1) % this.s;
      this.inflight.push(pkt);
      this.raw({ type: 'data', seq: pkt.seq, final: pkt.final, ping: pkt.ping, payload: pkt.payload });
      if (!this.resendTimer.ref) this.armResend();
    }
  }

  private armResend(): void {
    clear(this.resendTimer);
    if (!this.inflight.length || this.state !== 'open') return;
    this.resendTimer.ref = setTimeout(() => {
      this.resendTimer.ref = undefined;
      this.resendAll();
    }, this.resendMs);
  }

  private resendAll(): void {
    const now = Date.now();
    // Like Go's queue: never resend the window more often than the handshake timeout.
    if (now - this.lastResendAt >= Math.min(this.o.handshakeMs, this.resendMs)) {
      this.lastResendAt = now;
      for (const p of this.inflight) {
        p.resent = true;
        this.raw({ type: 'data', seq: p.seq, final: p.final, ping: p.ping, payload: p.payload });
      }
      this.resendMs = Math.min(MAX_RESEND_MS, Math.round(this.resendMs * 1.5));
    }
    this.armResend();
  }

  /** A round-trip sample from a packet acknowledged without having been resent. */
  private sample(sentAt: number): void {
    const rtt = Date.now() - sentAt;
    this.srtt = this.srtt === undefined ? rtt : 0.8 * this.srtt + 0.2 * rtt;
    this.resendMs = Math.min(MAX_RESEND_MS, Math.max(this.o.resendMs, Math.round(5 * this.srtt)));
  }

  private armPing(): void {
    clear(this.pingTimer);
    if (this.state !== 'open') return;
    this.pingTimer.ref = setTimeout(() => {
      this.pingTimer.ref = undefined;
      this.backlog.push({ final: false, ping: true, payload: Buffer.alloc(0) });
      this.pump();
      if (!this.pongTimer.ref) {
        this.pongTimer.ref = setTimeout(() => this.close('no answer to keepalive ping', false), this.o.pongMs);
      }
    }, this.o.pingMs);
  }

  /** Feeds one packet received from the mailbox. */
  receive(bytes: Buffer): void {
    if (this.state === 'closed') return;
    const p = decodePacket(bytes);
    if (!p) return this.close('malformed go-back-n packet', true);
    if (this.state === 'handshake') return this.receiveHandshake(p);
    this.armPing();
    clear(this.pongTimer);
    switch (p.type) {
      case 'data':
        return this.receiveData(p);
      case 'ack':
        return this.receiveAck(p.seq);
      case 'nack':
        return this.receiveNack(p.seq);
      case 'fin':
        return this.close('peer closed the connection (FIN)', false, true);
      case 'syn':
        // Client: a late copy of the server's answer. Server: the client restarted; the old state is useless.
        if (this.o.role === 'client') return;
        return this.close('peer restarted the go-back-n handshake', true);
      case 'synack':
        return; // a late duplicate
    }
  }

  private receiveHandshake(p: Packet): void {
    if (this.o.role === 'client') {
      if (p.type !== 'syn') return; // anything else before the server's SYN is stale
      if (p.n !== this.n) return this.close(`server answered with window ${p.n}, expected ${this.n}`, false);
      this.raw({ type: 'synack' });
      return this.opened();
    }
    if (p.type === 'syn') {
      if (p.n < 1 || p.n >= 255) return this.close(`client asked for window ${p.n}`, false);
      this.n = p.n;
      this.s = p.n + 1;
      this.synSent = true;
      this.raw({ type: 'syn', n: p.n });
      return;
    }
    if (this.synSent && (p.type === 'synack' || p.type === 'data')) {
      this.opened();
      if (p.type === 'data') this.receiveData(p);
    }
  }

  private receiveData(p: Extract<Packet, { type: 'data' }>): void {
    if (p.seq === this.recvSeq) {
      this.raw({ type: 'ack', seq: p.seq });
      this.recvSeq = (this.recvSeq + 1) % this.s;
      if (p.ping) return;
      this.chunks.push(Buffer.from(p.payload));
      this.chunkBytes += p.payload.length;
      if (this.chunkBytes > MAX_MESSAGE) return this.close('go-back-n message larger than allowed', true);
      if (!p.final) return;
      this.chunkBytes = 0;
      const msg = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = [];
      this.o.onMessage(msg);
      return;
    }
    const now = Date.now();
    if (this.lastNack && this.lastNack.seq === this.recvSeq && now - this.lastNack.at < 2 * this.o.resendMs) return;
    this.lastNack = { seq: this.recvSeq, at: now };
    this.raw({ type: 'nack', seq: this.recvSeq });
  }

  private receiveAck(seq: number): void {
    const idx = this.inflight.findIndex((p) => p.seq === seq);
    if (idx < 0) return;
    const acked = this.inflight[idx]!;
    if (!acked.resent) this.sample(acked.sentAt);
    // Cumulative: everything up to and including seq is through.
    this.inflight.splice(0, idx + 1);
    this.armResend();
    this.pump();
  }

  private receiveNack(seq: number): void {
    if (seq === this.nextSeq) {
      // The peer has everything we sent.
      this.inflight = [];
      clear(this.resendTimer);
      this.pump();
      return;
    }
    const idx = this.inflight.findIndex((p) => p.seq === seq);
    if (idx < 0) return;
    this.inflight.splice(0, idx);
    this.resendAll();
    this.pump();
  }

  /** Ends the connection; sends FIN unless the peer already did or the link is broken. */
  close(reason = 'closed locally', sendFin = true, byPeer = false): void {
    if (this.state === 'closed') return;
    if (sendFin && !byPeer) this.raw({ type: 'fin' });
    this.state = 'closed';
    for (const t of [this.resendTimer, this.pingTimer, this.pongTimer, this.synTimer]) clear(t);
    this.inflight = [];
    this.backlog = [];
    this.handshakeWaiter?.reject(new Error(reason));
    this.handshakeWaiter = undefined;
    this.o.onClose(reason);
  }
}
