// l402d token list | show | revoke, and l402d stats: the sales and revocations in the running gate's store.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { describeStore, embeddedDefaultsNote, resolveConfig } from './config-source.js';
import { UsageError } from './usage-error.js';
import type { GateConfig } from '../config/config.js';
import { openStore } from '../server/wiring/open-store.js';
import type { Store } from '../store/store.js';
import { saleCredential, type Ledger, type Revocation, type Sale } from '../store/ledger.js';
import { withTimeout } from '../util/timeout.js';
import { parseAuthorization } from '../protocol/l402-header.js';
import { caveatPredicates, decodeMacaroon, MacaroonFormatError, verifySignature } from '../protocol/macaroon.js';
import { decodeIdentifier, mintedCaveatCount } from '../protocol/identifier.js';
import { signedByTokenKey } from '../protocol/root-key.js';
import { decodeMacaroonV1, looksLikeV1 } from '../protocol/ngx-l402.js';
import { balanceLeft, consoleData, type ConsoleData } from '../server/console-data.js';
import { createLogger } from '../util/log.js';
import { loadRootKeys } from '../server/app.js';

/** Revocations are kept this long past the credential's minted expiry (the claim grace of decide.ts). */
const REVOCATION_GRACE_SECS = 300;

/** `token revoke` revoked what it could, but a form of the payment may still pass (see the revoke command). */
export const EXIT_PARTLY_REVOKED = 3;

/**
 * Whether an MPP credential (which names a payment by its hash alone) can open the route `routeId` (unknown:
 * any route of the config; a route no longer configured: assumed so). MPP's charge intent is offered on
 * per-request routes with `mpp` among their schemes; MPP sessions (balance routes) are revoked by session id.
 */
function mppMayCarry(config: GateConfig, routeId: string | undefined): boolean {
  const routes = routeId === undefined ? config.routes : config.routes.filter((r) => r.id === routeId);
  if (routeId !== undefined && routes.length === 0) return true;
  return routes.some((r) => r.schemes.includes('mpp') && r.access !== 'balance');
}

/** The running gate's config, or a refusal: without one, these commands would read ./data of the current directory. */
export function gateConfig(cmd: string, file: string | undefined): GateConfig {
  const { config, explicit } = resolveConfig(file);
  if (!explicit) throw new UsageError(`${cmd}: give the running gate's config (--config FILE or $L402_CONFIG): ${embeddedDefaultsNote(config)} is probably not the store the gate reads`);
  if (config.store.type === 'memory') throw new UsageError(`${cmd}: store.type is memory, which lives inside the running l402d: nothing from here reaches it; use sqlite or redis`);
  return config;
}

async function withLedger<T>(config: GateConfig, fn: (ledger: Ledger, store: Store) => Promise<T>): Promise<T> {
  process.stderr.write(`store: ${describeStore(config)}\n`);
  const store = openStore(config);
  try {
    await withTimeout(store.ping(), 3000, 'store');
    return await fn(store.ledger(), store);
  } finally {
    await store.close();
  }
}

