// `workers: N`: N l402d processes sharing one listen address (node:cluster), so verification and invoice
// signing use every core. All state they share lives in the store (SQLite file or Redis), never in memory.
import cluster from 'node:cluster';
import type { GateConfig } from '../policy/config.js';
import { checkBackendAtStart, refuseUnlessRedisDurable, startGate, StartRefusedError } from '../server/app.js';
import { openBackend } from '../rails/lightning/open-backend.js';
import { createLogger } from '../util/log.js';

export async function runGate(config: GateConfig): Promise<void> {
  if (config.workers > 1 && cluster.isPrimary) {
    await refuseUnlessRedisDurable(config, createLogger(config.logLevel));
    if (config.requireBackend) await refuseUnlessBackendAnswers(config);
    return supervise(config);
  }
  // A worker only warns: its supervisor refused before forking, and a refusing worker would be replaced in a loop.
  const running = await startGate(config, { refuseWithoutBackend: cluster.isWorker ? false : undefined });
  const stop = (signal: string) => {
    running.gate.parts.log.info({ signal }, 'shutting down');
    running.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

/** require_backend with several workers: checked once by the supervisor before any worker starts. */
async function refuseUnlessBackendAnswers(config: GateConfig): Promise<void> {
  const backend = await openBackend(config, createLogger(config.logLevel));
  try {
    const problem = await checkBackendAtStart(backend);
    if (problem !== undefined) throw new StartRefusedError(`require_backend: refusing to start: lightning backend ${backend.kind} (${backend.describe()}) is not usable: ${problem}`);
  } finally {
    await backend.close();
  }
}

function supervise(config: GateConfig): void {
  const log = createLogger(config.logLevel);
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < config.workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    // A worker that dies is replaced, after a pause so a crash loop cannot spin.
    log.error({ pid: worker.process.pid, code, signal }, 'l402d worker exited; starting another');
    setTimeout(fork, 1000).unref();
  });
  const stop = (sig: NodeJS.Signals) => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(sig);
    setTimeout(() => process.exit(0), 8000).unref();
  };
  process.once('SIGINT', () => stop('SIGTERM'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  log.info({ workers: config.workers, listen: config.listen }, 'l402d supervisor started');
}
