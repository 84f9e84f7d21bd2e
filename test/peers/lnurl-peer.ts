// A protocol-faithful LNURL-pay / Lightning Address service (LUD-06, -12, -16, -21) over HTTPS with a
// throw-away test CA. It signs real regtest BOLT11 invoices whose description_hash commits to the
// metadata string, and reveals a preimage only once `settle()` "pays" the invoice.
//
// Why not DevWallet for signing: DevWallet writes a `d` (description) field and offers no way to
// commit to a description hash, which LUD-06 requires. This peer signs with the same library and
// network parameters and keeps its invoices in memory.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encode as bolt11Encode, sign as bolt11Sign } from '@atomiqlabs/bolt11';
import { bech32 } from '@scure/base';
import lightBolt11 from 'light-bolt11-decoder';

const run = promisify(execFile);
const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1], wif: 0xef };
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// --- test CA ----------------------------------------------------------------------------------------

export interface TestCa {
  dir: string;
  caCertPath: string;
  caPem: string;
  key: string;
  cert: string;
  remove(): void;
}

/** A fresh CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI. */
export async function makeTestCa(): Promise<TestCa> {
  const dir = mkdtempSync(join(tmpdir(), 'l402-testca-'));
  try {
    const o = { cwd: dir, timeout: 20_000 };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run('openssl', ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=l402-nginx test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], o);
    await run('openssl', ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], o);
    writeFileSync(join(dir, 'ext.cnf'),
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
    await run('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf'], o);
    return {
      dir,
      caCertPath: join(dir, 'ca.pem'),
      caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      key: readFileSync(join(dir, 'server.key'), 'utf8'),
      cert: readFileSync(join(dir, 'server.pem'), 'utf8'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`makeTestCa: openssl failed: ${(e as Error).message}`);
  }
}

// --- invoices ---------------------------------------------------------------------------------------

interface PeerInvoice {
  bolt11: string;
  preimage: Buffer;
  amountMsat: number;
  expiresAt: number;
  paid: boolean;
}

function sha256(data: Buffer | string): Buffer {
  return createHash('sha256').update(data).digest();
}

function newNodeKey(): Buffer {
  for (;;) {
    const k = randomBytes(32);
    const n = BigInt(`0x${k.toString('hex')}`);
    if (n > 0n && n < SECP256K1_N) return k;
  }
}

// --- the service ------------------------------------------------------------------------------------

export interface LnurlPeerFaults {
  /** The invoice is for 1000 msat more than asked. */
  wrongAmount?: boolean;
  /** The invoice commits to sha256 of something other than the metadata. */
  wrongDescriptionHash?: boolean;
  /** The callback answers {status: "ERROR", reason}. */
  callbackError?: string;
  /** The metadata endpoint answers {status: "ERROR", reason}. */
  metadataError?: string;
  /** Delay before answering any request. */
  delayMs?: number;
  /** The metadata endpoint answers 302 to this URL. */
  redirectMetadataTo?: string;
  /** The metadata endpoint streams this many bytes of JSON-ish filler. */
  hugeBodyBytes?: number;
  /** Replies are not JSON. */
  garbage?: boolean;
  /** LUD-21 verify lies about settlement. */
  verifyLie?: 'wrong_preimage' | 'settled_without_preimage';
}

export interface LnurlPeerOptions {
  minSendable?: number;
  maxSendable?: number;
  commentAllowed?: number;
  /** Include a LUD-21 `verify` URL in callback replies (default true). */
  verify?: boolean;
  invoiceExpirySecs?: number;
}

export interface LnurlPeer {
  port: number;
  /** https://localhost:PORT */
  origin: string;
  caCertPath: string;
  caPem: string;
  faults: LnurlPeerFaults;
  options: Required<LnurlPeerOptions>;
  counts: { metadata: number; callback: number; verify: number; other: number };
  /** Query parameters of every callback request, in order. */
  callbackQueries: URLSearchParams[];
  /** user@localhost:PORT */
  address(user?: string): string;
  /** bech32 lnurl1… of the pay endpoint. */
  lnurl(user?: string): string;
  payUrl(user?: string): string;
  /** The exact metadata string served for `user`. */
  metadata(user?: string): string;
  /** "Pays" an invoice issued here; returns the preimage. Throws if unknown, paid or expired. */
  settle(bolt11: string): Buffer;
  stop(): Promise<void>;
}