/** What a command-line argument names: a credential by token id or payment hash (which one, when known). */
export interface Target {
  /** The value looked up in the ledger and stored as revoked (lowercase hex, or ngx_l402's payment hash). */
  value: string;
  tokenId?: string;
  paymentHash?: string;
  /** Unix seconds: the expiry minted into the macaroon, when the argument was one. */
  validUntil?: number;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

/**
 * A token id or payment hash (64 hex), `ngx_l402:<payment hash>`, or the macaroon itself (base64, optionally
 * as `L402 <macaroon>:<preimage>`): a macaroon must be one this gate's root key signed. Never echoes the
 * argument back (it may be a whole credential).
 */
export function parseTarget(arg: string, config: GateConfig): Target {
  const a = arg.trim();
  if (HEX64.test(a)) return { value: a.toLowerCase() };
  const ngx = /^ngx_l402:([0-9a-fA-F]{64})$/.exec(a);
  if (ngx) return { value: ngx[1]!.toLowerCase(), paymentHash: ngx[1]!.toLowerCase() };
  if (/^cashu:/i.test(a)) {
    throw new UsageError('a Cashu payment pays for one request and its ecash is swapped when it is accepted: there is nothing left to revoke');
  }
  const parsed = parseAuthorization(/^(L402|LSAT)[ \t]/i.test(a) ? a : `L402 ${a}`);
  if (parsed.kind !== 'l402') throw new UsageError('give a token id or payment hash (64 hex characters), ngx_l402:<payment hash>, or the macaroon (base64, or the whole "L402 <macaroon>:<preimage>")');
  const raw = parsed.credential.macaroon;
  if (config.ngxL402RootKey && looksLikeV1(raw)) {
    let v1;
    try {
      v1 = decodeMacaroonV1(raw);
    } catch (e) {
      throw new UsageError(`the macaroon does not decode: ${(e as Error).message}`);
    }
    if (v1.identifier.length !== 32 || !verifySignature(v1, config.ngxL402RootKey)) throw new UsageError('the macaroon was not signed by ngx_l402_root_key');
    const hash = v1.identifier.toString('hex');
    return { value: hash, paymentHash: hash };
  }
  let mac;
  try {
    mac = decodeMacaroon(raw);
  } catch (e) {
    if (e instanceof MacaroonFormatError) throw new UsageError(`the macaroon does not decode: ${e.message}`);
    throw e;
  }
  const id = decodeIdentifier(mac.identifier);
  if (!id) throw new UsageError('the macaroon was not issued by l402d (its identifier is not an L402 version-0 identifier)');
  if (!signedByTokenKey(mac, id.tokenId, rootKeysOf(config))) throw new UsageError("the macaroon was not signed by this config's root_key (or previous_root_keys): another gate's credential?");
  const minted = caveatPredicates(mac).slice(0, mintedCaveatCount(id.tokenId));
  const expiries = minted.map((p) => new RegExp(`^${config.service.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_valid_until=\\s*(\\d{1,12})\\s*$`).exec(p)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  const tokenId = id.tokenId.toString('hex');
  return { value: tokenId, tokenId, paymentHash: id.paymentHash.toString('hex'), validUntil: expiries.length ? Math.min(...expiries) : undefined };
}

/** The config's master keys; the development key only when it exists (never created from here). */
function rootKeysOf(config: GateConfig): Buffer[] {
  if (config.rootKey === undefined && config.lightning.type === 'dev') {
    const path = resolve(config.dataDir, 'root.key');
    if (!existsSync(path)) throw new UsageError(`no root_key in the config and no development key at ${path}: cannot check the macaroon (give its token id instead)`);
  }
  return loadRootKeys(config, createLogger('error', process.stderr));
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function saleLines(s: Sale, revoked: Revocation | undefined): string {
  return [
    `id:            ${s.id}`,
    `rail:          ${s.rail}`,
    `route:         ${s.route}`,
    `amount_msat:   ${s.amountMsat}`,
    `first_used:    ${iso(s.at)}`,
    ...(s.paymentHash ? [`payment_hash:  ${s.paymentHash}`] : []),
    ...(s.access ? [`access:        ${s.access}`] : []),
    `valid_until:   ${s.validUntil !== undefined ? iso(s.validUntil * 1000) : s.rail === 'cashu' ? '(one request)' : '(no expiry)'}`,
    `revoked:       ${revoked ? `yes, at ${iso(revoked.at)}` : 'no'}`,
  ].join('\n');
}

async function revocationOf(ledger: Ledger, ...values: Array<string | undefined>): Promise<Revocation | undefined> {
  const { list } = await ledger.revocations();
  return list.find((r) => values.includes(r.value));
}

function option(cmd: Command): Command {
  return cmd.option('-c, --config <file>', "the running gate's YAML config file (its store is read)");
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('credentials sold (recent sales) and their revocation');

  option(token.command('list').description('the latest sales, newest first (a Lightning credential is one sale however often it is used)'))
    .option('-n, --limit <n>', 'how many', '20')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; limit: string; json?: boolean }) => {
      const n = Number(opts.limit);
      if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
      const config = gateConfig('token list', opts.config);
      await withLedger(config, async (ledger) => {
        const [sales, { list }] = await Promise.all([ledger.recentSales(n), ledger.revocations()]);
        const revoked = new Set(list.map((r) => r.value));
        const rows = sales.map((s) => ({ ...s, revoked: revoked.has(saleCredential(s)) || (s.paymentHash !== undefined && revoked.has(s.paymentHash)) }));
        if (opts.json) {
          process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
          return;
        }
        if (rows.length === 0) {
          process.stdout.write('no sales recorded yet\n');
          return;
        }
        process.stdout.write('first used            rail       route                amount_msat  access       revoked  id\n');
        for (const r of rows) {
          process.stdout.write(`${iso(r.at).padEnd(21)} ${r.rail.padEnd(10)} ${r.route.slice(0, 20).padEnd(20)} ${String(r.amountMsat).padStart(11)}  ${(r.access ?? '').padEnd(12)} ${(r.revoked ? 'yes' : 'no').padEnd(8)} ${r.id}\n`);
        }
      });
    });

