// A protocol-faithful Eclair REST API (the three calls l402-nginx uses): form-encoded POST, HTTP basic
// auth with any user and the API password (checked in constant time, failures delayed as Eclair
// does), JSON shaped like Eclair's serializers. A DevWallet in a temp dir signs the invoices and
// settles them; `settle(bolt11)` is the payer.
//
// Fidelity notes: Eclair includes `paymentPreimage` in getreceivedinfo for *pending* invoices too
// (it generated the preimage), answers an unknown hash with 404 {"error":"Not found"}, and rejects
// bad credentials with 401 after a one-second pause.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import lightBolt11 from 'light-bolt11-decoder';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { makeTestCa, type TestCa } from './lnurl-peer.js';

export interface EclairPeerFaults {
  /** Delay before answering any request. */
  delayMs?: number;
  /** Close the connection without an answer. */
  down?: boolean;
  /** 200 with a body that is not JSON. */
  garbage?: boolean;
  /** createinvoice signs an invoice for 1000 msat more than asked. */
  wrongAmount?: boolean;
  /** createinvoice names a payment hash that is not the invoice's. */
  wrongHash?: boolean;
  /** getreceivedinfo says "received" with a preimage that does not hash to the payment hash. */
  badPreimage?: boolean;
  /** Answer every call with this HTTP status and {"error": "..."}. */
  httpStatus?: number;
}

export interface EclairPeerOptions {
  password: string;
  /** Serve https with a fresh test CA (see caCertPath). */
  tls?: boolean;
  /** Eclair waits 1 s before a 401; tests may shorten it. */
  authFailDelayMs?: number;
}

export interface EclairPeer {
  url: string;
  port: number;
  caCertPath?: string;
  nodeId: string;
  wallet: DevWallet;
  faults: EclairPeerFaults;
  /** Authenticated calls per endpoint name, e.g. calls.createinvoice. */
  calls: Record<string, number>;
  unauthorized: number;
  settle(bolt11: string): Buffer;
  stop(): Promise<void>;
}

function sha256(b: Buffer | string): Buffer {
  return createHash('sha256').update(b).digest();
}

