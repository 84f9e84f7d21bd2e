// One nginx + l402d + upstreams stack for integration tests, built from the real nginx snippets.
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { parseConfig, type GateConfig, type RouteConfig } from '../../src/config/config.js';
import { createChallenge } from '../../src/policy/challenge.js';
import { parseRootKey } from '../../src/protocol/root-key.js';
import { startGate, type RunningGate } from '../../src/server/app.js';
import { DEV_PAY_LOCATION, nginxSnippets } from '../../src/cli/nginx-conf.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';
import {
  Cleanup, freePort, http1, startCountingUpstream, startGrpcUpstream, startNginx,
  type CountingUpstream, type GrpcUpstream, type NginxHandle,
} from './harness.js';

export const TEST_ROOT_KEY = '4f9c2d7e1a8b3c6d5e0f9a2b7c4d1e8f3a6b5c0d9e2f7a4b1c8d3e6f5a0b9c2d';

export const ROUTES_YAML = `lightning: { type: dev }\nroutes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 120 }
  - { match: /forever, amount_msat: 2000, access: indefinite }
  - { match: /getonly, amount_msat: 1000, methods: [GET, HEAD] }
  - { match: /content.ContentService/, amount_msat: 3000 }
  - { match: /auto, amount_msat: 4000, auto_detect_payment: true }
  - { match: /limited, amount_msat: 1000, invoice_rate_limit: 2r/m }
  - { match: /fastlimit, amount_msat: 1000, invoice_rate_limit: 1r/s }
  - { match: /shadow, amount_msat: 7000, dry_run: true, invoice_rate_limit: 3r/m }
  - { match: /hidden, amount_msat: 100, manifest_hide: true }
  - { match: /nopage, amount_msat: 1000, payment_page: false }
`;

export interface Stack {
  cfg: GateConfig;
  gate: RunningGate;
  nginx: NginxHandle;
  upstream: CountingUpstream;
  grpcUp: GrpcUpstream;
  /** nginx HTTP/1.1 origin. */
  origin: string;
  /** nginx h2c port (HTTP/2 prior knowledge and gRPC). */
  h2Port: number;
  wallet: DevWallet;
  logs: string[];
  dataDir: string;
  /** Gets a challenge through nginx and pays it with the dev wallet. */
  buy(path: string, method?: string): Promise<{ macaroon: string; invoice: string; preimage: string; auth: string }>;
}

/** Operator config around the snippets: `http` goes at http level, `server` into each server block. */
export interface Surround {
  http?: string;
  server?: string;
}

export function nginxServers(port: number, h2Port: number, upstreamPort: number, grpcPort: number, snippetDir: string, surround: Surround = {}, extra = '', extraH2 = ''): string {
  return `
    ${surround.http ?? ''}
    include ${snippetDir}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        ${surround.server ?? ''}
        include ${snippetDir}/server.conf;
        ${extra}
        location / { proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /premium { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /timed/ { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /forever { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /getonly { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /auto { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /limited { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /fastlimit { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /shadow { include ${snippetDir}/protect.conf; include ${snippetDir}/dry-run.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /tenant/ { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /unpriced { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /nopage { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
    }
    server {
        listen 127.0.0.1:${h2Port} http2;
        ${surround.server ?? ''}
        include ${snippetDir}/server.conf;
        ${extraH2}
        location /premium { include ${snippetDir}/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /content.ContentService/ { include ${snippetDir}/protect.conf; grpc_pass grpc://127.0.0.1:${grpcPort}; }
    }`;
}

export function writeSnippets(cfg: GateConfig, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(nginxSnippets(cfg))) writeFileSync(join(dir, name), text);
}

export async function startStack(cleanup: Cleanup, opts: { extraYaml?: string; extraRoutes?: string; backend?: LightningBackend; surround?: Surround; devPay?: boolean; /** Extra locations in the HTTP/1.1 server, given the snippet directory. */ extra?: (snippetDir: string) => string; /** Extra locations in the h2c server, given the snippet directory. */ extraH2?: (snippetDir: string) => string } = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'l402-stack-'));
  cleanup.add(() => rmSync(dataDir, { recursive: true, force: true }), 'rm data dir');
  const gatePort = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${gatePort}\ndata_dir: ${dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: debug }\n${opts.extraYaml ?? ''}${opts.devPay ? ROUTES_YAML.replace('lightning: { type: dev }', 'lightning: { type: dev, pay_endpoint: true }') : ROUTES_YAML}${opts.extraRoutes ?? ''}`,
    { env: {} },
  );
  const logs: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  const gate = await startGate(cfg, { log: createLogger('debug', sink), backend: opts.backend });
  cleanup.add(() => gate.close(), 'l402d');
  const wallet = DevWallet.open(dataDir);
  cleanup.add(() => wallet.close(), 'wallet');
  const upstream = cleanup.use(await startCountingUpstream(), 'upstream');
  const grpcUp = cleanup.use(await startGrpcUpstream(), 'grpc upstream');
  const snippetDir = join(dataDir, 'nginx-l402');
  writeSnippets(cfg, snippetDir);
  const port = await freePort();
  const h2Port = await freePort();
  const nginx = cleanup.use(await startNginx({ http: nginxServers(port, h2Port, upstream.port, grpcUp.port, snippetDir, opts.surround, (opts.devPay ? DEV_PAY_LOCATION : '') + (opts.extra?.(snippetDir) ?? ''), opts.extraH2?.(snippetDir) ?? '') }), 'nginx');
  const origin = `http://127.0.0.1:${port}`;
  return {
    cfg, gate, nginx, upstream, grpcUp, origin, h2Port, wallet, logs, dataDir,
    async buy(path, method = 'GET') {
      const r = await http1(origin + path, { method, headers: { accept: 'application/json' } });
      if (r.status !== 402) throw new Error(`expected 402 for ${method} ${path}, got ${r.status}: ${r.body}`);
      const body = JSON.parse(r.body) as { macaroon: string; invoice: string };
      const preimage = wallet.pay(body.invoice).toString('hex');
      return { macaroon: body.macaroon, invoice: body.invoice, preimage, auth: `L402 ${body.macaroon}:${preimage}` };
    },
  };
}

/** A paid credential exactly as l402d mints it, and its parts. */
export interface MintedCredential {
  /** The Authorization header value. */
  auth: string;
  hash: string;
  preimage: string;
  macaroon: string;
}

/**
 * A credential for `route` and `path` as l402d mints it with TEST_ROOT_KEY, without a round trip: the gate
 * verifies a preimage-bearing credential without asking the Lightning backend, so a local "invoice" (a
 * random preimage) is enough.
 */
export async function mintLocalCredential(route: RouteConfig, path: string, method = 'GET'): Promise<MintedCredential> {
  const preimage = randomBytes(32);
  const backend: LightningBackend = {
    kind: 'local',
    createInvoice: async () => ({ bolt11: 'lnbcrt1local', paymentHash: createHash('sha256').update(preimage).digest(), expiresAt: Math.floor(Date.now() / 1000) + 3600 }),
    describe: () => 'local',
    close: async () => {},
  };
  const c = await createChallenge(route, { path, method, amountMsat: route.amountMsat }, { backend, rootKey: parseRootKey(TEST_ROOT_KEY), service: 'l402', location: 'l402', memo: '', invoiceExpirySecs: 3600, backendTimeoutMs: 1000 });
  return { auth: `L402 ${c.macaroon}:${preimage.toString('hex')}`, hash: c.paymentHash, preimage: preimage.toString('hex'), macaroon: c.macaroon };
}
