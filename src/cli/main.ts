#!/usr/bin/env node
// l402d: the command line. Every command has --help; errors print one clear line and exit non-zero.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ConfigError, describeStore, embeddedDefaultsNote, resolveConfig, resolveConfigAllowingUnsetVars } from './config-source.js';
import { nginxSnippets } from './nginx-conf.js';
import { runGate } from './workers.js';
import { StartRefusedError } from '../server/app.js';
import { quickstart } from './quickstart.js';
import { doctor } from './doctor.js';
import { openStore } from '../server/wiring/open-store.js';
import type { Store } from '../store/store.js';
import { parseConfig, type GateConfig } from '../config/config.js';
import { DEFAULT_CONFIG_YAML } from './defaults.js';
import { normalizePath, parseRouteMatch, routeMatches, RouteTable } from '../policy/routes.js';
import { hasRawBytes } from '../protocol/path-bytes.js';
import { parsePrice, priceKeys } from '../policy/pricing.js';
import { withTimeout } from '../util/timeout.js';
import { createLogger } from '../util/log.js';
import { cashuRedeem, cashuStatus, formatCashuStatus, formatMelt } from './cashu.js';

import { UsageError } from './usage-error.js';
import { registerTokenCommands } from './token.js';
import { DevWallet, DevWalletError } from '../rails/lightning/dev/dev-wallet.js';
import { ImportError, runImport } from './ngx-l402-import/command.js';

/** The installed package's version (dist/cli/main.js and src/cli/main.ts both sit two levels below package.json). */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const program = new Command('l402d')
  .description('Payment gate for nginx: charges Lightning (L402) or Cashu payments before a route is served')
  .version(VERSION, '-V, --version', 'print the l402d version')
  .showHelpAfterError()
  .exitOverride();

program
  .command('start')
  .description('run the gate (nginx auth_request endpoint, or a reverse proxy when `upstream` is set)')
  .option('-c, --config <file>', 'YAML config file (default: $L402_CONFIG, else the embedded development defaults)')
  .option('--require-backend', 'refuse to start (exit 2) when the Lightning backend does not answer its check (config: require_backend: true)')
  .action(async (opts: { config?: string; requireBackend?: boolean }) => {
    const { config, source } = resolveConfig(opts.config);
    const withFlags = (c: GateConfig): GateConfig => (opts.requireBackend ? { ...c, requireBackend: true } : c);
    await runGate(withFlags(config), { source, load: () => withFlags(resolveConfig(opts.config).config) });
  });