/** Compares without leaking where they differ: both sides are hashed to the same length first. */
function secretEquals(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

interface Ts { iso: string; unix: number }
const ts = (unix: number): Ts => ({ iso: new Date(unix * 1000).toISOString(), unix });

/** Eclair's InvoiceSerializer fields for a BOLT11 invoice. */
function invoiceJson(bolt11: string, nodeId: string): Record<string, unknown> {
  const d = lightBolt11.decode(bolt11);
  const get = (name: string) => (d.sections.find((s) => s.name === name) as { value?: unknown } | undefined)?.value;
  const out: Record<string, unknown> = {
    prefix: bolt11.slice(0, bolt11.lastIndexOf('1')).replace(/\d+[munp]?$/, ''),
    timestamp: get('timestamp'),
    nodeId,
    serialized: bolt11,
    description: get('description'),
    paymentHash: get('payment_hash'),
    expiry: d.expiry,
    minFinalCltvExpiry: get('min_final_cltv_expiry'),
  };
  const amount = get('amount');
  if (amount !== undefined) out.amount = Number(amount);
  out.features = { activated: { var_onion_optin: 'mandatory', payment_secret: 'mandatory' }, unknown: [] };
  out.routingInfo = [];
  return out;
}

export async function startEclairPeer(opts: EclairPeerOptions): Promise<EclairPeer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'l402-eclair-peer-'));
  const wallet = DevWallet.open(dataDir);
  // Read-only view of the wallet's own table, for Eclair's habit of returning the preimage of pending invoices.
  const db = new Database(join(dataDir, 'dev-wallet.db'), { readonly: true, fileMustExist: true });
  const rowOf = db.prepare<[string], { preimage: string; created_at: number; bolt11: string; amount_msat: number }>(
    'SELECT preimage, created_at, bolt11, amount_msat FROM invoices WHERE payment_hash = ?',
  );
  const nodeId = /node ([0-9a-f]{66})/.exec(wallet.describe())?.[1] ?? '';
  const faults: EclairPeerFaults = {};
  const calls: Record<string, number> = {};
  let unauthorized = 0;
  const authFailDelayMs = opts.authFailDelayMs ?? 1000;
  let ca: TestCa | undefined;

  const send = (res: http.ServerResponse, status: number, body: unknown): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=UTF-8' : 'application/json' });
    res.end(text);
  };

  const authorized = (req: http.IncomingMessage): boolean => {
    const h = req.headers.authorization ?? '';
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(h);
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    return secretEquals(decoded.slice(colon + 1), opts.password);
  };

  const handle = async (method: string, form: URLSearchParams, res: http.ServerResponse): Promise<void> => {
    calls[method] = (calls[method] ?? 0) + 1;
    if (faults.httpStatus) return send(res, faults.httpStatus, { error: 'injected failure' });
    if (faults.garbage) return send(res, 200, '<html>oops</html>');
    switch (method) {
      case 'getinfo':
        return send(res, 200, {
          version: '0.13.0-l402test', nodeId, alias: 'eclair-peer', color: '#49daaa',
          features: { activated: {}, unknown: [] },
          chainHash: '06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f',
          network: 'regtest', blockHeight: 101, publicAddresses: [], instanceId: randomUUID(),
        });
      case 'createinvoice': {
        const description = form.get('description');
        if (description === null) return send(res, 400, { error: "missing form field 'description'" });
        const amount = form.has('amountMsat') ? Number(form.get('amountMsat')) : NaN;
        const expireIn = form.has('expireIn') ? Number(form.get('expireIn')) : 3600;
        // DevWallet cannot issue amountless invoices; l402-nginx never asks for one.
        if (!Number.isSafeInteger(amount) || amount <= 0) return send(res, 400, { error: "invalid form field 'amountMsat'" });
        if (!Number.isSafeInteger(expireIn) || expireIn <= 0) return send(res, 400, { error: "invalid form field 'expireIn'" });
        const inv = await wallet.createInvoice({ amountMsat: faults.wrongAmount ? amount + 1000 : amount, memo: description, expirySecs: expireIn });
        const body = invoiceJson(inv.bolt11, nodeId);
        if (faults.wrongHash) body.paymentHash = randomBytes(32).toString('hex');
        return send(res, 200, body);
      }
      case 'getreceivedinfo': {
        const hash = (form.get('paymentHash') ?? '').toLowerCase();
        if (!/^[0-9a-f]{64}$/.test(hash)) return send(res, 400, { error: "invalid form field 'paymentHash'" });
        const row = rowOf.get(hash);
        const state = await wallet.lookupInvoice(Buffer.from(hash, 'hex'));
        if (!row || state.state === 'unknown') return send(res, 404, { error: 'Not found' });
        let status: Record<string, unknown>;
        let preimage = row.preimage;
        if (state.state === 'settled') {
          status = { type: 'received', amount: row.amount_msat, receivedAt: ts(Math.floor(Date.now() / 1000)) };
          if (faults.badPreimage) preimage = randomBytes(32).toString('hex');
        } else if (state.state === 'expired') {
          status = { type: 'expired' };
        } else {
          status = { type: 'pending' };
        }
        return send(res, 200, {
          invoice: invoiceJson(row.bolt11, nodeId),
          paymentPreimage: preimage,
          paymentType: 'Standard',
          createdAt: ts(row.created_at),
          status,
        });
      }
      default:
        return send(res, 404, 'The requested resource could not be found.');
    }
  };

  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (faults.down) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) req.socket.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const go = (): void => {
        if (!authorized(req)) {
          unauthorized++;
          setTimeout(() => {
            res.writeHead(401, { 'www-authenticate': 'Basic realm="Access restricted",charset=UTF-8', 'content-type': 'text/plain; charset=UTF-8' });
            res.end('The supplied authentication is invalid');
          }, authFailDelayMs);
          return;
        }
        const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/+/, '');
        if (req.method !== 'POST') return send(res, 405, 'HTTP method not allowed, supported methods: POST');
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        handle(path, form, res).catch((e: Error) => send(res, 500, { error: e.message }));
      };
      const delay = faults.delayMs ?? 0;
      if (delay > 0) {
        const t = setTimeout(go, delay);
        res.on('close', () => clearTimeout(t));
      } else go();
    });
  };

  let server: http.Server;
  if (opts.tls) {
    ca = await makeTestCa();
    server = https.createServer({ key: ca.key, cert: ca.cert }, listener);
  } else {
    server = http.createServer(listener);
  }
  await new Promise<void>((resolveP, rejectP) => {
    server.once('error', rejectP);
    server.listen(0, '127.0.0.1', () => resolveP());
  });
  const port = (server.address() as { port: number }).port;
  const url = opts.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;

  return {
    url, port, caCertPath: ca?.caCertPath, nodeId, wallet, faults, calls,
    get unauthorized() { return unauthorized; },
    settle: (bolt11: string) => wallet.pay(bolt11),
    async stop(): Promise<void> {
      await new Promise<void>((resolveP) => {
        server.close(() => resolveP());
        server.closeAllConnections();
      });
      db.close();
      await wallet.close();
      ca?.remove();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
