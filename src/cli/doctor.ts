// `l402d doctor`: checks what an operator would otherwise find out from a failing request, and says
// what to do about each problem. Never prints secrets.
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { request } from 'node:http';
import type { GateConfig } from '../config/config.js';
import { isLocalListen, loadRootKeys, nonLoopbackWarning, openCashuRail, openConsoleWarning } from '../server/app.js';
import { ngxL402ClaimsUnseen } from '../policy/store-keys.js';
import { resolveDbPath, resolveMnemonicFile } from '../rails/cashu/config.js';
import { MemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { openBackend } from '../server/wiring/open-backend.js';
import { BACKEND_START_CHECK_MS } from '../server/app.js';
import { openStore } from '../server/wiring/open-store.js';
import { createLogger } from '../util/log.js';
import { describeStore } from './config-source.js';
import { withTimeout } from '../util/timeout.js';

export interface Check {
  ok: boolean;
  what: string;
  detail: string;
}

function running(listen: string): Promise<boolean> {
  return new Promise((resolve) => {
    const opts = listen.startsWith('unix:')
      ? { socketPath: listen.slice(5), path: '/_l402/health' }
      : { host: listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, ''), port: Number(listen.slice(listen.lastIndexOf(':') + 1)), path: '/_l402/health' };
    const req = request({ ...opts, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The nearest directory of `p` (itself or an ancestor) that exists. */
function existingAncestor(p: string): string {
  let d = resolve(p);
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d;
}

/**
 * Doctor only looks: it creates nothing (no data dir, development root key, SQLite file or development
 * wallet), wherever it runs. What does not exist yet is checked on a throwaway copy in a temporary
 * directory and reported as "l402d start creates it".
 */
export async function doctor(cfg: GateConfig, source: string): Promise<Check[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'l402-doctor-'));
  try {
    return await checkAll(cfg, source, scratch);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function checkAll(cfg: GateConfig, source: string, scratch: string): Promise<Check[]> {
  const checks: Check[] = [{ ok: true, what: 'config', detail: `${source}: valid, ${cfg.routes.length} route(s)` }];
  const log = createLogger('silent');
  const devKeyPath = resolve(cfg.dataDir, 'root.key');
  if (cfg.rootKey === undefined && cfg.lightning.type === 'dev' && !existsSync(devKeyPath)) {
    checks.push({ ok: true, what: 'root key', detail: `no root_key: l402d start generates a development key at ${devKeyPath} (not created by doctor)` });
  } else try {
    const keys = loadRootKeys(cfg, log);
    const unseen = cfg.ngxL402RootKey ? ngxL402ClaimsUnseen(cfg.store) : undefined;
    const ngx = cfg.ngxL402RootKey ? `; ngx_l402's credentials honoured too (remove ngx_l402_root_key once they have expired)${unseen ? `; warning: ${unseen}` : ''}` : '';
    checks.push({ ok: true, what: 'root key', detail: `${keys.length} key(s) accepted${cfg.rootKey === undefined ? ' (generated development key)' : ''}${ngx}` });
  } catch (e) {
    checks.push({ ok: false, what: 'root key', detail: (e as Error).message });
  }
  const dataDirExists = existsSync(cfg.dataDir);
  try {
    if (dataDirExists) {
      accessSync(cfg.dataDir, constants.W_OK);
      checks.push({ ok: true, what: 'data dir', detail: `${cfg.dataDir} is writable` });
    } else {
      const parent = existingAncestor(cfg.dataDir);
      accessSync(parent, constants.W_OK);
      checks.push({ ok: true, what: 'data dir', detail: `${cfg.dataDir} does not exist yet: l402d start creates it (${parent} is writable; not created by doctor)` });
    }
  } catch (e) {
    checks.push({ ok: false, what: 'data dir', detail: `${cfg.dataDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; create it or fix its permissions` });
  }
  try {
    // A SQLite file that does not exist yet is tried in the scratch directory, not created where it belongs.
    const fresh = cfg.store.type === 'sqlite' && !existsSync(cfg.store.path);
    const store = openStore(fresh && cfg.store.type === 'sqlite' ? { ...cfg, store: { ...cfg.store, path: join(scratch, 'l402.db') } } : cfg);
    try {
      await withTimeout(store.ping(), 3000, `${store.kind} ping`);
      checks.push({ ok: true, what: 'store', detail: fresh ? `${describeStore(cfg)} does not exist yet: l402d start creates it (not created by doctor)` : `${describeStore(cfg)} reachable` });
      if (store.durability) checks.push(...(await redisDurabilityChecks(store, cfg.store.type === 'redis' && cfg.store.requirePersistence)));
    } finally {
      await store.close();
    }
  } catch (e) {
    const hint = cfg.store.type === 'redis' ? ': is redis-server running and the URL (host, port, password) right?' : '';
    checks.push({ ok: false, what: 'store', detail: `${cfg.store.type}: ${(e as Error).message}${hint} (${describeStore(cfg)})` });
  }
  try {
    // The development wallet's key and database are created on first use: not by doctor.
    const devFresh = cfg.lightning.type === 'dev' && !(existsSync(join(cfg.dataDir, 'dev-node.key')) && existsSync(join(cfg.dataDir, 'dev-wallet.db')));
    const backend = await openBackend(devFresh ? { ...cfg, dataDir: join(scratch, 'data') } : cfg);
    try {
      // As long as l402d's own start-up check allows (a first LNC pairing through a distant mailbox takes more
      // than one call's budget), or longer when timeouts.backend_ms says so.
      const bound = Math.max(cfg.timeouts.backendMs, BACKEND_START_CHECK_MS);
      const detail = backend.check ? await withTimeout(backend.check(AbortSignal.timeout(bound)), bound + 500, 'backend check') : backend.describe();
      if (backend.kind === 'dev') {
        // Loud on purpose: a gate on the development wallet sells nothing for real money.
        checks.push({ ok: false, what: 'lightning', detail: `dev: DEVELOPMENT WALLET, NOT REAL MONEY: its invoices are paid by anyone with \`l402d dev pay\`${cfg.lightning.type === 'dev' && cfg.lightning.pay_endpoint ? ' or the payment page (pay_endpoint: true)' : ''}; set lightning.type to a real backend for production` });
      } else checks.push({ ok: true, what: 'lightning', detail: `${backend.kind}: ${detail}` });
      const auto = cfg.routes.filter((r) => r.autoDetect);
      if (auto.length > 0 && !backend.lookupInvoice) {
        checks.push({ ok: false, what: 'auto-detect', detail: `${backend.kind} cannot look up invoices; remove auto_detect_payment from ${auto.map((r) => r.id).join(', ')}` });
      }
    } finally {
      await backend.close();
    }
  } catch (e) {
    checks.push({ ok: false, what: 'lightning', detail: `${cfg.lightning.type}: ${(e as Error).message}` });
  }
  if (cfg.cashu) checks.push(...(await checkCashu(cfg)));
  // Behind nginx, l402d reads headers as leniently as nginx does: it must only be reachable by nginx.
  if (!cfg.upstream && !isLocalListen(cfg.listen) && !cfg.nginxSecret) checks.push({ ok: false, what: 'listen', detail: nonLoopbackWarning(cfg.listen) });
  if (cfg.metrics && cfg.metrics.token === undefined && !isLocalListen(cfg.metrics.listen)) checks.push({ ok: false, what: 'metrics', detail: openConsoleWarning(cfg.metrics.listen) });
  checks.push({ ok: true, what: 'l402d', detail: (await running(cfg.listen)) ? `running at ${cfg.listen}` : `not running at ${cfg.listen} (start it with l402d start)` });
  return checks;
}

/**
 * The wallet (seed, fingerprint, database) as l402d start opens it, and every accepted mint (reachable,
 * keysets that verify, NUT-11 in P2PK mode). A wallet that does not exist yet is not created here: the
 * mints are checked from a throwaway one, so a mnemonic set later is not refused as "another seed".
 */
async function checkCashu(cfg: GateConfig): Promise<Check[]> {
  const c = cfg.cashu!;
  const out: Check[] = [];
  const dbPath = resolveDbPath(c, cfg.dataDir, cfg.configDir);
  const exists = existsSync(dbPath);
  const mnemonicFile = resolveMnemonicFile(c, dbPath, cfg.configDir);
  if (exists && !c.mnemonic && !existsSync(mnemonicFile)) {
    // Opening the wallet now would generate a new seed beside a database that belongs to another one.
    return [{ ok: false, what: 'cashu wallet', detail: `${dbPath} exists but its mnemonic file ${mnemonicFile} is missing: restore it (or set cashu.mnemonic)` }];
  }
  const scratch = exists ? undefined : mkdtempSync(join(tmpdir(), 'l402-doctor-'));
  const probe: GateConfig = scratch ? { ...cfg, cashu: { ...c, dbPath: join(scratch, 'wallet.db'), mnemonicFile: undefined } } : cfg;
  const store = new MemoryStore();
  try {
    const rail = await openCashuRail(probe, { store, log: createLogger('silent'), background: false });
    try {
      out.push({ ok: true, what: 'cashu wallet', detail: exists ? rail.describe() : `not created yet at ${dbPath} (l402d start creates it${c.mnemonic ? '' : '; set cashu.mnemonic first to restore an existing seed'})` });
      try {
        out.push({ ok: true, what: 'cashu mints', detail: await rail.check(AbortSignal.timeout(c.mintTimeoutMs * 4)) });
      } catch (e) {
        out.push({ ok: false, what: 'cashu mints', detail: `${(e as Error).message}; P2PK tokens verify from cached keys, standard mode answers 503 while a mint is unreachable` });
      }
    } finally {
      await rail.close();
    }
  } catch (e) {
    out.push({ ok: false, what: 'cashu wallet', detail: (e as Error).message });
  } finally {
    await store.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
  return out;
}

/** Spent marks must survive a Redis restart and memory pressure: persistence on, maxmemory-policy noeviction. */
async function redisDurabilityChecks(store: Pick<Store, 'durability'>, required: boolean): Promise<Check[]> {
  const what = 'redis durability';
  let report;
  try {
    if (!store.durability) throw new Error('this store cannot report it');
    report = await withTimeout(store.durability(), 3000, 'redis durability');
  } catch (e) {
    return [{ ok: !required, what, detail: `could not be checked: ${(e as Error).message}` }];
  }
  const out: Check[] = report.problems.map((p) => ({ ok: false, what, detail: p }));
  // Managed services often disable CONFIG: said, not failed, unless store.require_persistence asks for proof.
  out.push(...report.unchecked.map((u) => ({ ok: !required, what, detail: `${u}${required ? ' (store.require_persistence: l402d will refuse to start)' : ''}` })));
  if (out.length === 0) out.push({ ok: true, what, detail: 'persistence on and maxmemory-policy noeviction: spent credentials survive a restart' });
  return out;
}