  option(token.command('show').description('one sale and its revocation, by token id, payment hash or macaroon').argument('<credential>', 'token id, payment hash, ngx_l402:<hash>, or the macaroon'))
    .option('--json', 'print JSON')
    .action(async (arg: string, opts: { config?: string; json?: boolean }) => {
      const config = gateConfig('token show', opts.config);
      const t = parseTarget(arg, config);
      await withLedger(config, async (ledger) => {
        const sale = (await ledger.findSale(t.value)) ?? (t.paymentHash ? await ledger.findSale(t.paymentHash) : undefined);
        const revoked = await revocationOf(ledger, t.value, t.tokenId, t.paymentHash, sale && saleCredential(sale), sale?.paymentHash);
        if (opts.json) {
          process.stdout.write(JSON.stringify({ sale: sale ?? null, revoked: revoked ?? null }, null, 2) + '\n');
          return;
        }
        if (!sale) {
          process.stdout.write(`no sale recorded for it (never used, or older than the sales kept)\nrevoked:       ${revoked ? `yes, at ${iso(revoked.at)}` : 'no'}\n`);
          return;
        }
        process.stdout.write(saleLines(sale, revoked) + '\n');
      });
    });

  option(
    token
      .command('revoke')
      .description('refuse a credential from now on, in every l402d process sharing the store (within a second; nginx may reuse a cached answer for up to nginx_cache.max_secs)')
      .argument('<credential>', 'token id, payment hash, ngx_l402:<hash>, or the macaroon'),
  ).action(async (arg: string, opts: { config?: string }) => {
    const config = gateConfig('token revoke', opts.config);
    const t = parseTarget(arg, config);
    await withLedger(config, async (ledger) => {
      const sale = (await ledger.findSale(t.value)) ?? (t.paymentHash ? await ledger.findSale(t.paymentHash) : undefined);
      // (Ecash that topped up a prepaid balance belongs to that balance's credential, which can be revoked.)
      if (sale?.rail === 'cashu' && sale.access !== 'balance') throw new UsageError('a Cashu payment pays for one request and its ecash is swapped when it is accepted: there is nothing left to revoke');
      // One payment can be presented under several schemes: the macaroon and the browser cookie carry its token
      // id, MPP's credential for the same invoice only its payment hash. The gate refuses a credential whose token
      // id or payment hash is revoked, so the payment hash is what is revoked whenever it is known (the sale or the
      // macaroon says it): one entry refuses them all. Else the token id, else the value given. A prepaid
      // balance's sales (its top-ups) name its credential by token id: revoked by that (a top-up's payment hash is
      // not the credential's, and no other scheme presents a balance).
      const named = (sale && saleCredential(sale)) ?? t.tokenId ?? t.value;
      const hash = sale?.access === 'balance' ? undefined : (sale?.paymentHash ?? t.paymentHash);
      const value = hash ?? named;
      const validUntil = sale?.validUntil ?? t.validUntil;
      const fresh = await ledger.revoke({ value, at: Date.now(), until: validUntil === undefined ? undefined : validUntil + REVOCATION_GRACE_SECS });
      const what = sale ? `route ${sale.route}, first used ${iso(sale.at)}` : 'no sale recorded for it yet';
      const unknownHash = hash === undefined && sale?.access !== 'balance' && HEX64.test(named) && mppMayCarry(config, sale?.route);
      if (unknownHash) {
        // 64 hex with no payment hash known: a payment hash (then every form of the payment is refused) or a token
        // id (then MPP's credential for the same invoice, which carries only the payment hash, is not). A sale is
        // written a few ms after its first use, and later while the store fails (the gate retries it), so a
        // credential just used may have none yet. Never "revoked" while a form of the payment may still pass.
        process.stdout.write(`${fresh ? 'revoked in part' : 'already revoked in part'}: ${named} (${what}): the macaroon and the browser cookie with this token id or payment hash are refused\n`);
        process.stderr.write(
          `NOT revoked: if ${named} is a token id, an MPP credential for the same invoice (it carries only the payment hash) still opens ${sale ? `route ${sale.route}` : 'the routes that offer MPP'}: no sale records the payment hash yet (never used, or its sale not written yet). Revoke the macaroon or its payment hash, or run this again once \`l402d token show\` finds the sale; exit status ${EXIT_PARTLY_REVOKED}\n`,
        );
        process.exitCode = EXIT_PARTLY_REVOKED;
      } else {
        process.stdout.write(`${fresh ? 'revoked' : 'already revoked'}: ${named} (${what})\n`);
        if (hash !== undefined && hash !== named) process.stdout.write(`by its payment hash ${hash}: the macaroon, the browser cookie and an MPP credential for the same invoice are all refused\n`);
      }
      process.stdout.write(`every l402d process using this store refuses it within 1 s; nginx may still serve a cached answer for up to nginx_cache.max_secs (${config.nginxCacheMaxSecs} s)\n`);
    });
  });

