// Starting and stopping one l402d: keys, store, backend, HTTP server.
import type { AddressInfo } from 'node:net';
import { ANSWER_BOUND_MS, worstAnswerMs } from '../policy/budget.js';
import { resolve } from 'node:path';
import type { Server } from 'node:http';
import { ConfigError, type GateConfig } from '../config/config.js';
import { parseRootKey, WeakKeyError } from '../protocol/root-key.js';
import { loadOrCreateDevRootKey } from './dev-root-key.js';
import { ngxL402ClaimsUnseen } from '../policy/store-keys.js';
import { openBackend } from './wiring/open-backend.js';
import type { LightningBackend } from '../rails/lightning/backend.js';
import { openStore } from './wiring/open-store.js';
import type { DurabilityReport } from '../store/redis-durability.js';
import { createLogger, type Logger } from '../util/log.js';
import { Gate } from './gate.js';
import { createGateServer } from './http-server.js';
import { Metrics } from './metrics.js';
import { createCashuRail, type CashuRail, type CashuRailDeps } from '../rails/cashu/index.js';
import type { Store } from '../store/store.js';
import { createMetricsServer } from './metrics-server.js';
import { gateConsoleSource } from './console-routes.js';
import { REFRESH_MS } from './revocations.js';
import { withTimeout } from '../util/timeout.js';
import { isDeepStrictEqual } from 'node:util';
import { errorShape, runGuarded } from './process-policy.js';

const SHUTDOWN_GRACE_MS = 5000;
/** A gate replaced by a reload keeps its tenant backends this long, for requests still in flight on it. */
const RETIRE_AFTER_MS = 120_000;
/** Bound on the start-up check of the Lightning backend (the call `doctor` makes). */
export const BACKEND_START_CHECK_MS = 3000;

/** l402d refuses to start (require_backend); the CLI exits 2 with this message. */
export class StartRefusedError extends Error {}

/**
 * The Lightning backend's own check (what `doctor` runs), bounded. Resolves to undefined when the backend
 * answered, else to why not (backend messages name paths and addresses, never credentials).
 */
export async function checkBackendAtStart(backend: LightningBackend): Promise<string | undefined> {
  if (!backend.check) return undefined;
  try {
    await withTimeout(backend.check(AbortSignal.timeout(BACKEND_START_CHECK_MS)), BACKEND_START_CHECK_MS + 500, 'backend check');
    return undefined;
  } catch (e) {
    return (e as Error).message || String(e);
  }
}

function backendProblem(backend: LightningBackend, problem: string): string {
  return `lightning backend ${backend.kind} (${backend.describe()}) is not usable: ${problem}`;
}

export interface RunningGate {
  gate: Gate;
  server: Server;
  /** "host:port" or the unix socket path. */
  address: string;
  metricsAddress?: string;
  /**
   * SIGHUP: swaps in `next` for new requests (requests in flight finish on the old gate), or throws a
   * ConfigError and keeps the old config whole. Returns the summary logged with `config reloaded`.
   */
  reload(next: GateConfig, source: string): ReloadSummary;
  close(): Promise<void>;
}

export interface ReloadSummary {
  routes: number;
  added: string[];
  removed: string[];
  changed: string[];
  settings: string[];
}

/**
 * What a reload may change: read per request through the Gate. Everything else (listen, workers, store,
 * lightning, root keys, cashu, data_dir, timeouts, log, metrics, upstream, nginx_secret, service, ...) is
 * opened or bound at start and needs a restart.
 */
const RELOADABLE = new Set<keyof GateConfig>(['routes', 'pricing', 'dryRunInvoiceSampleRate', 'manifest', 'challenge', 'invoice', 'retryAfterSecs', 'rateLimit', 'nginxCacheMaxSecs', 'unknownCaveats', 'freePaths']);

/** The YAML key of a GateConfig field, for messages. */
function yamlKey(k: string): string {
  const named: Record<string, string> = { unknownCaveats: 'l402.unknown_caveats', logLevel: 'log.level', dryRunInvoiceSampleRate: 'dry_run.invoice_sample_rate', nginxCacheMaxSecs: 'nginx_cache.max_secs', configDir: 'config file location' };
  if (named[k]) return named[k];
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The settings of `next` that differ from `running` and need a restart (YAML key names, never values). */
export function restartKeysChanged(running: GateConfig, next: GateConfig): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)] as (keyof GateConfig)[]);
  return [...keys].filter((k) => !RELOADABLE.has(k) && !isDeepStrictEqual(running[k], next[k])).map(yamlKey);
}

/**
 * The full check of a reloaded config against the running one: throws a ConfigError naming the file and
 * the keys that need a restart. (parseConfig already checked the file itself.)
 */