// The files nginx-conf writes, named in its --help from the snippets themselves (so the count stays true).
const SNIPPET_FILES = Object.keys(nginxSnippets(parseConfig(DEFAULT_CONFIG_YAML, { env: {} })));
const countWords = ['no', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

program
  .command('nginx-conf')
  .description('print the nginx include snippets for this config (or write them to a directory)')
  .option('-c, --config <file>', 'YAML config file (a ${VAR} the snippets do not use need not be set)')
  .option('-o, --out <dir>', `write the ${countWords[SNIPPET_FILES.length] ?? SNIPPET_FILES.length} files ${SNIPPET_FILES.join(', ')} into this directory`)
  .action((opts: { config?: string; out?: string }) => {
    const { config, source, placeholders } = resolveConfigAllowingUnsetVars(opts.config);
    const snippets = nginxSnippets(config);
    // A variable whose value the snippets carry (nginx_secret) must be set: its placeholder never reaches a file.
    const needed = [...placeholders].filter(([p]) => Object.values(snippets).some((t) => t.includes(p))).map(([, n]) => n);
    if (needed.length) throw new ConfigError(`${source}: environment variable ${needed.join(', ')} is not set, and the nginx snippets carry its value`);
    if (opts.out) {
      mkdirSync(opts.out, { recursive: true });
      for (const [name, text] of Object.entries(snippets)) writeFileSync(join(opts.out, name), text);
      process.stdout.write(`wrote ${Object.keys(snippets).join(', ')} to ${opts.out}\n`);
      return;
    }
    for (const [name, text] of Object.entries(snippets)) process.stdout.write(`# ---- ${name} ----\n${text}\n`);
  });

program
  .command('doctor')
  .description('check the config, root key, data dir, store and Lightning backend, and say what to fix')
  .option('-c, --config <file>', 'YAML config file')
  .action(async (opts: { config?: string }) => {
    const { config, source, explicit } = resolveConfig(opts.config);
    const checks = await doctor(config, explicit ? source : `${source}: ${embeddedDefaultsNote(config)}`);
    for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.what}: ${c.detail}\n`);
    if (checks.some((c) => !c.ok)) process.exitCode = 1;
  });

const price = program.command('price').description('dynamic prices in the store (msat), per route id or per exact path');
function priceKey(opts: { route?: string; path?: string }): string {
  if (!!opts.route === !!opts.path) throw new UsageError('give exactly one of --route ID or --path PATH');
  if (opts.path !== undefined) {
    // The gate looks prices up by the path nginx matches ($uri: decoded, normalised); a key for any other
    // spelling would never be read.
    const p = opts.path;
    if (!p.startsWith('/') || /[?#]/.test(p)) throw new UsageError(`--path ${JSON.stringify(p)}: give the request path alone, starting with / (no query, no #)`);
    // The command line holds text: its UTF-8 bytes are what a client's request carries.
    const n = normalizePath(Buffer.from(p, 'utf8').toString('latin1'));
    if (n === undefined || hasRawBytes(n)) throw new UsageError(`--path ${JSON.stringify(p)}: not a path nginx serves that the gate can price`);
    if (n !== p) throw new UsageError(`--path ${JSON.stringify(p)}: the gate prices the normalised path ${JSON.stringify(n)} (decoded, no "//", "." or ".."): give that`);
  }
  return opts.route ? priceKeys.route(opts.route) : priceKeys.path(opts.path!);
}
/** The running gate's config, or a refusal: without one, `price` would use ./data of the current directory. */
function priceConfig(file: string | undefined): GateConfig {
  const { config, explicit } = resolveConfig(file);
  if (!explicit) throw new UsageError(`price: give the running gate's config (--config FILE or $L402_CONFIG): ${embeddedDefaultsNote(config)} is probably not the store the gate reads`);
  if (config.store.type === 'memory') throw new UsageError('price: store.type is memory, which lives inside the running l402d: a price set from here would be lost; use sqlite or redis for dynamic prices');
  return config;
}
async function withStore<T>(config: GateConfig, fn: (store: Store, config: GateConfig) => Promise<T>): Promise<T> {
  process.stderr.write(`store: ${describeStore(config)}\n`);
  const store = openStore(config);
  try {
    await withTimeout(store.ping(), 3000, 'store');
    return await fn(store, config);
  } finally {
    await store.close();
  }
}
for (const [name, desc] of [['set', 'set a price'], ['get', 'show a price'], ['del', 'remove a price (back to the static one)']] as const) {
  const cmd = price
    .command(name)
    .description(desc)
    .option('-c, --config <file>', 'YAML config file')
    .option('--route <id>', 'route id (its `id`, or its `match` when no id is set)')
    .option('--path <path>', 'exact request path (wins over the route price)');
  if (name === 'set') cmd.argument('<msat>', 'price in millisatoshis');
  cmd.action(async (...args: unknown[]) => {
    const opts = args[name === 'set' ? 1 : 0] as { config?: string; route?: string; path?: string };
    const key = priceKey(opts);
    const config = priceConfig(opts.config);
    if (opts.route && !config.routes.some((r) => r.id === opts.route)) throw new UsageError(`no route with id ${opts.route} in the config (ids: ${config.routes.map((r) => r.id).join(', ')})`);
    // Every route whose match covers the path, pinned ones included: a path price applies to each of them, in
    // every nginx server (a location that pins one of them included).
    const covering = opts.route ? [] : config.routes.filter((r) => routeMatches(parseRouteMatch(r.match), opts.path!));
    const route = opts.route ? config.routes.find((r) => r.id === opts.route)! : (new RouteTable(config.routes).lookup(opts.path!) ?? covering[0]);
    const others = covering.filter((r) => r !== route);
    if (name === 'set' && others.length > 0) process.stderr.write(`warning: price:path also prices ${opts.path} in a location that pins another route covering it (${others.map((r) => r.id).join(', ')}): path prices are not per route\n`);
    if (name === 'set' && !route) throw new UsageError(`--path ${opts.path}: no route in the config covers this path, so nothing would charge this price (routes: ${config.routes.map((r) => r.match).join(', ')})`);
    const msat = name === 'set' ? parsePrice(String(args[0])) : undefined;
    if (name === 'set' && msat === undefined) throw new UsageError('msat must be a positive integer');
    await withStore(config, async (store) => {
      if (name === 'set') {
        await store.set(key, String(msat));
        process.stdout.write(`${key} = ${msat}\n`);
        if (!config.pricing.dynamic) process.stderr.write('warning: pricing.dynamic is false: the gate ignores prices in the store and charges amount_msat\n');
      } else if (name === 'get') {
        const value = await store.get(key);
        process.stdout.write(`${key} = ${value ?? '(not set)'}${value !== undefined && parsePrice(value) === undefined ? ' (ignored: not a positive integer)' : ''}\n`);
        if (!route) {
          process.stdout.write(`no route in the config covers ${opts.path}: it is not sold\n`);
          return;
        }
        const routeValue = opts.path ? await store.get(priceKeys.route(route.id)) : value;
        if (opts.path) process.stdout.write(`${priceKeys.route(route.id)} = ${routeValue ?? '(not set)'}\n`);
        process.stdout.write(`static: route ${route.id} amount_msat ${route.amountMsat}\n`);
        const byPath = opts.path ? parsePrice(value) : undefined;
        const byRoute = parsePrice(routeValue);
        const charged = !config.pricing.dynamic
          ? `${route.amountMsat} msat (static: pricing.dynamic is false)`
          : byPath !== undefined
            ? `${byPath} msat (this path's own price)`
            : byRoute !== undefined
              ? `${byRoute} msat (the route's dynamic price)`
              : `${route.amountMsat} msat (static)`;
        process.stdout.write(`charged: ${charged}${config.pricing.legacyKeys && opts.path ? ", unless ngx_l402's bare-path key (pricing.legacy_keys) is set" : ''}\n`);
      } else {
        await store.del(key);
        process.stdout.write(`${key} removed\n`);
      }
    });
  });
}

program
  .command('quickstart')
  .description('run a demo on embedded defaults: example upstream, l402d, and nginx in front if installed (npm start)')
  .option('-p, --port <port>', 'port the demo answers on (default: $PORT, else 8080)')
  .option('--upstream-port <port>', 'port of the example upstream (default: $UPSTREAM_PORT, else 8081)')
  .action(async (opts: { port?: string; upstreamPort?: string }) => {
    await quickstart(process.env, opts);
  });

program
  .command('import-ngx-l402')
  .description("move from ngx_l402: read its nginx config (includes followed) and environment, write l402.yaml, the nginx changes and a changed copy of the nginx files (exit 0: complete, 1: something listed needs you, 2: nothing could be read)")
  .argument('<nginx.conf|dir>', 'the main nginx config (or the directory holding nginx.conf); a file nginx includes inside http {} works too')
  .option('--env <file>', "ngx_l402's environment (NAME=value lines: docker --env-file, systemd EnvironmentFile); default: this process's environment")
  .option('-o, --out <dir>', 'where to write l402.yaml, nginx-changes.txt and nginx/ (default ./l402-import)')
  .option('--prefix <dir>', "nginx's conf directory, against which relative includes resolve (default: the directory of the file given; give /etc/nginx when importing a sites file)")
  .option('--listen <addr>', "l402d's address (host:port or unix:/path) for l402.yaml and nginx's upstream.conf", '127.0.0.1:8402')
  .option('--metrics-listen <addr>', "where l402d serves metrics when ngx_l402 had an l402_metrics location (that location proxies there)", '127.0.0.1:9402')
  .option('--force', 'overwrite files an earlier import wrote there (never the files read)')
  .action((target: string, opts: { env?: string; out?: string; force?: boolean; listen?: string; prefix?: string; metricsListen?: string }) => {
    const run = runImport(target, opts);
    process.stdout.write(run.report);
    process.exitCode = run.exitCode;
  });

const dev = program.command('dev').description('development wallet tools (regtest invoices, no real money)');
dev
  .command('pay')
  .description('pay an invoice issued by the development wallet; prints the 64-hex preimage')
  .argument('<bolt11>', 'the invoice from the 402 challenge')
  .option('-c, --config <file>', 'YAML config file (to find the data dir)')
  .action((bolt11: string, opts: { config?: string }) => {
    const { config, explicit } = resolveConfig(opts.config);
    if (config.lightning.type !== 'dev') throw new ConfigError(`lightning.type is ${config.lightning.type}: dev pay only works with the development wallet`);
    // Only the wallet that issued the invoice can pay it: never create an empty one here (in the current directory).
    if (!existsSync(join(config.dataDir, 'dev-wallet.db')) || !existsSync(join(config.dataDir, 'dev-node.key'))) {
      throw new UsageError(`no development wallet in ${config.dataDir}${explicit ? '' : ` (${embeddedDefaultsNote(config)})`}: run this where l402d runs, or give its --config`);
    }
    const wallet = DevWallet.open(config.dataDir);
    try {
      process.stdout.write(wallet.pay(bolt11).toString('hex') + '\n');
    } finally {
      wallet.close();
    }
  });

const cashu = program.command('cashu').description('the Cashu wallet: balances, melts, redemption to Lightning');
cashu
  .command('status')
  .description('balances by mint and payout address, swaps awaiting recovery, and the latest melts')
  .option('-c, --config <file>', 'YAML config file')
  .option('--melts <n>', 'how many melts to list', '10')
  .option('--json', 'print JSON')
  .action((opts: { config?: string; melts: string; json?: boolean }) => {
    const n = Number(opts.melts);
    if (!Number.isSafeInteger(n) || n < 0 || n > 10_000) throw new UsageError('--melts must be a whole number from 0 to 10000');
    const { config } = resolveConfig(opts.config);
    const status = cashuStatus(config, n);
    if (!status) {
      const msg = 'no Cashu wallet yet: l402d start creates it on first start';
      process.stdout.write(opts.json ? JSON.stringify({ wallet: null, message: msg }) + '\n' : msg + '\n');
      return;
    }
    process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : formatCashuStatus(status));
  });
