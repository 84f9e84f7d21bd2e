// lnd's gRPC (lnrpc.Lightning, from lnd's own lightning.proto) as unary calls over HTTP/2 on the LNC
// stream: node:http2 speaks HTTP/2 over the encrypted duplex, @grpc/proto-loader (de)serialises the
// messages, and each call is the gRPC wire format: POST /lnrpc.Lightning/<Method>, a 5-byte
// length-prefixed message each way, status in the trailers. Every call has a deadline.
import http2 from 'node:http2';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import * as protoLoader from '@grpc/proto-loader';
import { GrpcCode } from '../lnd/lnd-rest.js';
import { lndProtoDir } from '../lnd/lnd.js';

export type LncMethod = 'AddInvoice' | 'LookupInvoice' | 'GetInfo';

interface Codec {
  serialize: (v: object) => Buffer;
  deserialize: (b: Buffer) => Record<string, unknown>;
}

let codecs: Record<LncMethod, Codec> | undefined;
export function lightningCodecs(): Record<LncMethod, Codec> {
  if (!codecs) {
    const dir = lndProtoDir();
    const def = protoLoader.loadSync(join(dir, 'lightning.proto'), {
      keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [dir],
    });
    const svc = def['lnrpc.Lightning'] as Record<string, protoLoader.MethodDefinition<object, Record<string, unknown>>> | undefined;
    if (!svc) throw new Error(`lnd protos at ${dir} define no lnrpc.Lightning service`);
    const pick = (m: LncMethod): Codec => {
      const d = svc[m];
      if (!d) throw new Error(`lnd protos at ${dir} have no lnrpc.Lightning/${m}`);
      return { serialize: (v) => d.requestSerialize(v), deserialize: (b) => d.responseDeserialize(b) };
    };
    codecs = { AddInvoice: pick('AddInvoice'), LookupInvoice: pick('LookupInvoice'), GetInfo: pick('GetInfo') };
  }
  return codecs;
}

/** A failed call: gRPC status code and message (never credentials). */
export class GrpcCallError extends Error {
  constructor(readonly code: number, readonly detail: string, readonly transportFailure = false) {
    super(detail);
  }
}

/** Largest reply we accept (lnd answers to these calls are a few KB). */
const MAX_REPLY = 4 * 1024 * 1024;

/** One HTTP/2 client session over an LNC stream. */
export class GrpcOverStream {
  private readonly session: http2.ClientHttp2Session;
  private dead: string | undefined;
  /** Called once when the session ends for any reason. */
  onDead: (why: string) => void = () => {};

  constructor(stream: Duplex, private readonly metadata: Record<string, string>, authority: string) {
    // No server push: the node only ever answers calls.
    this.session = http2.connect(`http://${authority}`, { createConnection: () => stream as never, settings: { enablePush: false } });
    const end = (why: string): void => {
      if (this.dead) return;
      this.dead = why;
      this.onDead(why);
    };
    this.session.on('error', (err) => end(`HTTP/2 session failed: ${err.message}`));
    this.session.on('close', () => end('HTTP/2 session closed'));
    this.session.on('goaway', () => end('the node ended the HTTP/2 session'));
  }

  get closedReason(): string | undefined {
    return this.dead ?? (this.session.closed || this.session.destroyed ? 'HTTP/2 session closed' : undefined);
  }

  close(): void {
    if (!this.dead) this.dead = 'closed';
    this.session.destroy();
  }

  call(method: LncMethod, req: object, timeoutMs: number, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const codec = lightningCodecs()[method];
    return new Promise((resolve, reject) => {
      if (this.closedReason) return reject(new GrpcCallError(GrpcCode.UNAVAILABLE, this.closedReason, true));
      if (signal?.aborted) return reject(new GrpcCallError(GrpcCode.CANCELLED, 'aborted by the caller', true));
      const body = codec.serialize(req);
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      let req2: http2.ClientHttp2Stream;
      try {
        req2 = this.session.request({
          ':method': 'POST',
          ':path': `/lnrpc.Lightning/${method}`,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${Math.max(1, timeoutMs)}m`,
          ...this.metadata,
        });
      } catch (err) {
        return reject(new GrpcCallError(GrpcCode.UNAVAILABLE, `cannot start a call: ${(err as Error).message}`, true));
      }
      let settled = false;
      const finish = (err: GrpcCallError | undefined, value?: Record<string, unknown>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (!req2.closed) req2.close(http2.constants.NGHTTP2_CANCEL);
        if (err) reject(err);
        else resolve(value!);
      };
      const timer = setTimeout(() => finish(new GrpcCallError(GrpcCode.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`, true)), timeoutMs);
      const onAbort = (): void => finish(new GrpcCallError(GrpcCode.CANCELLED, 'aborted by the caller', true));
      signal?.addEventListener('abort', onAbort, { once: true });
      const chunks: Buffer[] = [];
      let size = 0;
      let status: number | undefined;
      let message = '';
      const takeStatus = (h: http2.IncomingHttpHeaders): void => {
        if (h['grpc-status'] !== undefined) {
          status = Number(h['grpc-status']);
          message = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      req2.on('response', (h) => {
        if (Number(h[':status']) !== 200) {
          finish(new GrpcCallError(GrpcCode.UNAVAILABLE, `the node answered HTTP ${h[':status']}`, true));
          return;
        }
        takeStatus(h);
      });
      req2.on('trailers', takeStatus);
      req2.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_REPLY) return finish(new GrpcCallError(GrpcCode.INTERNAL, 'reply too large', true));
        chunks.push(c);
      });
      req2.on('error', (err) => finish(new GrpcCallError(GrpcCode.UNAVAILABLE, `call failed: ${err.message}`, true)));
      req2.on('close', () => {
        if (status === undefined) return finish(new GrpcCallError(GrpcCode.UNAVAILABLE, this.closedReason ?? 'the call ended without a status', true));
        if (status !== GrpcCode.OK) return finish(new GrpcCallError(status, message.slice(0, 300) || 'no details'));
        const all = Buffer.concat(chunks);
        if (all.length < 5 || all[0] !== 0 || all.readUInt32BE(1) !== all.length - 5) {
          return finish(new GrpcCallError(GrpcCode.INTERNAL, 'malformed gRPC reply'));
        }
        try {
          finish(undefined, codec.deserialize(all.subarray(5)));
        } catch {
          finish(new GrpcCallError(GrpcCode.INTERNAL, 'undecodable gRPC reply'));
        }
      });
      req2.end(frame);
    });
  }
}