export function checkReload(running: GateConfig, next: GateConfig, source: string): void {
  const restart = restartKeysChanged(running, next);
  if (restart.length > 0) {
    throw new ConfigError(`${source}: ${restart.join(', ')}: changed, which needs a restart (systemctl restart l402d); nothing reloaded, the old config keeps running`);
  }
}

function reloadSummary(running: GateConfig, next: GateConfig): ReloadSummary {
  const before = new Map(running.routes.map((r) => [r.id, r]));
  const after = new Map(next.routes.map((r) => [r.id, r]));
  return {
    routes: next.routes.length,
    added: [...after.keys()].filter((id) => !before.has(id)),
    removed: [...before.keys()].filter((id) => !after.has(id)),
    changed: [...after.keys()].filter((id) => before.has(id) && !isDeepStrictEqual(before.get(id), after.get(id))),
    settings: [...RELOADABLE].filter((k) => k !== 'routes' && !isDeepStrictEqual(running[k], next[k])).map(yamlKey),
  };
}

/** Behind nginx, l402d trusts the request description nginx sends (path, client address): only nginx may reach it. */
export function nonLoopbackWarning(listen: string): string {
  return `${listen} is not a loopback address or unix socket: anyone who reaches l402d there can ask /_l402/auth for decisions in another client's name and burn its rate limit; only nginx should reach l402d (use 127.0.0.1 or unix:, or set nginx_secret and regenerate the snippets with l402d nginx-conf, and firewall the port to nginx's hosts)`;
}

/** The metrics listener serves the operator console too: without a token it must not face a network. */
export function openConsoleWarning(listen: string): string {
  return `metrics.listen ${listen} is not a loopback address or unix socket and metrics.token is not set: anyone who reaches it reads /metrics and the operator console (sales, earnings, token id prefixes, revocations); set metrics.token, or listen on 127.0.0.1 and reach it through an SSH tunnel`;
}

/** True for a unix socket or a loopback host. */
export function isLocalListen(listen: string): boolean {
  const host = listen.startsWith('unix:') ? 'unix' : listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'unix' || host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export function loadRootKeys(cfg: GateConfig, log: Logger): Buffer[] {
  try {
    const keys: Buffer[] = [];
    if (cfg.rootKey !== undefined) keys.push(parseRootKey(cfg.rootKey, 'root_key'));
    else if (cfg.lightning.type === 'dev') {
      const path = resolve(cfg.dataDir, 'root.key');
      keys.push(loadOrCreateDevRootKey(path));
      log.warn({ path }, 'no root_key configured: using a generated development key from the data dir');
    } else throw new ConfigError('root_key: required (set it in the config or the ROOT_KEY environment variable)');
    cfg.previousRootKeys.forEach((k, i) => keys.push(parseRootKey(k, `previous_root_keys[${i}]`)));
    return keys;
  } catch (e) {
    if (e instanceof WeakKeyError) throw new ConfigError(e.message);
    throw e;
  }
}

/** The Cashu rail of a config with a `cashu:` section, wired as l402d runs it (also for the CLI and doctor). */
export function openCashuRail(
  cfg: GateConfig,
  parts: { store: Store; log: Logger; backend?: LightningBackend; tenantInvoice?: CashuRailDeps['tenantInvoice']; background?: boolean },
): Promise<CashuRail> {
  if (!cfg.cashu) throw new ConfigError('cashu: this config has no cashu: section');
  return createCashuRail(cfg.cashu, {
    store: parts.store,
    dataDir: cfg.dataDir,
    configDir: cfg.configDir,
    log: parts.log,
    lightning: parts.backend,
    tenantInvoice: parts.tenantInvoice,
    background: parts.background,
  });
}

function addressOf(server: Server): string {
  const a = server.address();
  return typeof a === 'string' ? a : `${(a as AddressInfo).address}:${(a as AddressInfo).port}`;
}

const LISTEN_BACKLOG = 4096;

function listenOn(server: Server, listen: string): Promise<string> {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    const done = () => {
      server.off('error', fail);
      ok(addressOf(server));
    };
    // nginx opens a connection per request in flight beyond its keepalive pool: a burst can outrun Node's
    // default accept queue (511), and a dropped SYN is retried after 1 s, most of a decision's deadline.
    // The kernel caps this at net.core.somaxconn.
    if (listen.startsWith('unix:')) server.listen({ path: listen.slice(5), backlog: LISTEN_BACKLOG }, done);
    else {
      const i = listen.lastIndexOf(':');
      server.listen({ port: Number(listen.slice(i + 1)), host: listen.slice(0, i).replace(/^\[|\]$/g, ''), backlog: LISTEN_BACKLOG }, done);
    }
  });
}