cashu
  .command('redeem')
  .description('melt received ecash to Lightning now (one redemption cycle; safe while l402d runs)')
  .option('-c, --config <file>', 'YAML config file')
  .action(async (opts: { config?: string }) => {
    const { config } = resolveConfig(opts.config);
    const melts = await cashuRedeem(config, createLogger('warn', process.stderr));
    if (melts.length === 0) {
      process.stdout.write('no melt: every balance is below redeem.min_balance_sat after the fee reserve, or another l402d process is redeeming right now\n');
      return;
    }
    for (const m of melts) process.stdout.write(formatMelt(m) + '\n');
    if (melts.some((m) => m.state === 'failed')) process.exitCode = 1;
  });

registerTokenCommands(program);

async function main(): Promise<void> {
  // `l402d nginx-conf | head`: a reader that stops early is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    process.stderr.write(`l402d: stdout: ${e.message}\n`);
    process.exit(1);
  });
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    if (e instanceof StartRefusedError) {
      process.stderr.write(`l402d: ${e.message}\n`);
      process.exit(2);
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`l402d: config error:\n${e.message}\n`);
      process.exit(2);
    }
    if (e instanceof UsageError || e instanceof ImportError) {
      process.stderr.write(`l402d: ${e.message}\n`);
      process.exit(2);
    }
    if (e instanceof DevWalletError) {
      process.stderr.write(`l402d: cannot pay: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`l402d: ${(e as Error).message}\n`);
    process.exit(1);
  }
}

await main();