  option(program.command('stats').description('earnings by route and rail, over time, the latest payments and revocations (from the store; the same data as the console)'))
    .option('--json', 'print JSON (the console\'s /console.json without backend health)')
    .option('-n, --payments <n>', 'how many latest payments', '10')
    .action(async (opts: { config?: string; json?: boolean; payments: string }) => {
      const n = Number(opts.payments);
      if (!Number.isSafeInteger(n) || n < 0 || n > 1000) throw new UsageError('--payments must be a whole number from 0 to 1000');
      const config = gateConfig('stats', opts.config);
      await withLedger(config, async (ledger, store) => {
        const d = await consoleData(ledger, { payments: n, balanceOf: balanceLeft(store) });
        process.stdout.write(opts.json ? JSON.stringify(d, null, 2) + '\n' : formatStats(d));
      });
    });
}

const num = (n: number) => Math.round(n).toLocaleString('en-US');

/** The terminal view of the console's data: totals, a sparkline per route for the last 24 hours, latest payments. */
export function formatStats(d: ConsoleData): string {
  const out: string[] = [];
  out.push(`earnings since ${d.totals.since.slice(0, 10)}: ${num(d.totals.msat)} msat in ${num(d.totals.sales)} sales`);
  out.push(`last 24 hours: ${num(d.last_24h.msat)} msat in ${num(d.last_24h.sales)} sales; last 30 days: ${num(d.last_30d.msat)} msat in ${num(d.last_30d.sales)} sales`);
  out.push('', 'by route:');
  for (const r of d.totals.by_route) out.push(`  ${r.route.padEnd(24)} ${num(r.msat).padStart(16)} msat  ${num(r.sales).padStart(8)} sales`);
  out.push('by rail:');
  for (const r of d.totals.by_rail) out.push(`  ${r.rail.padEnd(24)} ${num(r.msat).padStart(16)} msat  ${num(r.sales).padStart(8)} sales`);
  const bars = '▁▂▃▄▅▆▇█';
  const spark = (v: number[]) => {
    const max = Math.max(...v, 0);
    return v.map((x) => (x <= 0 ? ' ' : bars[Math.min(7, Math.floor((x / max) * 7.999))])).join('');
  };
  out.push('', 'last 24 hours by route (one character per hour, oldest first):');
  for (const [route, v] of Object.entries(d.last_24h.by_route.by)) out.push(`  ${route.padEnd(24)} |${spark(v)}|`);
  out.push('', 'latest payments:');
  if (d.latest_payments.length === 0) out.push('  none');
  for (const p of d.latest_payments) out.push(`  ${p.at.slice(0, 19)}Z ${p.rail.padEnd(9)} ${p.route.padEnd(20)} ${num(p.amount_msat).padStart(12)} msat  ${p.credential}${p.revoked ? '  revoked' : ''}`);
  out.push('', `revocations in force: ${d.revocations.count}`, '', 'open prepaid balances:');
  if (d.balances.open.length === 0) out.push('  none');
  for (const b of d.balances.open) out.push(`  ${b.credential.padEnd(14)} ${b.route.padEnd(20)} ${num(b.balance_msat).padStart(12)} msat left of ${num(b.credited_msat)} credited${b.revoked ? '  revoked' : ''}`);
  out.push('');
  return out.join('\n');
}
