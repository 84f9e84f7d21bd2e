// A protocol-faithful Lightning Node Connect peer, both halves:
// - a hashmail mailbox server: HTTPS + websockets on the grpc-gateway paths LNC clients use
//   (/v1/lightning-node-connect/hashmail/receive and /send, ?method=POST), JSON framing with base64 stream
//   ids and messages, {"result": ...} per delivered message, {"error": {... "stream not found"}} for an
//   unknown stream and "stream occupied" for a second reader; streams exist only once the node side
//   created them, as litd does through the mailbox's gRPC API;
// - the node side (litd's role): a pairing phrase and session macaroon, the go-back-N server, the Noise
//   responder (XXeke+SPAKE2 for the pairing, KK with the stored client key afterwards, on the stream ids
//   each handshake implies) and an HTTP/2 server on the encrypted stream that checks the session macaroon
//   and forwards each gRPC call byte for byte to an lnd peer (test/peers/lnd-peer.ts) with lnd's own
//   macaroon, as litd forwards LNC calls to lnd.
// Knobs: take the mailbox down and up, make the node vanish (stop answering without a FIN) and return.
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import WebSocket, { WebSocketServer } from 'ws';
import { decodeMsgData, encodeMsgData, knownKeysSid, SealedWriter } from '../../src/rails/lightning/lnc/conn.js';
import { GbnConn } from '../../src/rails/lightning/lnc/gbn.js';
import { RECEIVE_PATH, SEND_PATH, streamIds } from '../../src/rails/lightning/lnc/mailbox.js';
import { Handshake, newPrivateKey, type NoiseTransport } from '../../src/rails/lightning/lnc/noise.js';
import { pairingSid, phraseToEntropy, stretchEntropy } from '../../src/rails/lightning/lnc/phrase.js';
import { encodeMacaroon, mintMacaroon } from '../../src/protocol/macaroon.js';
import { makeSelfSignedCert, type LndPeer } from './lnd-peer.js';

const MAX_QUEUE = 1000;

interface Stream {
  /** Messages waiting for a rate-limiter token. */
  limited: Buffer[];
  tokens: number;
  refilledAt: number;
  timer: NodeJS.Timeout | undefined;
  queue: Buffer[];
  /** A websocket reader (the client) or an in-process one (the node). */
  reader: WebSocket | ((b: Buffer) => void) | undefined;
  /** The one send socket allowed to write this stream (aperture hands out one write end at a time). */
  writer: WebSocket | undefined;
}

export interface Mailbox {
  port: number;
  address: string;
  caPath: string;
  /** Websocket connections accepted, per path. */
  upgrades: { receive: number; send: number };
  createStream(sid: Buffer): void;
  deleteStream(sid: Buffer): void;
  hasStream(sid: Buffer): boolean;
  /** Node side: read a stream in-process. */
  attach(sid: Buffer, reader: (b: Buffer) => void): void;
  detach(sid: Buffer): void;
  /** Node side: write a stream in-process. */
  write(sid: Buffer, msg: Buffer): void;
  /** Refuse websocket upgrades and drop every open socket. */
  down(): void;
  up(): void;
  stop(): Promise<void>;
}

/**
 * `rate`: aperture's per-stream limiter (one message per 500 ms after a burst of 10; writers wait, nothing
 * is dropped). LNC clients have to live with it, so the tests do too unless they say otherwise.
 */
