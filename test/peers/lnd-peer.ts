// A protocol-faithful stand-in for lnd: a grpc-js TLS server speaking lnrpc.Lightning from lnd's own
// lightning.proto (AddInvoice, LookupInvoice, GetInfo), and an HTTPS front that maps the same calls the
// way lnd's grpc-gateway does (POST /v1/invoices, GET /v2/invoices/lookup, GET /v1/getinfo; bytes as
// base64, 64-bit integers as strings, enums by name, errors as {code, message, details}).
// Invoices are real signed regtest BOLT11 from a DevWallet in the peer's temp dir, and a preimage only
// shows up once the test "pays" through settle().
import { execFileSync } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import lightBolt11 from 'light-bolt11-decoder';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { encodeMacaroon, mintMacaroon } from '../../src/protocol/macaroon.js';
import { sleep } from '../../src/util/timeout.js';

/** Fault knobs; change them on a running peer. */
export interface LndPeerKnobs {
  /** Every call waits this long before answering (slow node). */
  delayMs: number;
  /** Every call fails with UNAVAILABLE (node up but not serving). */
  fail: boolean;
  /**
   * Inconsistent answers: `hash` (r_hash is not the invoice's hash), `amount` (invoice for another
   * amount), `undecodable` (payment_request is not BOLT11), `bad-preimage` (SETTLED with a preimage that
   * does not hash to r_hash), `open-with-preimage` (OPEN plus some r_preimage, as lnd shows the preimage
   * of its own unpaid invoices), `underpaid` (SETTLED with amt_paid_msat one satoshi below value_msat),
   * `long-expiry` (AddInvoice ignores the expiry asked and makes the invoice live 6 days), `huge`
   * (payment_request is the invoice followed by 4 MiB of bech32 letters).
   */
  garbage: false | 'hash' | 'amount' | 'undecodable' | 'bad-preimage' | 'open-with-preimage' | 'underpaid' | 'long-expiry' | 'huge';
  /**
   * How a bad macaroon is refused: `unauthenticated` (gRPC UNAUTHENTICATED) or `lnd` (what lnd really
   * does: its macaroon service returns plain errors, so gRPC reports UNKNOWN / HTTP 500).
   */
  authFailure: 'unauthenticated' | 'lnd';
  /** Unknown invoice as lnd ≥ 0.15 says it (NOT_FOUND) or as older releases did (UNKNOWN, same text). */
  notFound: 'not-found' | 'legacy-unknown';
  /** REST front without the invoicesrpc routes (lnd built without that sub-server). */
  noInvoicesRpc: boolean;
}

export interface LndPeerOptions {
  alias?: string;
  network?: string;
  /**
   * Names on the TLS certificate; default localhost + 127.0.0.1. A certificate naming only an .onion
   * host proves a client verified the node's name and not the address it dialled.
   */
  tlsNames?: { dns: string[]; ips: string[] };
  syncedToChain?: boolean;
}

interface IssuedInvoice {
  bolt11: string;
  memo: string;
  amountMsat: number;
  creationDate: number;
  expiry: number;
  addIndex: number;
  paymentAddr: Buffer;
}

export interface LndPeer {
  dir: string;
  certPath: string;
  macaroonPath: string;
  macaroon: Buffer;
  /** 127.0.0.1:<port> of the gRPC server. */
  grpcAddress: string;
  grpcPort: number;
  /** 127.0.0.1:<port> of the REST (grpc-gateway style) server. */
  restAddress: string;
  restPort: number;
  nodePubkey: string;
  knobs: LndPeerKnobs;
  /** call.getPeer() of every gRPC call: one distinct value per client TCP connection. */
  grpcCallPeers: string[];
  /** TLS connections accepted by the REST server. */
  restConnections: number;
  /** Every call, in order. */
  calls: Array<{ transport: 'grpc' | 'rest'; method: string }>;
  /** Invoices issued, by payment hash hex. */
  issued: Map<string, IssuedInvoice>;
  /** Test control: pays one of this peer's invoices, returns the preimage. */
  settle(bolt11: string): Buffer;
  /**
   * What SendPaymentSync pays with (the network, for the test): given the invoice and the amount, returns the
   * preimage or throws (its message becomes lnd's payment_error). Unset: every payment fails, no route.
   */
  payOut?: (bolt11: string, amountMsat: number) => Buffer | Promise<Buffer>;
  /** Every SendPaymentSync, in order: the invoice, the amount asked (amt_msat, 0 when none) and the fee limit. */
  payments: Array<{ bolt11: string; amtMsat: number; feeLimitMsat: number }>;
  stop(): Promise<void>;
}