const CALLBACK_TOKEN = 'k9-test';

export async function startLnurlPeer(opts: LnurlPeerOptions = {}): Promise<LnurlPeer> {
  const ca = await makeTestCa();
  const nodeKey = newNodeKey();
  const invoices = new Map<string, PeerInvoice>();
  const options: Required<LnurlPeerOptions> = {
    minSendable: opts.minSendable ?? 1000,
    maxSendable: opts.maxSendable ?? 100_000_000_000,
    commentAllowed: opts.commentAllowed ?? 0,
    verify: opts.verify ?? true,
    invoiceExpirySecs: opts.invoiceExpirySecs ?? 600,
  };
  const faults: LnurlPeerFaults = {};
  const counts = { metadata: 0, callback: 0, verify: 0, other: 0 };
  const callbackQueries: URLSearchParams[] = [];
  let origin = '';
  let host = '';

  const metadata = (user: string): string =>
    JSON.stringify([['text/plain', `Payment to ${user}`], ['text/identifier', `${user}@${host}`]]);

  const issue = (user: string, amountMsat: number): string => {
    const preimage = randomBytes(32);
    const paymentHash = sha256(preimage);
    const timestamp = Math.floor(Date.now() / 1000);
    const committed = faults.wrongDescriptionHash ? sha256(`not the metadata of ${user}`) : sha256(metadata(user));
    const invoiceMsat = faults.wrongAmount ? amountMsat + 1000 : amountMsat;
    const unsigned = bolt11Encode({
      network: REGTEST,
      millisatoshis: String(invoiceMsat),
      timestamp,
      tags: [
        { tagName: 'payment_hash', data: paymentHash.toString('hex') },
        { tagName: 'payment_secret', data: randomBytes(32).toString('hex') },
        { tagName: 'purpose_commit_hash', data: committed.toString('hex') },
        { tagName: 'expire_time', data: options.invoiceExpirySecs },
        { tagName: 'min_final_cltv_expiry', data: 18 },
        { tagName: 'feature_bits', data: { word_length: 3, var_onion_optin: { required: true, supported: false }, payment_secret: { required: true, supported: false } } },
      ],
    }, false);
    const bolt11 = bolt11Sign(unsigned, nodeKey).paymentRequest;
    if (!bolt11) throw new Error('lnurl peer: signing failed');
    invoices.set(paymentHash.toString('hex'), { bolt11, preimage, amountMsat: invoiceMsat, expiresAt: timestamp + options.invoiceExpirySecs, paid: false });
    return bolt11;
  };

  const json = (res: http.ServerResponse, body: unknown, status = 200): void => {
    const text = faults.garbage ? '<html>502 Bad Gateway</html>' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': faults.garbage ? 'text/html' : 'application/json', 'access-control-allow-origin': '*' });
    res.end(text);
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', origin);
    let m: RegExpMatchArray | null;
    if (req.method !== 'GET') {
      counts.other++;
      json(res, { status: 'ERROR', reason: 'GET only' }, 405);
    } else if ((m = url.pathname.match(/^\/\.well-known\/lnurlp\/([a-z0-9\-_.+]+)$/))) {
      counts.metadata++;
      const user = m[1]!.split('+')[0]!;
      if (faults.redirectMetadataTo) {
        res.writeHead(302, { location: faults.redirectMetadataTo });
        res.end();
      } else if (faults.hugeBodyBytes) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        let left = faults.hugeBodyBytes;
        const pump = (): void => {
          while (left > 0) {
            left -= chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('error', () => {});
        pump();
      } else if (faults.metadataError) {
        json(res, { status: 'ERROR', reason: faults.metadataError });
      } else {
        json(res, {
          tag: 'payRequest',
          callback: `${origin}/lnurlp/callback/${user}?k=${CALLBACK_TOKEN}`,
          minSendable: options.minSendable,
          maxSendable: options.maxSendable,
          metadata: metadata(user),
          ...(options.commentAllowed > 0 ? { commentAllowed: options.commentAllowed } : {}),
        });
      }
    } else if ((m = url.pathname.match(/^\/lnurlp\/callback\/([a-z0-9\-_.]+)$/))) {
      counts.callback++;
      callbackQueries.push(url.searchParams);
      const amount = Number(url.searchParams.get('amount'));
      const comment = url.searchParams.get('comment');
      if (url.searchParams.get('k') !== CALLBACK_TOKEN) return json(res, { status: 'ERROR', reason: 'callback query string was not preserved' });
      if (faults.callbackError) return json(res, { status: 'ERROR', reason: faults.callbackError });
      if (!Number.isSafeInteger(amount) || amount < options.minSendable || amount > options.maxSendable) {
        return json(res, { status: 'ERROR', reason: `amount must be between ${options.minSendable} and ${options.maxSendable} msat` });
      }
      if (comment !== null && comment.length > options.commentAllowed) return json(res, { status: 'ERROR', reason: 'comment too long' });
      const pr = issue(m[1]!, amount);
      const hash = lightBolt11.decode(pr).sections.find((s) => s.name === 'payment_hash') as { value: string };
      json(res, { pr, routes: [], ...(options.verify ? { verify: `${origin}/lnurlp/verify/${hash.value}` } : {}) });
    } else if ((m = url.pathname.match(/^\/lnurlp\/verify\/([0-9a-f]{64})$/))) {
      counts.verify++;
      const inv = invoices.get(m[1]!);
      if (!inv) return json(res, { status: 'ERROR', reason: 'Not found' });
      let settled = inv.paid;
      let preimage: string | null = inv.paid ? inv.preimage.toString('hex') : null;
      if (faults.verifyLie === 'wrong_preimage') { settled = true; preimage = randomBytes(32).toString('hex'); }
      if (faults.verifyLie === 'settled_without_preimage') { settled = true; preimage = null; }
      json(res, { status: 'OK', settled, preimage, pr: inv.bolt11 });
    } else {
      counts.other++;
      json(res, { status: 'ERROR', reason: 'not found' }, 404);
    }
  };

  const server = https.createServer({ key: ca.key, cert: ca.cert }, (req, res) => {
    const delay = faults.delayMs ?? 0;
    if (delay > 0) {
      const t = setTimeout(() => handle(req, res), delay);
      res.on('close', () => clearTimeout(t));
    } else handle(req, res);
  });
  await new Promise<void>((resolveP, rejectP) => {
    server.once('error', rejectP);
    server.listen(0, '127.0.0.1', () => resolveP());
  });
  const port = (server.address() as { port: number }).port;
  host = `localhost:${port}`;
  origin = `https://${host}`;
  const payUrl = (user = 'alice'): string => `${origin}/.well-known/lnurlp/${user}`;

  return {
    port, origin, caCertPath: ca.caCertPath, caPem: ca.caPem, faults, options, counts, callbackQueries,
    address: (user = 'alice') => `${user}@${host}`,
    lnurl: (user = 'alice') => bech32.encode('lnurl', bech32.toWords(Buffer.from(payUrl(user), 'utf8')), false).toUpperCase(),
    payUrl,
    metadata: (user = 'alice') => metadata(user),
    settle(bolt11: string): Buffer {
      const pr = bolt11.trim().replace(/^lightning:/i, '').toLowerCase();
      const hash = (lightBolt11.decode(pr).sections.find((s) => s.name === 'payment_hash') as { value: string } | undefined)?.value;
      const inv = hash ? invoices.get(hash) : undefined;
      if (!inv || inv.bolt11 !== pr) throw new Error('lnurl peer: unknown invoice');
      if (inv.paid) throw new Error('lnurl peer: invoice already paid');
      if (Date.now() / 1000 >= inv.expiresAt) throw new Error('lnurl peer: invoice expired');
      inv.paid = true;
      return inv.preimage;
    },
    async stop(): Promise<void> {
      await new Promise<void>((resolveP) => {
        server.close(() => resolveP());
        server.closeAllConnections();
      });
      ca.remove();
    },
  };
}