export async function startMailbox(dir: string, opts: { rate?: { everyMs: number; burst: number } } = {}): Promise<Mailbox> {
  const rate = opts.rate ?? { everyMs: 500, burst: 10 };
  const { certPath, keyPath } = makeSelfSignedCert(dir, 'mailbox');
  const streams = new Map<string, Stream>();
  const key = (sid: Buffer): string => sid.toString('base64');
  const sockets = new Set<WebSocket>();
  let isDown = false;
  const upgrades = { receive: 0, send: 0 };
  const server = https.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 512 * 1024 });
  const newStream = (): Stream => ({ limited: [], tokens: rate.burst, refilledAt: Date.now(), timer: undefined, queue: [], reader: undefined, writer: undefined });
  /** Passes a written message on once the stream's limiter allows it. */
  const admit = (s: Stream, msg: Buffer, sidB64: string): void => {
    if (s.limited.length >= MAX_QUEUE) return;
    s.limited.push(msg);
    pump(s, sidB64);
  };
  const pump = (s: Stream, sidB64: string): void => {
    const now = Date.now();
    s.tokens = Math.min(rate.burst, s.tokens + (now - s.refilledAt) / rate.everyMs);
    s.refilledAt = now;
    while (s.limited.length && s.tokens >= 1) {
      s.tokens -= 1;
      deliver(s, s.limited.shift()!, sidB64);
    }
    if (s.limited.length && !s.timer) {
      s.timer = setTimeout(() => {
        s.timer = undefined;
        if (streams.get(sidB64) === s) pump(s, sidB64);
      }, Math.ceil((1 - s.tokens) * rate.everyMs));
    }
  };
  const deliver = (s: Stream, msg: Buffer, sidB64: string): void => {
    if (typeof s.reader === 'function') return s.reader(msg);
    if (s.reader && s.reader.readyState === WebSocket.OPEN) {
      s.reader.send(JSON.stringify({ result: { desc: { stream_id: sidB64 }, msg: msg.toString('base64') } }));
      return;
    }
    if (s.queue.length < MAX_QUEUE) s.queue.push(msg);
  };
  const fail = (ws: WebSocket, code: number, message: string): void => {
    ws.send(JSON.stringify({ error: { code, message, details: [] } }));
    ws.close(1000);
  };
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'https://mailbox');
    const path = url.pathname === RECEIVE_PATH ? 'receive' : url.pathname === SEND_PATH ? 'send' : undefined;
    if (isDown || !path || url.searchParams.get('method') !== 'POST') {
      socket.end(`HTTP/1.1 ${isDown ? '503 Service Unavailable' : '404 Not Found'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgrades[path]++;
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => {});
      if (path === 'receive') {
        let attached: Stream | undefined;
        ws.once('message', (data) => {
          let sid: string;
          try {
            sid = String((JSON.parse(data.toString()) as { stream_id?: unknown }).stream_id ?? '');
          } catch {
            return fail(ws, 3, 'invalid JSON');
          }
          const s = streams.get(sid);
          if (!s) return fail(ws, 5, 'stream not found');
          if (s.reader) return fail(ws, 6, 'read stream occupied');
          s.reader = ws;
          attached = s;
          for (const m of s.queue.splice(0)) deliver(s, m, sid);
        });
        ws.on('close', () => {
          if (attached && attached.reader === ws) attached.reader = undefined;
        });
      } else {
        ws.on('message', (data) => {
          let box: { desc?: { stream_id?: unknown }; msg?: unknown };
          try {
            box = JSON.parse(data.toString()) as typeof box;
          } catch {
            return fail(ws, 3, 'invalid JSON');
          }
          const sid = String(box.desc?.stream_id ?? '');
          const s = streams.get(sid);
          if (!s) return fail(ws, 5, 'stream not found');
          if (typeof box.msg !== 'string') return fail(ws, 3, 'missing msg');
          if (s.writer && s.writer !== ws && s.writer.readyState === WebSocket.OPEN) return fail(ws, 6, 'write stream occupied');
          if (s.writer !== ws) {
            s.writer = ws;
            ws.on('close', () => {
              if (s.writer === ws) s.writer = undefined;
            });
          }
          admit(s, Buffer.from(box.msg, 'base64'), sid);
        });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    caPath: certPath,
    upgrades,
    createStream(sid) {
      if (!streams.has(key(sid))) streams.set(key(sid), newStream());
    },
    deleteStream(sid) {
      const s = streams.get(key(sid));
      if (s && s.reader && typeof s.reader !== 'function') s.reader.close(1000);
      if (s?.timer) clearTimeout(s.timer);
      streams.delete(key(sid));
    },
    hasStream: (sid) => streams.has(key(sid)),
    attach(sid, reader) {
      const s = streams.get(key(sid));
      if (!s) throw new Error('no such stream');
      s.reader = reader;
      for (const m of s.queue.splice(0)) reader(m);
    },
    detach(sid) {
      const s = streams.get(key(sid));
      if (s && typeof s.reader === 'function') s.reader = undefined;
    },
    write(sid, msg) {
      const s = streams.get(key(sid));
      if (s) admit(s, msg, key(sid));
    },
    down() {
      isDown = true;
      for (const ws of sockets) ws.terminate();
    },
    up() {
      isDown = false;
    },
    async stop() {
      for (const s of streams.values()) clearTimeout(s.timer);
      for (const ws of sockets) ws.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The node's end of one connection: gbn server → data messages → Noise responder → HTTP/2 server. */
class NodeStream extends Duplex {
  private readonly writer: SealedWriter;
  constructor(private readonly gbn: GbnConn, private readonly noise: NoiseTransport) {
    super({ allowHalfOpen: false });
    this.writer = new SealedWriter(noise, (m) => gbn.send(m), (err) => this.destroy(err));
  }
  deliver(payload: Buffer): void {
    try {
      for (const m of this.noise.open(payload)) this.push(m);
    } catch {
      this.destroy(new Error('bad MAC'));
    }
  }
  override _write(chunk: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.gbn.closed) return cb(new Error('closed'));
    this.writer.write(chunk);
    cb();
  }
  override _read(): void {}
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.gbn.close();
    cb(err);
  }
}

export interface LncNodeKnobs {
  /** Refuse every call with lnd's macaroon error (session without the needed permissions). */
  denyCalls: boolean;
  /** The grpc-message of that refusal (a hostile node may echo anything, secrets included). */
  denyMessage: string;
}

export interface LncNode {
  phrase: string;
  /** Hex of the session macaroon the node hands the client in the handshake. */
  macaroonHex: string;
  /** The client key learned at pairing (undefined before). */
  clientKey(): Buffer | undefined;
  knobs: LncNodeKnobs;
  handshakes: Array<'XX' | 'KK'>;
  /** Calls forwarded to lnd, by gRPC path. */
  calls: string[];
  /** Stop answering everything, without a FIN (node gone). */
  vanish(): void;
  /** Come back, listening on the current session's streams. */
  comeBack(): void;
  /** Vanish as soon as the next call arrives (mid-call). */
  vanishOnNextCall(): void;
  stop(): Promise<void>;
}

export function randomPhrase(): string {
  return Array.from({ length: 10 }, () => wordlist[randomInt(2048)]!).join(' ');
}

export async function startLncNode(mailbox: Mailbox, lnd: LndPeer, opts: { phrase?: string } = {}): Promise<LncNode> {
  const phrase = opts.phrase ?? randomPhrase();
  const entropy = phraseToEntropy(phrase);
  const stretched = await stretchEntropy(entropy);
  const nodePriv = newPrivateKey();
  const sessionMacaroon = encodeMacaroon(mintMacaroon(randomBytes(32), randomBytes(33), 'lnc-session', []));
  const macaroonHex = sessionMacaroon.toString('hex');
  const authData = Buffer.from(`Macaroon: ${macaroonHex}`);
  const lndMacHex = lnd.macaroon.toString('hex');
  const upstream = http2.connect(`https://127.0.0.1:${lnd.grpcPort}`, { ca: readFileSync(lnd.certPath) });
  upstream.on('error', () => {});
  let clientKey: Buffer | undefined;
  let vanished = false;
  let vanishNext = false;
  let stopped = false;
  const knobs: LncNodeKnobs = { denyCalls: false, denyMessage: 'verification failed: signature mismatch after caveat verification' };
  const handshakes: Array<'XX' | 'KK'> = [];
  const calls: string[] = [];
  const h2 = http2.createServer();

  // Current streams: server→client = sid, client→server = sid with the last bit flipped.
  let ids = streamIds(pairingSid(entropy));
  let gbn: GbnConn | undefined;
  let hs: Handshake | undefined;
  let stream: NodeStream | undefined;

  const register = (): void => {
    mailbox.createStream(ids.recv);
    mailbox.createStream(ids.send);
    mailbox.attach(ids.send, onPacket);
  };
  const resetConn = (): void => {
    stream?.destroy();
    stream = undefined;
    hs = undefined;
    gbn?.close('reset', false);
    gbn = undefined;
  };
  const newGbn = (): GbnConn => {
    const g: GbnConn = new GbnConn({
      role: 'server',
      send: (b) => {
        if (!vanished) mailbox.write(ids.recv, b);
      },
      onMessage: (m) => onData(g, m),
      onClose: () => {
        if (gbn !== g) return;
        stream?.destroy();
        stream = undefined;
        hs = undefined;
        gbn = undefined;
        // After a completed pairing the phrase's streams go away and the key-derived ones take over.
        if (clientKey && handshakes.length && !stopped) switchToKk();
      },
    });
    void g.handshake().catch(() => {});
    return g;
  };
  const switchToKk = (): void => {
    const kk = streamIds(knownKeysSid(nodePriv, clientKey!));
    if (kk.recv.equals(ids.recv)) return;
    mailbox.detach(ids.send);
    mailbox.deleteStream(ids.send);
    mailbox.deleteStream(ids.recv);
    ids = kk;
    register();
  };
  function onPacket(b: Buffer): void {
    if (vanished || stopped) return;
    if (!gbn || gbn.closed || (b[0] === 0x01 && hs?.done)) {
      if (gbn && !gbn.closed) resetConn();
      gbn = newGbn();
    }
    gbn.receive(b);
  }
  function onData(g: GbnConn, m: Buffer): void {
    if (g !== gbn) return;
    let payload: Buffer;
    try {
      payload = decodeMsgData(m);
    } catch {
      return g.close('bad data message');
    }
    if (stream) return stream.deliver(payload);
    try {
      if (!hs) {
        hs = clientKey
          ? new Handshake({ initiator: false, pattern: 'KK', localPriv: nodePriv, remotePub: clientKey, authData })
          : new Handshake({ initiator: false, pattern: 'XX', localPriv: nodePriv, stretched, authData });
      }
      hs.readAct(payload);
      while (hs.ourTurn) g.send(encodeMsgData(hs.writeAct()));
      if (hs.done) {
        handshakes.push(hs.pattern);
        if (hs.pattern === 'XX') clientKey = hs.remoteStatic;
        const s = new NodeStream(g, hs.split());
        stream = s;
        s.on('error', () => {});
        h2.emit('connection', s);
      }
    } catch {
      // A failed handshake (wrong phrase, wrong key): drop the connection as litd does.
      g.close('handshake failed');
    }
  }

  h2.on('stream', (st, headers) => {
    st.on('error', () => {});
    const path = String(headers[':path']);
    if (vanishNext) {
      vanishNext = false;
      vanished = true;
      return; // never answer; the streams stay silent
    }
    const got = Buffer.from(String(headers.macaroon ?? ''));
    const want = Buffer.from(macaroonHex);
    if (knobs.denyCalls || got.length !== want.length || !timingSafeEqual(got, want)) {
      st.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '2', 'grpc-message': encodeURIComponent(knobs.denyMessage) }, { endStream: true });
      return;
    }
    calls.push(path);
    const fwd: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', macaroon: lndMacHex };
    if (headers['grpc-timeout']) fwd['grpc-timeout'] = headers['grpc-timeout'];
    const up = upstream.request(fwd);
    up.on('error', () => st.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    let trailers: http2.OutgoingHttpHeaders = {};
    // The caller may give up (its deadline, the mailbox taken down under it) before lnd answers: nothing to relay.
    st.on('error', () => up.close(http2.constants.NGHTTP2_CANCEL));
    st.on('close', () => {
      if (!up.closed) up.close(http2.constants.NGHTTP2_CANCEL);
    });
    up.on('response', (h) => {
      if (st.destroyed || st.closed) return;
      if (h['grpc-status'] !== undefined) {
        st.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(h['grpc-status']), 'grpc-message': String(h['grpc-message'] ?? '') }, { endStream: true });
        return;
      }
      st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      st.on('wantTrailers', () => st.sendTrailers(trailers));
      up.on('data', (c: Buffer) => {
        if (!st.destroyed && !st.closed) st.write(c);
      });
    });
    up.on('trailers', (t) => {
      trailers = { 'grpc-status': String(t['grpc-status'] ?? '2'), 'grpc-message': String(t['grpc-message'] ?? '') };
    });
    up.on('end', () => {
      if (!st.headersSent || st.destroyed || st.closed) return;
      st.end();
    });
    st.on('data', (c: Buffer) => up.write(c));
    st.on('end', () => up.end());
  });

  register();

  return {
    phrase,
    macaroonHex,
    clientKey: () => clientKey,
    knobs,
    handshakes,
    calls,
    vanish() {
      vanished = true;
    },
    comeBack() {
      vanished = false;
      resetConn();
      if (clientKey && handshakes.length) switchToKk();
    },
    vanishOnNextCall() {
      vanishNext = true;
    },
    async stop() {
      stopped = true;
      resetConn();
      // Abruptly: a call left hanging (vanish knobs) must not keep the lnd peer from stopping.
      upstream.destroy();
      h2.close();
    },
  };
}
