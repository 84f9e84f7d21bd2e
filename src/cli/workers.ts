// `workers: N`: N l402d processes sharing one listen address (node:cluster), so verification and invoice
// signing use every core. All state they share lives in the store (SQLite file or Redis), never in memory.
import cluster from 'node:cluster';
import { ConfigError, type GateConfig } from '../config/config.js';
import { checkBackendAtStart, checkReload, refuseUnlessRedisDurable, startGate, StartRefusedError } from '../server/app.js';
import { openBackend } from '../server/wiring/open-backend.js';
import { createLogger } from '../util/log.js';
import { installProcessPolicy } from '../server/process-policy.js';

/** Re-reads the config as `start` read it (same file, same environment expansion), for SIGHUP. */
export interface ConfigLoader {
  source: string;
  load(): GateConfig;
}

export async function runGate(config: GateConfig, loader?: ConfigLoader): Promise<void> {
  if (config.workers > 1 && cluster.isPrimary) {
    // A SIGHUP before the workers exist changes nothing (they read the file when forked), and must not end l402d.
    const early = () => {};
    process.on('SIGHUP', early);
    installProcessPolicy(createLogger(config.logLevel));
    await refuseUnlessRedisDurable(config, createLogger(config.logLevel));
    if (config.requireBackend) await refuseUnlessBackendAnswers(config);
    supervise(config, loader);
    process.off('SIGHUP', early);
    return;
  }
  // A worker only warns: its supervisor refused before forking, and a refusing worker would be replaced in a loop.
  // Registered before starting, so a SIGHUP during start-up (Node's default would end the process) is
  // applied once the gate runs.
  let running: Awaited<ReturnType<typeof startGate>> | undefined;
  let hupWhileStarting = false;
  const reload = () => {
    if (!running) return void (hupWhileStarting = true);
    const log = running.gate.parts.log;
    if (!loader) return log.warn({ signal: 'SIGHUP' }, 'config reload: no config file to re-read; nothing reloaded');
    try {
      const summary = running.reload(loader.load(), loader.source);
      log.info({ event: 'config_reloaded', source: loader.source, ...summary }, 'config reloaded');
    } catch (e) {
      log.error({ event: 'config_reload_failed', source: loader.source, err: reloadError(e) }, `config reload failed, the old config keeps running: ${reloadError(e)}`);
    }
  };
  // SIGHUP (systemctl reload): routes and prices change for new requests; a bad file changes nothing.
  process.on('SIGHUP', reload);
  // An error nothing caught: logged, and for an uncaught exception the process exits for its supervisor to
  // replace it (process-policy.ts).
  const log = createLogger(config.logLevel);
  installProcessPolicy(log);
  running = await startGate(config, { log, refuseWithoutBackend: cluster.isWorker ? false : undefined });
  if (hupWhileStarting) reload();
  const started = running;
  const stop = (signal: string) => {
    started.gate.parts.log.info({ signal }, 'shutting down');
    started.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

/** A ConfigError's message names file, line and key (never a value); anything else only its kind. */
function reloadError(e: unknown): string {
  return e instanceof ConfigError ? e.message : `unexpected error (${(e as Error)?.name ?? typeof e})`;
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

function supervise(config: GateConfig, loader?: ConfigLoader): void {
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
  // SIGHUP: checked once here (one clear error for a bad file, not one per worker), then forwarded: each
  // worker re-reads the file and swaps its routes and prices between requests, dropping none.
  process.on('SIGHUP', () => {
    if (stopping) return;
    if (loader) {
      try {
        checkReload(config, loader.load(), loader.source);
      } catch (e) {
        return log.error({ event: 'config_reload_failed', source: loader.source, err: reloadError(e) }, `config reload failed, the old config keeps running: ${reloadError(e)}`);
      }
    }
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
    log.info({ event: 'config_reload_forwarded', workers: Object.keys(cluster.workers ?? {}).length }, 'config reload: SIGHUP forwarded to the workers');
  });
  log.info({ workers: config.workers, listen: config.listen }, 'l402d supervisor started');
}
