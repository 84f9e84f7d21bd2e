// Challenge path: 402 answers per second through nginx with the dev wallet (every one a freshly signed
// BOLT11 invoice and macaroon), what one core can mint in-process, and — with a slow Lightning backend —
// whether concurrency is limited only by the backend (ideal rate = connections / backend latency).
// Usage: node --import tsx bench/challenge.ts
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createChallenge } from '../src/policy/challenge.js';
import { parseRootKey } from '../src/protocol/root-key.js';
import {
  Cleanup, appUpstream, freePort, machine, machineBusy, measure, protectedLocation, requireBenchTools, startBenchNginx,
  startGateProc, startUpstream, table, tmp, writeSuffixedSnippets, ROOT_KEY, SECS, WARMUP_SECS,
} from './lib.js';

const ROUTES = `lightning: { type: dev }
routes:
  - { match: /single, amount_msat: 1000 }
`;
const SLOW_MS = Number(process.env.BENCH_SLOW_BACKEND_MS ?? 100);

export async function runChallenge(): Promise<string[]> {
  requireBenchTools();
  const cleanup = new Cleanup();
  const out: string[] = [];
  try {
    const dir = tmp(cleanup, 'l402-bench-challenge-');
    const app = await startUpstream(cleanup);
    const gate = await startGateProc(cleanup, `log: { level: info }\n${ROUTES}`, { name: 'l402d dev wallet' });
    const slow = await startGateProc(cleanup, `log: { level: info }\n${ROUTES}`, { name: 'l402d slow backend', slowBackendMs: SLOW_MS });
    const two = await startGateProc(cleanup, `workers: 2\nlog: { level: info }\n${ROUTES}`, { name: 'l402d workers: 2' });

    // In-process ceiling: one core signing invoices (dev wallet) and minting macaroons, no HTTP.
    const route = gate.cfg.routes[0]!;
    const deps = { backend: gate.wallet, rootKey: parseRootKey(ROOT_KEY), service: 'l402', location: 'l402', memo: 'bench', invoiceExpirySecs: 3600, backendTimeoutMs: 5000 };
    const n = 1_500;
    for (let i = 0; i < 100; i++) await createChallenge(route, { path: '/single', method: 'GET', amountMsat: 1000 }, deps);
    let t0 = performance.now();
    for (let i = 0; i < n; i++) await gate.wallet.createInvoice({ amountMsat: 1000, memo: 'bench', expirySecs: 3600 });
    const invoicesPerSec = n / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    for (let i = 0; i < n; i++) await createChallenge(route, { path: '/single', method: 'GET', amountMsat: 1000 }, deps);
    const challengesPerSec = n / ((performance.now() - t0) / 1000);

    const sn = writeSuffixedSnippets(gate.cfg, join(dir, 'sn'), '');
    const snSlow = writeSuffixedSnippets(slow.cfg, join(dir, 'sn-slow'), '_slow');
    const snTwo = writeSuffixedSnippets(two.cfg, join(dir, 'sn-two'), '_two');
    const port = await freePort();
    const portSlow = await freePort();
    const portTwo = await freePort();
    await startBenchNginx(
      cleanup,
      1,
      `${appUpstream(app.port)}
      include ${sn}/upstream.conf;
      include ${snSlow}/upstream.conf;
      include ${snTwo}/upstream.conf;
      server { listen 127.0.0.1:${portTwo}; access_log off; include ${snTwo}/server.conf; ${protectedLocation('/single', snTwo)} }
      server { listen 127.0.0.1:${port}; access_log off; include ${sn}/server.conf; ${protectedLocation('/single', sn)} }
      server { listen 127.0.0.1:${portSlow}; access_log off; include ${snSlow}/server.conf; ${protectedLocation('/single', snSlow)} }`,
    );
    const busy = await machineBusy();
    const rows: Array<Record<string, string | number>> = [];
    for (const [label, p] of [['dev wallet, 1 process', port], ['dev wallet, workers: 2', portTwo]] as const) {
      const conns = 32;
      const r = await measure(`http://127.0.0.1:${p}/single`, { connections: conns, countStatus: true });
      const ok = r.statuses['402'] ?? 0;
      rows.push({ 'challenges (402) through nginx x1': `${label}, wrk -c${conns}`, '402/s': ok / SECS, 'p50 ms': r.p50, 'p99 ms': r.p99, 'other statuses': r.requests - ok, 'vs goal 2000/s': `${(ok / SECS / 2000).toFixed(2)}x` });
    }
    out.push(`machine busy before the run ${(busy * 100).toFixed(0)}% (shared machine)`);
    out.push(table(`Challenge path (${SECS}s after ${WARMUP_SECS}s warm-up)`, rows));
    out.push(table('In-process ceiling, one core, no HTTP', [
      { step: 'dev wallet createInvoice (sign BOLT11 + SQLite insert)', 'per second': invoicesPerSec, 'us each': 1e6 / invoicesPerSec },
      { step: 'createChallenge (invoice + macaroon)', 'per second': challengesPerSec, 'us each': 1e6 / challengesPerSec },
    ]));

    const slowRows: Array<Record<string, string | number>> = [];
    for (const conns of [16, 128]) {
      const r = await measure(`http://127.0.0.1:${portSlow}/single`, { connections: conns, countStatus: true });
      const ok = (r.statuses['402'] ?? 0) / SECS;
      const ideal = conns / (SLOW_MS / 1000);
      // Little's law: requests in flight = rate x mean latency. Equal to the connection count means
      // l402d held every request open concurrently; the rest of the latency is CPU (signing), not a cap.
      slowRows.push({
        [`backend +${SLOW_MS} ms`]: `wrk -c${conns}`,
        '402/s': ok,
        'ideal (conns / backend latency)': ideal,
        'measured / ideal': `${(ok / ideal).toFixed(2)}x`,
        'in flight (rate x mean latency)': (r.requests / SECS) * (r.mean / 1000),
        'p50 ms': r.p50,
        'p99 ms': r.p99,
        'other statuses': r.requests - (r.statuses['402'] ?? 0),
      });
    }
    out.push(table('Slow Lightning backend: concurrency limited by the backend only', slowRows));
  } finally {
    await cleanup.run();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(machine());
  await runChallenge();
}
