// One l402d in standalone mode (`upstream:` set, no nginx) in front of a counting upstream, plain or over its own
// `tls:`, the raw HTTP/1.1 requests the standalone tests send to it, and a credential bought from it.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startStack, TEST_ROOT_KEY, type Stack } from './gate-fixture.js';
import { makeCert } from '../support/https-client.js';
import { parseConfig, type GateConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

export interface Standalone {
  port: number;
  upstream: CountingUpstream;
  wallet: DevWallet;
}

export interface StandaloneGate extends Standalone {
  /** The data dir (SQLite, dev wallet, the TLS certificate), removed at cleanup. */
  dir: string;
  /** `http://127.0.0.1:PORT`, or `https://` with tls. */
  origin: string;
}

export interface StandaloneTlsGate extends StandaloneGate {
  /** The self-signed certificate l402d serves, to trust. */
  ca: Buffer;
}

/** `/cheap/` (indefinite, 1 sat) and `/expensive/` (per request, 900 sats), on the dev backend. */
export const STANDALONE_ROUTES = `lightning: { type: dev }
routes:
  - { match: /cheap/, amount_msat: 1000, access: indefinite }
  - { match: /expensive/, amount_msat: 900000 }
`;

type Level = 'warn' | 'error' | 'silent';

/** A temp dir named after `name`, removed at cleanup. */
export function tempDir(cleanup: Cleanup, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `l402-${name}-`));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A standalone l402d's config: listen, data_dir, root_key, upstream, tls and log, then `body` (the backend, the routes, the rest). */
export function standaloneConfig(o: { port: number; dir: string; upstreamPort: number; level: Level; tls?: { cert: string; key: string }; body: string }): GateConfig {
  const tls = o.tls ? `tls: { cert_file: ${o.tls.cert}, key_file: ${o.tls.key} }\n` : '';
  return parseConfig(`listen: 127.0.0.1:${o.port}\ndata_dir: ${o.dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${o.upstreamPort}\n${tls}log: { level: ${o.level} }\n${o.body}`, { env: {} });
}

interface GateOptions {
  /** Names the temp data dir (unless `dir` is given). */
  name: string;
  /** What follows the config's log line: the backend and the routes (STANDALONE_ROUTES when not given). */
  config?: string;
  level?: Level;
  /** A data dir the caller made (and removes). */
  dir?: string;
}

async function start(cleanup: Cleanup, opts: GateOptions, tls?: { cert: string; key: string }, dir = opts.dir ?? tempDir(cleanup, opts.name)): Promise<StandaloneGate> {
  const level = opts.level ?? 'warn';
  const upstream = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const cfg = standaloneConfig({ port, dir, upstreamPort: upstream.port, level, tls, body: opts.config ?? STANDALONE_ROUTES });
  const gate = await startGate(cfg, { log: createLogger(level) });
  cleanup.add(() => gate.close());
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  return { port, upstream, wallet, dir, origin: `${tls ? 'https' : 'http'}://127.0.0.1:${port}` };
}

/** A standalone l402d over plain HTTP in front of a counting upstream of its own. */
export function startStandaloneGate(cleanup: Cleanup, opts: GateOptions): Promise<StandaloneGate> {
  return start(cleanup, opts);
}

/** A standalone l402d serving HTTPS itself (`tls:`, a certificate made with `openssl` in its data dir). */
export async function startStandaloneTls(cleanup: Cleanup, openssl: string, opts: GateOptions): Promise<StandaloneTlsGate> {
  const dir = opts.dir ?? tempDir(cleanup, opts.name);
  const tls = makeCert(openssl, dir);
  const ca = readFileSync(tls.cert);
  return { ...(await start(cleanup, opts, tls, dir)), ca };
}

/** `/cheap/` (indefinite, 1 sat) and `/expensive/` (per request, 900 sats) in front of a counting upstream. */
export async function startStandalone(cleanup: Cleanup, name: string, level: 'warn' | 'error' = 'warn'): Promise<Standalone> {
  const { port, upstream, wallet } = await startStandaloneGate(cleanup, { name, level });
  return { port, upstream, wallet };
}

/** What bothModes started: `s` is left unset when nginx is missing (the tests that use it skip). */
export interface BothModes {
  /** The standalone fixture (startStandalone's). */
  st: Standalone;
  /** startStack's stack through real nginx. */
  s: Stack;
}

/**
 * For a file that tests both modes: registers its before hook, which starts the standalone fixture and (nginx
 * installed) startStack's stack, with options given that fixture, hands both to `set`, and the after hook that
 * stops them. Returns the `skip` of the tests through nginx.
 */
export function bothModes(name: string, set: (started: BothModes) => void, opts: { level?: 'warn' | 'error'; stack?: (st: Standalone) => Parameters<typeof startStack>[1] } = {}): { skip: string | false } {
  const skip = requireTool('nginx') ? false : 'nginx not installed';
  const cleanup = new Cleanup();
  before(async () => {
    const st = await startStandalone(cleanup, name, opts.level);
    const s = skip ? undefined : await startStack(cleanup, opts.stack?.(st));
    set({ st, s: s as Stack });
  });
  after(() => cleanup.run());
  return { skip };
}

/** One request with any method and repeated headers (arrays), the request-target sent exactly as given. */
export function sendTo(port: number, method: string, path: string, headers: Record<string, string | string[]> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers: { connection: 'close', accept: 'application/json', ...headers } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Pays the L402 challenge in a 402's JSON body with `wallet`: the Authorization header value. */
export function payChallenge(wallet: DevWallet, body: string): string {
  const b = JSON.parse(body) as { macaroon: string; invoice: string };
  return `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
}

/** Gets a challenge for `method path` and pays it with the dev wallet: the Authorization header value. */
export async function buyStandalone(s: Standalone, path: string, method = 'GET'): Promise<string> {
  const r = await sendTo(s.port, method, path);
  assert.equal(r.status, 402, r.body);
  return payChallenge(s.wallet, r.body);
}
