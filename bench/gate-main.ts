// l402d for benchmarks: what `l402d start --config FILE` runs, plus an optional artificial Lightning
// latency (the dev wallet behind a fixed delay) to show that only the backend limits concurrency.
// Usage: node --import tsx bench/gate-main.ts <config.yaml> [--slow-backend-ms N]
// Runs the compiled build in dist/ (what `l402d start` ships; bench/lib.ts builds it first), or the sources
// with BENCH_FROM=src (tsx's transform adds a helper call to every function it creates: slower than the build).
import type { LightningBackend } from '../src/rails/lightning/backend.js';

const FROM = process.env.BENCH_FROM === 'src' ? '../src' : '../dist';
const { loadConfigFile } = (await import(`${FROM}/config/config.js`)) as typeof import('../src/config/config.js');
const { startGate } = (await import(`${FROM}/server/app.js`)) as typeof import('../src/server/app.js');
const { DevWallet } = (await import(`${FROM}/rails/lightning/dev/dev-wallet.js`)) as typeof import('../src/rails/lightning/dev/dev-wallet.js');
const { sleep } = (await import(`${FROM}/util/timeout.js`)) as typeof import('../src/util/timeout.js');

const [file, flag, value] = process.argv.slice(2);
const cfg = loadConfigFile(file!);
let backend: LightningBackend | undefined;
if (flag === '--slow-backend-ms') {
  const ms = Number(value);
  const wallet = DevWallet.open(cfg.dataDir);
  backend = {
    kind: 'dev',
    async createInvoice(req, signal) {
      await sleep(ms);
      return wallet.createInvoice(req, signal);
    },
    lookupInvoice: (hash, signal) => wallet.lookupInvoice(hash, signal),
    describe: () => `dev wallet behind a ${ms} ms delay`,
    close: () => wallet.close(),
  };
}
// `workers: N` runs as `l402d start` does: a supervisor and N processes on one address.
if (!backend && cfg.workers > 1) {
  const { runGate } = (await import(`${FROM}/cli/workers.js`)) as typeof import('../src/cli/workers.js');
  await runGate(cfg);
  await new Promise(() => {});
}
const running = await startGate(cfg, { backend });
// The memory bench asks for a collected heap figure (node --expose-gc) to tell garbage from growth.
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stderr.write(`MEM ${JSON.stringify(process.memoryUsage())}\n`);
});
// The paid bench asks what the young generation's collections did during a run (SIGWINCH: since the last ask):
// their pauses are what a request waiting through one adds to the tail latency.
const { GCProfiler } = await import('node:v8');
let gcProfiler = new GCProfiler();
gcProfiler.start();
process.on('SIGWINCH', () => {
  const stats = gcProfiler.stop()?.statistics ?? [];
  gcProfiler = new GCProfiler();
  gcProfiler.start();
  type Heap = { heapSpaceStatistics: Array<{ spaceName: string; spaceUsedSize: number }> };
  const space = (h: Heap, name: string) => h.heapSpaceStatistics.find((x) => x.spaceName === name)?.spaceUsedSize ?? 0;
  const oldSpace = (h: Heap) => space(h, 'old_space');
  const young = stats.filter((g) => g.gcType === 'Scavenge');
  const pauses = young.map((g) => g.cost / 1000).sort((a, b) => a - b);
  const promoted = young.reduce((n, g) => n + oldSpace(g.afterGC) - oldSpace(g.beforeGC), 0);
  // What the young generation held when each scavenge began (about what was allocated since the last one) and
  // what it still held after (the survivors it copied: a scavenge's pause grows with them).
  const allocated = young.reduce((n, g) => n + space(g.beforeGC, 'new_space'), 0);
  const survived = young.reduce((n, g) => n + space(g.afterGC, 'new_space'), 0);
  process.stderr.write(`YOUNGGC ${JSON.stringify({ scavenges: young.length, promoted, allocated, survived, p50Ms: pauses[pauses.length >> 1] ?? 0, maxMs: pauses.at(-1) ?? 0 })}\n`);
});
const stop = () => running.close().then(() => process.exit(0), () => process.exit(1));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