/**
 * `backend` replaces the configured one (library use, and fault tests with a failing backend).
 * `refuseWithoutBackend` (default: cfg.requireBackend) makes a failed start-up backend check fatal; a
 * cluster worker gets false, its supervisor checked before forking.
 */
export async function startGate(cfg: GateConfig, opts: { log?: Logger; backend?: LightningBackend; refuseWithoutBackend?: boolean } = {}): Promise<RunningGate> {
  const log = opts.log ?? createLogger(cfg.logLevel);
  const rootKeys = loadRootKeys(cfg, log);
  const store = openStore(cfg);
  let backend: LightningBackend | undefined;
  let gate: Gate;
  let gateRef: Gate | undefined;
  let server: Server | undefined;
  let address: string;
  const metrics = cfg.metrics ? new Metrics(store, log) : undefined;
  let cashu: CashuRail | undefined;
  let metricsServer: Server | undefined;
  let revocationTimer: NodeJS.Timeout | undefined;
  // Before anything else opens or listens: a refusal comes before any request.
  const durability = store.durability ? checkRedisDurability(store, cfg.store.type === 'redis' && cfg.store.requirePersistence, log) : undefined;
  try {
    const refuse = await durability;
    if (refuse) throw new ConfigError(`store.require_persistence: refusing to start: ${refuse}`);
    backend = opts.backend ?? (await openBackend(cfg, log));
    if (backend.kind === 'dev') {
      log.error(
        { backend: backend.describe(), pay_endpoint: cfg.lightning.type === 'dev' && cfg.lightning.pay_endpoint },
        'DEVELOPMENT WALLET, NOT REAL MONEY: anyone can pay its invoices (l402d dev pay); never use lightning.type dev in production',
      );
    }
    // A wrong macaroon or a node that is down is said now, not discovered by the first paying client.
    const problem = await checkBackendAtStart(backend);
    if (problem !== undefined) {
      if (opts.refuseWithoutBackend ?? cfg.requireBackend) throw new StartRefusedError(`require_backend: refusing to start: ${backendProblem(backend, problem)}`);
      log.error(
        { event: 'backend_check', backend: backend.kind },
        `LIGHTNING BACKEND NOT USABLE AT START: ${backendProblem(backend, problem)}; l402d runs anyway and answers 503 where an invoice is needed until the backend answers (set require_backend: true or start --require-backend to refuse to start instead)`,
      );
    }
    cashu = cfg.cashu
      ? await openCashuRail(cfg, {
          store,
          log,
          backend,
          // Ecash paid on a route with its own Lightning address is redeemed to that address.
          tenantInvoice: (address, amountMsat, memo, signal) => gateRef!.tenantInvoice(address, amountMsat, memo, signal),
        })
      : undefined;
    gate = new Gate({ config: cfg, store, backend, rootKeys, log, metrics, cashu });
    gateRef = gate;
    server = createGateServer(gate, () => gate);
    address = await listenOn(server, cfg.listen);
    if (metrics && cfg.metrics) {
      metricsServer = createMetricsServer(metrics, cfg.metrics.token, log, gateConsoleSource(() => gateRef!));
      await listenOn(metricsServer, cfg.metrics.listen);
      metrics.start();
    }
  } catch (e) {
    server?.close();
    await Promise.allSettled([cashu?.close(), store.close(), backend?.close()]);
    throw e;
  }
  // Not fatal: requests fail closed (503) until the store answers, and recover without a restart.
  await store.ping().catch((e: Error) => log.error({ store: store.kind, err: e.message }, 'store not reachable at start; single-use routes answer 503 until it is'));
  // The revocation list now, then kept fresh in the background (revocations.ts), so a burst of paid requests
  // never waits for it; until it has been read once, Lightning credentials answer 503.
  await gate.parts.revocations!.refresh().catch((e: Error) => log.error({ event: 'revocations_unread', err: e.message }, 'could not read the revocation list at start; paid requests answer 503 until the store answers'));
  revocationTimer = setInterval(() => void gate.parts.revocations!.refresh().catch(() => undefined), REFRESH_MS).unref();
  // A sweep that throws (SQLite busy past its timeout, a full disk) is logged and tried again next minute.
  const sweeper = store.sweep ? setInterval(() => runGuarded(log, 'store sweep', () => store.sweep?.()), 60_000).unref() : undefined;
  // A listening socket's later error (accept failing) is logged: with no listener it would end the process.
  for (const s of [server, metricsServer]) s?.on('error', (e: Error) => log.error({ event: 'listener_error', err: errorShape(e) }, 'listener error'));
  if (!cfg.upstream && !isLocalListen(cfg.listen) && !cfg.nginxSecret) log.warn({ listen: cfg.listen }, nonLoopbackWarning(cfg.listen));
  if (cfg.metrics && cfg.metrics.token === undefined && !isLocalListen(cfg.metrics.listen)) log.warn({ listen: cfg.metrics.listen }, openConsoleWarning(cfg.metrics.listen));
  log.info({ listen: address, store: store.kind, backend: backend.kind, routes: cfg.routes.length, mode: cfg.upstream ? 'proxy' : 'nginx' }, 'l402d started');
  const worst = worstAnswerMs(cfg.timeouts);
  if (worst > ANSWER_BOUND_MS) log.warn({ worst_ms: worst, decision_ms: cfg.timeouts.decisionMs, render_ms: cfg.timeouts.renderMs }, `timeouts: a client may wait up to ${worst} ms for an answer (over ${ANSWER_BOUND_MS} ms); regenerate the nginx snippets (l402d nginx-conf) so nginx waits for these deadlines`);
  const ngxUnseen = cfg.ngxL402RootKey ? ngxL402ClaimsUnseen(cfg.store) : undefined;
  if (ngxUnseen) log.warn(`ngx_l402_root_key: ${ngxUnseen}`);
  // Old gates replaced by a reload: closed (their tenant backends) once their requests have surely finished.
  const retired = new Set<Gate>();
  const retire = (old: Gate) => {
    retired.add(old);
    setTimeout(() => {
      retired.delete(old);
      old.close().catch(() => {});
    }, RETIRE_AFTER_MS).unref();
  };
  return {
    get gate() {
      return gate;
    },
    server,
    address,
    metricsAddress: metricsServer ? addressOf(metricsServer) : undefined,
    reload(next: GateConfig, source: string): ReloadSummary {
      const running = gate.parts.config;
      checkReload(running, next, source);
      let fresh: Gate;
      try {
        // Same store, backend, keys, rails: only what the config says per request changes. The constructor
        // runs startGate's route checks (cashu rails, auto-detect).
        fresh = new Gate({ ...gate.parts, config: next });
      } catch (e) {
        if (e instanceof ConfigError) throw new ConfigError(`${source}: ${e.message}`);
        throw e;
      }
      const summary = reloadSummary(running, next);
      retire(gate);
      // One assignment: every request that starts from now on sees the new gate, whole.
      gate = fresh;
      gateRef = fresh;
      return summary;
    },
    async close() {
      for (const old of retired) await old.close().catch(() => {});
      retired.clear();
      if (sweeper) clearInterval(sweeper);
      clearInterval(revocationTimer);
      metricsServer?.close();
      await metrics?.stop().catch(() => {});
      // Graceful: stop accepting, drop idle keep-alive connections (server.close does that since Node 19), let
      // requests in flight finish (bounded): a request already deciding, perhaps holding a single-use claim,
      // gets its answer rather than a reset that nginx would replay on another process.
      await new Promise<void>((r) => {
        const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
        server.close(() => {
          clearTimeout(force);
          r();
        });
      });
      await Promise.allSettled([cashu?.close(), gate.close()]);
      gate.parts.sales?.stop();
      await Promise.allSettled([store.close(), backend!.close()]);
    },
  };
}