/** Error a handler throws: a gRPC status code and lnd's message text. */
class RpcFailure extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** Self-signed ECDSA P-256 CA certificate like the one lnd writes to tls.cert. */
export function makeSelfSignedCert(dir: string, name: string, dnsNames: string[] = ['localhost'], ips: string[] = ['127.0.0.1']): { certPath: string; keyPath: string } {
  const certPath = join(dir, `${name}.cert`);
  const keyPath = join(dir, `${name}.key`);
  const san = [...dnsNames.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)].join(',');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/O=lnd autogenerated cert/CN=localhost',
    '-addext', `subjectAltName=${san}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign',
    '-addext', 'extendedKeyUsage=serverAuth',
  ], { stdio: 'pipe', timeout: 10_000 });
  return { certPath, keyPath };
}

function protoDir(): string {
  return join(dirname(createRequire(import.meta.url).resolve('@lightningpolar/lnd-api/package.json')), 'protos');
}

type MethodDef = protoLoader.MethodDefinition<object, object>;

/** Loads lightning.proto and invoices.proto twice: Buffers for handlers, base64 strings for REST JSON. */
function loadDefs(): {
  lightning: grpc.ServiceDefinition;
  buf: Record<'AddInvoice' | 'LookupInvoice' | 'GetInfo' | 'LookupInvoiceV2' | 'SendPaymentSync', MethodDef>;
  json: Record<'AddInvoice' | 'LookupInvoice' | 'GetInfo' | 'LookupInvoiceV2' | 'SendPaymentSync', MethodDef>;
} {
  const dir = protoDir();
  const files = [join(dir, 'lightning.proto'), join(dir, 'invoicesrpc', 'invoices.proto')];
  const base = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [dir] };
  const bufDef = protoLoader.loadSync(files, base);
  // protojson (what lnd's REST proxy uses, with proto field names and unpopulated fields emitted).
  const jsonDef = protoLoader.loadSync(files, { ...base, bytes: String, arrays: true, objects: true });
  const pick = (def: protoLoader.PackageDefinition) => {
    const l = def['lnrpc.Lightning'] as protoLoader.ServiceDefinition;
    const i = def['invoicesrpc.Invoices'] as protoLoader.ServiceDefinition;
    return {
      AddInvoice: l.AddInvoice as MethodDef,
      LookupInvoice: l.LookupInvoice as MethodDef,
      GetInfo: l.GetInfo as MethodDef,
      LookupInvoiceV2: i.LookupInvoiceV2 as MethodDef,
      SendPaymentSync: l.SendPaymentSync as MethodDef,
    };
  };
  const loaded = grpc.loadPackageDefinition(bufDef) as unknown as { lnrpc: { Lightning: { service: grpc.ServiceDefinition } } };
  return { lightning: loaded.lnrpc.Lightning.service, buf: pick(bufDef), json: pick(jsonDef) };
}

/** grpc-gateway's HTTPStatusFromCode. */
function httpStatusFor(code: grpc.status): number {
  switch (code) {
    case grpc.status.OK: return 200;
    case grpc.status.CANCELLED: return 499;
    case grpc.status.INVALID_ARGUMENT: return 400;
    case grpc.status.DEADLINE_EXCEEDED: return 504;
    case grpc.status.NOT_FOUND: return 404;
    case grpc.status.PERMISSION_DENIED: return 403;
    case grpc.status.UNAUTHENTICATED: return 401;
    case grpc.status.UNIMPLEMENTED: return 501;
    case grpc.status.UNAVAILABLE: return 503;
    default: return 500;
  }
}

/** Waits `ms`, or fails as lnd does when the caller's context is canceled first. */
async function delayOrCancel(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, { signal });
  } catch {
    throw new RpcFailure(grpc.status.CANCELLED, 'context canceled');
  }
}

function int(v: unknown): number {
  const n = Number(v ?? 0);
  if (!Number.isSafeInteger(n)) throw new RpcFailure(grpc.status.INVALID_ARGUMENT, `invalid integer ${String(v)}`);
  return n;
}

export async function startLndPeer(opts: LndPeerOptions = {}): Promise<LndPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'l402-lnd-peer-'));
  const stopAll = new AbortController();
  // Filled in once started; handlers read its payOut, which a test sets on the running peer.
  const peer = {} as LndPeer;
  let wallet: DevWallet | undefined;
  let grpcServer: grpc.Server | undefined;
  let restServer: https.Server | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    stopAll.abort();
    grpcServer?.forceShutdown();
    if (restServer) {
      restServer.closeAllConnections();
      await new Promise<void>((r) => restServer!.close(() => r()));
    }
    await wallet?.close();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const { certPath, keyPath } = makeSelfSignedCert(dir, 'tls', opts.tlsNames?.dns ?? ['localhost'], opts.tlsNames?.ips ?? ['127.0.0.1']);
    const cert = readFileSync(certPath);
    const key = readFileSync(keyPath);
    const macaroon = encodeMacaroon(mintMacaroon(randomBytes(32), randomBytes(33), 'lnd', []));
    const macaroonPath = join(dir, 'admin.macaroon');
    writeFileSync(macaroonPath, macaroon, { mode: 0o600 });
    const w = DevWallet.open(join(dir, 'wallet'));
    wallet = w;
    const nodePubkey = /node ([0-9a-f]{66})/.exec(w.describe())?.[1] ?? '';
    const defs = loadDefs();

    const knobs: LndPeerKnobs = { delayMs: 0, fail: false, garbage: false, authFailure: 'unauthenticated', notFound: 'not-found', noInvoicesRpc: false };
    const issued = new Map<string, IssuedInvoice>();
    const calls: LndPeer['calls'] = [];
    const payments: LndPeer['payments'] = [];
    const grpcCallPeers: string[] = [];
    let addIndex = 0;

    const checkMacaroon = (values: string[]): void => {
      const code = knobs.authFailure === 'lnd' ? grpc.status.UNKNOWN : grpc.status.UNAUTHENTICATED;
      if (values.length !== 1) throw new RpcFailure(code, `expected 1 macaroon, got ${values.length}`);
      const got = /^(?:[0-9a-fA-F]{2})+$/.test(values[0]!) ? Buffer.from(values[0]!, 'hex') : Buffer.alloc(0);
      if (got.length === 0) throw new RpcFailure(code, 'unable to decode macaroon: empty macaroon data');
      if (got.length !== macaroon.length || !timingSafeEqual(got, macaroon)) {
        throw new RpcFailure(code, 'verification failed: signature mismatch after caveat verification');
      }
    };

    const invoiceMessage = async (hashHex: string, inv: IssuedInvoice): Promise<Record<string, unknown>> => {
      const st = await w.lookupInvoice(Buffer.from(hashHex, 'hex'));
      let state = 'OPEN';
      let preimage: Buffer = Buffer.alloc(0);
      if (st.state === 'settled') {
        state = 'SETTLED';
        preimage = knobs.garbage === 'bad-preimage' ? randomBytes(32) : st.preimage;
      } else if (st.state === 'expired') {
        state = 'CANCELED';
      } else if (knobs.garbage === 'open-with-preimage') {
        preimage = randomBytes(32);
      }
      const settled = state === 'SETTLED';
      return {
        memo: inv.memo,
        r_preimage: preimage,
        r_hash: Buffer.from(hashHex, 'hex'),
        value: String(Math.floor(inv.amountMsat / 1000)),
        value_msat: String(inv.amountMsat),
        settled,
        creation_date: String(inv.creationDate),
        settle_date: settled ? String(Math.floor(Date.now() / 1000)) : '0',
        payment_request: inv.bolt11,
        expiry: String(inv.expiry),
        cltv_expiry: '18',
        add_index: String(inv.addIndex),
        settle_index: settled ? String(inv.addIndex) : '0',
        amt_paid_sat: settled ? String(Math.floor(inv.amountMsat / 1000)) : '0',
        amt_paid_msat: settled ? String(inv.amountMsat - (knobs.garbage === 'underpaid' ? 1000 : 0)) : '0',
        state,
        payment_addr: inv.paymentAddr,
      };
    };

    const handlers = {
      async AddInvoice(req: Record<string, unknown>): Promise<Record<string, unknown>> {
        const value = int(req.value);
        const valueMsat = int(req.value_msat);
        if (value !== 0 && valueMsat !== 0) throw new RpcFailure(grpc.status.UNKNOWN, 'value and value_msat are mutually exclusive');
        if (value < 0 || valueMsat < 0) throw new RpcFailure(grpc.status.UNKNOWN, 'payment of negative value is not allowed');
        let amountMsat = valueMsat || value * 1000;
        if (amountMsat === 0) throw new RpcFailure(grpc.status.UNKNOWN, 'this test peer issues no zero-amount invoices');
        const memo = String(req.memo ?? '');
        if (Buffer.byteLength(memo) > 1024) throw new RpcFailure(grpc.status.UNKNOWN, 'memo too large: 1025 bytes (maxsize=1024)');
        const expiry = knobs.garbage === 'long-expiry' ? 6 * 86400 : int(req.expiry) || 86400;
        if (knobs.garbage === 'amount') amountMsat += 1000;
        const created = await w.createInvoice({ amountMsat, memo, expirySecs: expiry });
        const hashHex = created.paymentHash.toString('hex');
        const decoded = lightBolt11.decode(created.bolt11);
        const secret = decoded.sections.find((s) => s.name === 'payment_secret');
        const inv: IssuedInvoice = {
          bolt11: created.bolt11,
          memo,
          amountMsat,
          creationDate: created.expiresAt - expiry,
          expiry,
          addIndex: ++addIndex,
          paymentAddr: Buffer.from(secret && 'value' in secret ? String(secret.value) : '', 'hex'),
        };
        issued.set(hashHex, inv);
        return {
          r_hash: knobs.garbage === 'hash' ? randomBytes(32) : created.paymentHash,
          payment_request: knobs.garbage === 'undecodable' ? 'lnbcrt1notaninvoice' : knobs.garbage === 'huge' ? created.bolt11 + 'q'.repeat(4 << 20) : created.bolt11,
          add_index: String(inv.addIndex),
          payment_addr: inv.paymentAddr,
        };
      },
      async LookupInvoice(req: Record<string, unknown>): Promise<Record<string, unknown>> {
        let hash = Buffer.isBuffer(req.r_hash) ? req.r_hash : Buffer.alloc(0);
        if (hash.length === 0 && typeof req.r_hash_str === 'string' && req.r_hash_str) hash = Buffer.from(req.r_hash_str, 'hex');
        return lookup(hash);
      },
      async LookupInvoiceV2(req: Record<string, unknown>): Promise<Record<string, unknown>> {
        return lookup(Buffer.isBuffer(req.payment_hash) ? req.payment_hash : Buffer.alloc(0));
      },
      // lnd's SendPaymentSync: an amount only for an invoice without one; a failed payment is payment_error.
      async SendPaymentSync(req: Record<string, unknown>): Promise<Record<string, unknown>> {
        const bolt11 = String(req.payment_request ?? '');
        const amtMsat = int(req.amt_msat) || int(req.amt) * 1000;
        const fee = (req.fee_limit ?? {}) as Record<string, unknown>;
        const feeLimitMsat = int(fee.fixed_msat) || int(fee.fixed) * 1000;
        let encoded: number;
        let hash: Buffer;
        try {
          const d = lightBolt11.decode(bolt11);
          const a = d.sections.find((x) => x.name === 'amount');
          encoded = a && 'value' in a ? Number(a.value) : 0;
          const h = d.sections.find((x) => x.name === 'payment_hash');
          hash = Buffer.from(h && 'value' in h ? String(h.value) : '', 'hex');
        } catch (e) {
          throw new RpcFailure(grpc.status.UNKNOWN, `invalid payment request: ${(e as Error).message}`);
        }
        if (encoded !== 0 && amtMsat !== 0) throw new RpcFailure(grpc.status.UNKNOWN, 'amount must not be specified when paying a non-zero amount invoice');
        if (encoded === 0 && amtMsat === 0) throw new RpcFailure(grpc.status.UNKNOWN, 'amount must be specified when paying a zero amount invoice');
        payments.push({ bolt11, amtMsat, feeLimitMsat });
        const failed = (why: string) => ({ payment_error: why, payment_preimage: Buffer.alloc(0), payment_hash: hash });
        if (!peer.payOut) return failed('unable to find a path to destination');
        let preimage: Buffer;
        try {
          preimage = await peer.payOut(bolt11, encoded || amtMsat);
        } catch (e) {
          return failed(String((e as Error).message).slice(0, 200));
        }
        return { payment_error: '', payment_preimage: knobs.garbage === 'bad-preimage' ? randomBytes(32) : preimage, payment_hash: hash };
      },
      async GetInfo(): Promise<Record<string, unknown>> {
        return {
          version: '0.20.0-beta commit=v0.20.0-beta',
          commit_hash: 'a'.repeat(40),
          identity_pubkey: nodePubkey,
          alias: opts.alias ?? 'lnd-peer',
          color: '#3399ff',
          num_pending_channels: 0,
          num_active_channels: 1,
          num_inactive_channels: 0,
          num_peers: 1,
          block_height: 150,
          block_hash: '0'.repeat(64),
          best_header_timestamp: String(Math.floor(Date.now() / 1000)),
          synced_to_chain: opts.syncedToChain ?? true,
          synced_to_graph: true,
          testnet: false,
          chains: [{ chain: 'bitcoin', network: opts.network ?? 'regtest' }],
          uris: [],
        };
      },
    };

    async function lookup(hash: Buffer): Promise<Record<string, unknown>> {
      if (hash.length !== 32) throw new RpcFailure(grpc.status.UNKNOWN, `invalid hash length of ${hash.length}, want 32`);
      const hashHex = hash.toString('hex');
      const inv = issued.get(hashHex);
      if (!inv) throw new RpcFailure(knobs.notFound === 'legacy-unknown' ? grpc.status.UNKNOWN : grpc.status.NOT_FOUND, 'unable to locate invoice');
      return invoiceMessage(hashHex, inv);
    }

    type Method = keyof typeof handlers;
    const dispatch = async (method: Method, req: Record<string, unknown>, macaroons: string[], signal: AbortSignal): Promise<Record<string, unknown>> => {
      checkMacaroon(macaroons);
      if (knobs.delayMs > 0) await delayOrCancel(knobs.delayMs, AbortSignal.any([signal, stopAll.signal]));
      if (knobs.fail) throw new RpcFailure(grpc.status.UNAVAILABLE, 'the RPC server is not active yet');
      return handlers[method](req);
    };

    // --- gRPC ---
    const server = new grpc.Server();
    grpcServer = server;
    const unary = (method: Method): grpc.handleUnaryCall<Record<string, unknown>, Record<string, unknown>> => (call, callback) => {
      calls.push({ transport: 'grpc', method });
      grpcCallPeers.push(call.getPeer());
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      dispatch(method, call.request, call.metadata.get('macaroon').map(String), ac.signal).then(
        (res) => callback(null, res),
        (err: unknown) => {
          if (err instanceof RpcFailure) callback({ code: err.code, details: err.message });
          else callback({ code: grpc.status.INTERNAL, details: String((err as Error)?.message ?? err) });
        },
      );
    };
    server.addService(defs.lightning, {
      AddInvoice: unary('AddInvoice'),
      LookupInvoice: unary('LookupInvoice'),
      GetInfo: unary('GetInfo'),
      SendPaymentSync: unary('SendPaymentSync'),
    });
    const grpcPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ private_key: key, cert_chain: cert }], false), (err, port) =>
        err ? reject(err) : resolve(port),
      );
    });

    // --- REST (grpc-gateway mapping) ---
    let restConnections = 0;
    const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const sendError = (res: ServerResponse, code: grpc.status, message: string): void =>
      sendJson(res, httpStatusFor(code), { code, message, details: [] });
    /** JSON → wire → handler shape: the same round trip grpc-gateway makes before calling lnd. */
    const fromJson = (method: keyof typeof defs.buf, json: object): Record<string, unknown> =>
      defs.buf[method].requestDeserialize(defs.json[method].requestSerialize(json)) as Record<string, unknown>;
    const toJson = (method: keyof typeof defs.buf, msg: object): unknown =>
      defs.json[method].responseDeserialize(defs.buf[method].responseSerialize(msg));

    const rest = https.createServer({ key, cert }, (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'https://peer');
        let method: Method | undefined;
        let jsonReq: object = {};
        try {
          if (req.method === 'POST' && url.pathname === '/v1/invoices') {
            method = 'AddInvoice';
            jsonReq = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as object;
          } else if (req.method === 'GET' && url.pathname === '/v1/getinfo') {
            method = 'GetInfo';
          } else if (req.method === 'POST' && url.pathname === '/v1/channels/transactions') {
            method = 'SendPaymentSync';
            jsonReq = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as object;
          } else if (req.method === 'GET' && url.pathname === '/v2/invoices/lookup' && !knobs.noInvoicesRpc) {
            method = 'LookupInvoiceV2';
            const ph = url.searchParams.get('payment_hash');
            // runtime.Bytes: standard base64 first, URL-safe as the fallback.
            if (ph) jsonReq = { payment_hash: Buffer.from(ph.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('base64') };
          }
        } catch {
          sendError(res, grpc.status.INVALID_ARGUMENT, 'invalid character in request body');
          return;
        }
        if (!method) {
          sendError(res, grpc.status.NOT_FOUND, 'Not Found');
          return;
        }
        const m: Method = method;
        calls.push({ transport: 'rest', method: m });
        const header = req.headers['grpc-metadata-macaroon'];
        const macaroons = header === undefined ? [] : Array.isArray(header) ? header : [header];
        const ac = new AbortController();
        res.on('close', () => ac.abort());
        Promise.resolve()
          .then(() => dispatch(m, fromJson(m, jsonReq), macaroons, ac.signal))
          .then(
          (out) => sendJson(res, 200, toJson(m, out)),
          (err: unknown) => {
            if (res.destroyed) return;
            if (err instanceof RpcFailure) sendError(res, err.code, err.message);
            else sendError(res, grpc.status.INTERNAL, String((err as Error)?.message ?? err));
          },
        );
      });
    });
    restServer = rest;
    rest.on('secureConnection', () => restConnections++);
    rest.on('tlsClientError', () => {});
    const restPort = await new Promise<number>((resolve, reject) => {
      rest.once('error', reject);
      rest.listen(0, '127.0.0.1', () => resolve((rest.address() as AddressInfo).port));
    });

    Object.assign(peer, {
      dir,
      certPath,
      macaroonPath,
      macaroon,
      grpcAddress: `127.0.0.1:${grpcPort}`,
      grpcPort,
      restAddress: `127.0.0.1:${restPort}`,
      restPort,
      nodePubkey,
      knobs,
      grpcCallPeers,
      calls,
      issued,
      settle: (bolt11: string) => w.pay(bolt11),
      payments,
      stop,
    });
    Object.defineProperty(peer, 'restConnections', { get: () => restConnections, enumerable: true });
    return peer;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
