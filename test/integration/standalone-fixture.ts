// One l402d in standalone mode (`upstream:` set, no nginx) in front of a counting upstream, and the raw
// HTTP/1.1 requests the standalone tests send to it.
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startCountingUpstream, type Cleanup, type CountingUpstream } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

export interface Standalone {
  port: number;
  upstream: CountingUpstream;
  wallet: DevWallet;
}

/** `/cheap/` (indefinite, 1 sat) and `/expensive/` (per request, 900 sats) in front of a counting upstream. */
export async function startStandalone(cleanup: Cleanup, name: string, level: 'warn' | 'error' = 'warn'): Promise<Standalone> {
  const dir = mkdtempSync(join(tmpdir(), `l402-${name}-`));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const upstream = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upstream.port}\nlog: { level: ${level} }
lightning: { type: dev }
routes:
  - { match: /cheap/, amount_msat: 1000, access: indefinite }
  - { match: /expensive/, amount_msat: 900000 }
`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger(level) });
  cleanup.add(() => gate.close());
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  return { port, upstream, wallet };
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

/** Gets a challenge for `path` and pays it with the dev wallet: the Authorization header value. */
export async function buyStandalone(s: Standalone, path: string): Promise<string> {
  const r = await sendTo(s.port, 'GET', path);
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  return `L402 ${b.macaroon}:${s.wallet.pay(b.invoice).toString('hex')}`;
}