/**
 * store.require_persistence with several workers: checked once by the supervisor before any worker starts,
 * so a refusal stops l402d instead of workers failing (and being replaced) in a loop.
 */
export async function refuseUnlessRedisDurable(cfg: GateConfig, log: Logger): Promise<void> {
  if (cfg.store.type !== 'redis' || !cfg.store.requirePersistence) return;
  const store = openStore(cfg);
  try {
    const refuse = await checkRedisDurability(store, true, log);
    if (refuse) throw new ConfigError(`store.require_persistence: refusing to start: ${refuse}`);
  } finally {
    await store.close();
  }
}

/**
 * Says loudly (error log lines naming the setting and the fix) when Redis could forget or evict spent marks.
 * Returns why l402d must not start, when `required` and Redis is not seen to keep them.
 */
export async function checkRedisDurability(store: Pick<Store, 'durability'>, required: boolean, log: Logger): Promise<string | undefined> {
  let report: DurabilityReport;
  try {
    if (!store.durability) throw new Error('this store cannot report it');
    report = await store.durability();
  } catch (e) {
    const msg = `redis persistence and maxmemory-policy could not be checked: ${(e as Error).message}`;
    log.warn({ event: 'redis_durability', store: 'redis' }, msg);
    return required ? msg : undefined;
  }
  for (const p of report.problems) log.error({ event: 'redis_durability', store: 'redis' }, `SPENT CREDENTIALS AT RISK: ${p}`);
  for (const u of report.unchecked) log.warn({ event: 'redis_durability', store: 'redis' }, u);
  if (!required) return undefined;
  const all = [...report.problems, ...report.unchecked];
  return all.length > 0 ? all.join('; ') : undefined;
}
