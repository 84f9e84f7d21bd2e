// `l402d import-ngx-l402`: reads an ngx_l402 deployment (nginx config with its includes, and the environment
// the module read) and writes what l402d needs: an l402.yaml that loads through the real config loader, a
// plan of the nginx edits at file:line, and a copy of the nginx files with those edits applied. The originals
// are never written. Everything not carried over is listed with where it was written.
import { randomBytes } from 'node:crypto';
import { lightningFromLegacyEnv } from '../../rails/lightning/registry.js';
import { cashuFromLegacyEnv } from '../../rails/cashu/config.js';
import { parseConfig, type GateConfig } from '../../config/config.js';
import { parseRouteMatch, RouteTable, normalizePath } from '../../policy/routes.js';
import { parseRateLimit } from '../../policy/rate-limit.js';
import { parseRootKey } from '../../protocol/root-key.js';
import { flatten, type Directive, type SourceFile } from './nginx-parse.js';
import type { EnvEntry } from './env-file.js';

export interface Finding {
  /** `problem`: not carried over, or needs the operator (the import is incomplete); `note`: carried over differently. */
  level: 'problem' | 'note';
  where?: string;
  text: string;
}

export interface Edit {
  file: SourceFile;
  start: number;
  end: number;
  text: string;
  line: number;
  what: string;
}

export interface ImportInput {
  tree: Directive[];
  /** Whether the file given holds the main context (`http {}`), or is a file nginx includes inside http/server. */
  env: Map<string, EnvEntry>;
  envSource: string;
  /** Where the l402d metrics endpoint listens when ngx_l402 had an `l402_metrics` location. */
  metricsListen?: string;
  /** l402d's own address (nginx's `upstream l402d`); default 127.0.0.1:8402. */
  listen?: string;
}

export interface ImportedRoute {
  match: string;
  amountMsat: number;
  macaroonTimeout: number;
  indefinite: boolean;
  autoDetect: boolean;
  dryRun: boolean;
  manifestHide: boolean;
  rateLimit?: string;
  lnurlAddr?: string;
  /** An explicit route id: given to a route a location pins (safe in nginx's `set`). */
  id?: string;
  /** Decided only where a location pins it (the same path in another server with other settings). */
  pinned?: boolean;
  /** Where the location is written. */
  where: string;
}

export interface ImportResult {
  yaml: string;
  findings: Finding[];
  edits: Edit[];
  routes: ImportedRoute[];
  /** Variables the yaml reads with ${NAME}: l402d must run with them set. */
  envRefs: string[];
  /** The generated yaml, loaded by the real loader with the env file's values (undefined if it did not load). */
  config?: GateConfig;
  /** Whether an `http {}` block was read (else upstream.conf is a manual step). */
  httpFound: boolean;
  complete: boolean;
}

/** ngx_l402's directives, and the contexts nginx allowed each in (anything else: nginx refused to start). */
const DIRECTIVES: Record<string, { contexts: Array<'http' | 'server' | 'location'>; args: number }> = {
  l402: { contexts: ['location'], args: 1 },
  l402_amount_msat_default: { contexts: ['location'], args: 1 },
  l402_macaroon_timeout: { contexts: ['location'], args: 1 },
  l402_lnurl_addr: { contexts: ['location'], args: 1 },
  l402_invoice_rate_limit: { contexts: ['location'], args: 1 },
  l402_auto_detect_payment: { contexts: ['http', 'server', 'location'], args: 1 },
  l402_dry_run: { contexts: ['location'], args: 1 },
  l402_indefinite_access: { contexts: ['location'], args: 1 },
  l402_metrics: { contexts: ['location'], args: 0 },
  l402_manifest: { contexts: ['location'], args: 0 },
  l402_manifest_hide: { contexts: ['location'], args: 0 },
};

/** Directives of later ngx_l402 releases, with what l402d has in their place. */
const LATER_DIRECTIVES: Record<string, string> = {
  l402_payment_html: 'to serve 402s without the HTML page in l402d, set payment_page: false on the route',
};

/** Variables whose values are secrets: the yaml refers to them as ${NAME}, never copies them. */
const SECRET_VARS = new Set(['ROOT_KEY', 'NWC_URI', 'ECLAIR_PASSWORD', 'LNC_PAIRING_PHRASE', 'CASHU_WALLET_MNEMONIC', 'CASHU_WALLET_SECRET', 'CASHU_P2PK_PRIVATE_KEY', 'REDIS_URL', 'SOCKS5_PROXY']);

const BACKEND_VARS: Record<string, string[]> = {
  lnurl: ['LNURL_ADDRESS'],
  lnd: ['LND_ADDRESS', 'MACAROON_FILE_PATH', 'CERT_FILE_PATH', 'SOCKS5_PROXY'],
  lnc: ['LNC_PAIRING_PHRASE', 'LNC_MAILBOX_SERVER'],
  cln: ['CLN_LIGHTNING_RPC_FILE_PATH'],
  bolt12: ['BOLT12_OFFER', 'CLN_LIGHTNING_RPC_FILE_PATH'],
  nwc: ['NWC_URI'],
  eclair: ['ECLAIR_ADDRESS', 'ECLAIR_PASSWORD'],
};
const ALL_BACKEND_VARS = new Set(Object.values(BACKEND_VARS).flat());
const CASHU_VARS = new Set([
  // CASHU_WALLET_SECRET: the seed source of ngx_l402 releases before CASHU_WALLET_MNEMONIC (its docs still show it).
  'CASHU_ECASH_SUPPORT', 'CASHU_DB_PATH', 'CASHU_WALLET_MNEMONIC', 'CASHU_WALLET_MNEMONIC_FILE', 'CASHU_WALLET_SECRET', 'CASHU_WHITELISTED_MINTS', 'CASHU_REDEEM_ON_LIGHTNING',
  'CASHU_REDEMPTION_INTERVAL_SECS', 'CASHU_MELT_MIN_BALANCE_SATS', 'CASHU_MELT_FEE_RESERVE_PERCENT', 'CASHU_MELT_MIN_FEE_RESERVE_SATS',
  'CASHU_MAX_PROOFS_PER_MELT', 'CASHU_P2PK_MODE', 'CASHU_P2PK_PRIVATE_KEY', 'CASHU_REQUIRE_DLEQ', 'L402_CASHU_TOKEN_TTL_SECONDS',
]);
const NOT_NEEDED: Record<string, string> = {
  REDIS_POOL_SIZE: 'l402d sizes its own Redis connections',
  L402_PREIMAGE_TTL_SECONDS: 'l402d keeps a single-use claim as long as the credential could verify (ngx_l402 let it pass again after this TTL)',
  L402_PERF_LOG: 'l402d logs timings at log.level debug',
};
const MANIFEST_VARS: Record<string, string> = { L402_SERVICE_NAME: 'name', L402_SERVICE_DESCRIPTION: 'description', L402_SERVICE_OPERATOR: 'operator', L402_SERVICE_CONTACT: 'contact' };
/** Names that look like ngx_l402's (a misspelt one ngx_l402 ignored too, but the operator meant something). */
const NGX_LOOKING = /^(L402_|LN_|LND_|LNC_|CLN_|NWC_|LNURL_|ECLAIR_|CASHU_|REDIS_|BOLT12_|ROOT_KEY|MACAROON_|CERT_FILE|SOCKS5_)/;

const TRUE_WORDS = new Set(['on', 'true', '1', 'yes']);
const FALSE_WORDS = new Set(['off', 'false', '0', 'no']);

interface Settings {
  enable: boolean;
  amount: number;
  timeout: number;
  lnurl?: string;
  rate?: string;
  autoDetect: boolean;
  dryRun?: boolean;
  indefinite: boolean;
  manifestHide: boolean;
}

const where = (d: Directive): string => `${d.file.path}:${d.line}`;
const show = (d: Directive): string => `${d.name}${d.args.map((a) => ' ' + (/^[^\s;{}"'#\\]+$/.test(a) ? a : JSON.stringify(a))).join('')}`;

/** A YAML scalar: every string double-quoted (JSON's escapes are YAML's), numbers and booleans bare. */
function y(v: string | number | boolean): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export function importNgxL402(input: ImportInput): ImportResult {
  const findings: Finding[] = [];
  const edits: Edit[] = [];
  const problem = (text: string, at?: Directive | string) => findings.push({ level: 'problem', where: typeof at === 'string' ? at : at && where(at), text });
  const note = (text: string, at?: Directive | string) => findings.push({ level: 'note', where: typeof at === 'string' ? at : at && where(at), text });
  const env = input.env;
  const envAt = (name: string) => (env.get(name)?.line ? `${input.envSource}:${env.get(name)!.line}` : input.envSource);
  const envVal = (name: string): string | undefined => env.get(name)?.value;

  const remove = (d: Directive, what: string) => edits.push({ file: d.file, start: d.start, end: d.end, text: '', line: d.line, what });
  const replace = (d: Directive, text: string, what: string) => edits.push({ file: d.file, start: d.start, end: d.end, text, line: d.line, what });
  const insertAfterOpen = (block: Directive, lines: string[], what: string) => {
    const indent = childIndent(block);
    edits.push({ file: block.file, start: block.blockOpen!, end: block.blockOpen!, text: lines.map((l) => `\n${indent}${l}`).join(''), line: block.line, what });
  };

  // ---- nginx: walk the contexts nginx has, merging ngx_l402's settings as its merge functions do ----
  interface Loc {
    dir: Directive;
    match?: string;
    settings: Settings;
    nested: boolean;
    server: Directive | undefined;
    metrics: boolean;
    manifest: boolean;
  }
  const locations: Loc[] = [];
  const servers = new Map<Directive | undefined, Loc[]>();
  let httpBlock: Directive | undefined;

  const parseBool = (d: Directive, strict: 'refused' | 'ignored' | 'off'): boolean | undefined => {
    const v = (d.args[0] ?? '').trim().toLowerCase();
    if (TRUE_WORDS.has(v)) return true;
    if (FALSE_WORDS.has(v)) return false;
    if (strict === 'refused') problem(`${show(d)}: invalid value: ngx_l402 refused to start with it (on or off)`, d);
    else if (strict === 'off') problem(`${show(d)}: invalid value: ngx_l402 only logged it and left the location UNPROTECTED; carried over as unprotected (write l402 on if it was meant)`, d);
    else problem(`${show(d)}: invalid value, which ngx_l402 ignored (treated as unset)`, d);
    return undefined;
  };

  /** Reads the l402_* directives of one level into `s` (a copy of the inherited settings). */
  const seen = new Set<Directive>();
  /** Whether an `l402_lnurl_addr ""` took LNURL_ADDRESS (whatever the backend). */
  let lnurlFallbackUsed = false;
  const readLevel = (items: Directive[], ctx: 'main' | 'http' | 'server' | 'location', s: Settings, own: { metrics: boolean; manifest: boolean; declared: Partial<Record<string, boolean>> }) => {
    // Within one level the last valid value wins (ngx_l402's set handlers overwrite); then the merge with
    // the enclosing level: OR for l402, auto-detect and indefinite access, a 0 timeout inherits.
    const inherited = { ...s };
    const lv: { enable?: boolean; timeout?: number; auto?: boolean; indefinite?: boolean } = {};
    const merge = () => {
      s.enable = inherited.enable || lv.enable === true;
      s.timeout = lv.timeout !== undefined && lv.timeout > 0 ? lv.timeout : inherited.timeout;
      s.autoDetect = inherited.autoDetect || lv.auto === true;
      s.indefinite = inherited.indefinite || lv.indefinite === true;
    };
    for (const d of items) {
      if (!d.name.startsWith('l402')) continue;
      seen.add(d);
      const spec = DIRECTIVES[d.name];
      if (!spec) {
        const hint = LATER_DIRECTIVES[d.name];
        problem(`${show(d)}: not a directive of ngx_l402 1.2.7, the release this import reads (a misspelling, which nginx refused, or a later release's): not carried over, removed${hint ? `; ${hint}` : ''}`, d);
        remove(d, `remove \`${show(d)};\` (unknown directive)`);
        continue;
      }
      remove(d, `remove \`${show(d)};\``);
      if (ctx === 'main' || !spec.contexts.includes(ctx as 'http')) {
        problem(`${d.name}: not allowed in the ${ctx === 'main' ? 'main' : ctx} context (nginx refused to start with it); ignored`, d);
        continue;
      }
      if (d.args.length !== spec.args) {
        problem(`${d.name}: takes ${spec.args === 0 ? 'no arguments' : 'one argument'} (nginx refused to start with it); ignored`, d);
        continue;
      }
      if (d.block) {
        problem(`${d.name}: has a block (nginx refused to start with it); ignored`, d);
        continue;
      }
      own.declared[d.name] = true;
      const arg = d.args[0] ?? '';
      switch (d.name) {
        case 'l402': {
          const b = parseBool(d, inherited.enable ? 'ignored' : 'off');
          if (b !== undefined) lv.enable = b;
          // ngx_l402 merges with OR: a nested `l402 off` cannot switch off a parent's `on`.
          if (b === false && inherited.enable) note('l402 off inside a location that inherits l402 on: ngx_l402 kept it ON (its merge is an OR), and so does this import', d);
          break;
        }
        case 'l402_amount_msat_default': {
          const t = arg.trim();
          if (!/^[+-]?\d+$/.test(t) || BigInt(t) <= 0n) {
            problem(`${show(d)}: not a positive integer: ngx_l402 ignored it (and answered 500 if no price was inherited)`, d);
            break;
          }
          if (BigInt(t) > 2_100_000_000_000_000n) {
            problem(`${show(d)}: more msat than bitcoin has; ignored`, d);
            break;
          }
          s.amount = Number(t);
          break;
        }
        case 'l402_macaroon_timeout': {
          const t = arg.trim();
          if (!/^[+]?\d+$/.test(t)) {
            problem(`${show(d)}: not a whole number of seconds: ngx_l402 ignored it`, d);
            break;
          }
          const n = Number(t);
          if (n > 10 * 365 * 86400) problem(`${show(d)}: longer than l402d allows (10 years); not carried over`, d);
          // A 0 inherits the parent's timeout (ngx_l402's merge).
          else lv.timeout = n;
          break;
        }
        case 'l402_lnurl_addr': {
          const t = arg.trim();
          if (t === '') {
            const fallback = envVal('LNURL_ADDRESS')?.trim();
            if (!fallback) problem(`${d.name} "": means LNURL_ADDRESS, which the environment does not set (ngx_l402 refused to start)`, d);
            else {
              s.lnurl = fallback;
              lnurlFallbackUsed = true;
            }
          } else s.lnurl = t;
          break;
        }
        case 'l402_invoice_rate_limit':
          try {
            const r = parseRateLimit(arg);
            s.rate = `${r.max}r/${r.windowSecs === 1 ? 's' : r.windowSecs === 60 ? 'm' : 'h'}`;
          } catch (e) {
            problem(`${show(d)}: ${(e as Error).message} (ngx_l402 refused to start with it); not carried over`, d);
          }
          break;
        case 'l402_auto_detect_payment': {
          const b = parseBool(d, 'ignored');
          if (b !== undefined) lv.auto = b;
          break;
        }
        case 'l402_dry_run': {
          const v = arg.trim().toLowerCase();
          if (v === 'on') s.dryRun = true;
          else if (v === 'off') s.dryRun = false;
          else problem(`${show(d)}: on or off only (ngx_l402 refused to start with it); ignored`, d);
          break;
        }
        case 'l402_indefinite_access': {
          const b = parseBool(d, 'refused');
          if (b !== undefined) lv.indefinite = b;
          break;
        }
        case 'l402_manifest_hide':
          s.manifestHide = true;
          break;
        case 'l402_metrics':
          own.metrics = true;
          break;
        case 'l402_manifest':
          own.manifest = true;
          break;
      }
    }
    merge();
  };

  const defaults = (): Settings => ({ enable: false, amount: 0, timeout: 0, autoDetect: false, indefinite: false, manifestHide: false });

  const walkLocation = (d: Directive, inherited: Settings, server: Directive | undefined, nested: boolean) => {
    const s: Settings = { ...inherited };
    const own = { metrics: false, manifest: false, declared: {} };
    const items = flatten(d.block);
    readLevel(items, 'location', s, own);
    const a = d.args;
    const match = a.length === 2 ? `${a[0]} ${a[1]}` : a.length === 1 ? a[0] : undefined;
    const loc: Loc = { dir: d, match, settings: s, nested, server, metrics: own.metrics, manifest: own.manifest };
    locations.push(loc);
    servers.set(server, [...(servers.get(server) ?? []), loc]);
    for (const c of items) {
      if (c.name === 'location' && c.block) walkLocation(c, s, server, true);
      else if ((c.name === 'if' || c.name === 'limit_except') && c.block) {
        for (const x of flatten(c.block)) if (x.name.startsWith('l402')) {
          seen.add(x);
          problem(`${x.name}: not allowed inside "${c.name}" (nginx refused to start with it); ignored`, x);
          remove(x, `remove \`${show(x)};\``);
        }
      }
    }
  };

  const walkServer = (d: Directive, inherited: Settings) => {
    const s = { ...inherited };
    const items = flatten(d.block);
    readLevel(items, 'server', s, { metrics: false, manifest: false, declared: {} });
    servers.set(d, servers.get(d) ?? []);
    for (const c of items) if (c.name === 'location' && c.block) walkLocation(c, s, d, false);
  };

  const walkHttp = (items: Directive[], inherited: Settings) => {
    const s = { ...inherited };
    readLevel(items, 'http', s, { metrics: false, manifest: false, declared: {} });
    for (const c of items) {
      if (c.name === 'server' && c.block) walkServer(c, s);
      // A file nginx includes at the server level (a bare location list).
      else if (c.name === 'location' && c.block) walkLocation(c, s, undefined, false);
    }
  };

  const top = flatten(input.tree);
  const http = top.filter((d) => d.name === 'http' && d.block);
  if (http.length > 0) {
    readLevel(top.filter((d) => d.name.startsWith('l402')), 'main', defaults(), { metrics: false, manifest: false, declared: {} });
    for (const d of top) {
      if (d.name === 'load_module' && /l402/i.test(d.args[0] ?? '')) remove(d, `remove \`${show(d)};\` (ngx_l402's module)`);
      if (d.name === 'env' && d.args.length === 1) {
        const name = d.args[0]!.split('=')[0]!;
        if (d.args[0]!.includes('=') && (NGX_LOOKING.test(name) || SECRET_VARS.has(name))) {
          problem(`env ${name}=…: a value set in nginx.conf is not read by this import; put it in the --env file`, d);
        }
      }
    }
    httpBlock = http[0];
    if (http.length > 1) problem('more than one http block (nginx refused to start)', http[1]);
    walkHttp(flatten(http[0]!.block), defaults());
  } else {
    // A file nginx includes inside http {} (servers) or server {} (locations).
    walkHttp(top, defaults());
  }

  // Any l402* directive in a place the walk above does not read (an `if` in a server, a `map`, an `upstream`…).
  const sweep = (items: Directive[] | undefined, parent: string) => {
    for (const d of items ?? []) {
      if (d.name.startsWith('l402') && !seen.has(d)) {
        seen.add(d);
        problem(`${show(d)}: inside "${parent}", where ngx_l402 does not read it (nginx refused to start with it); removed`, d);
        remove(d, `remove \`${show(d)};\``);
      }
      if (d.block) sweep(d.block, d.name === 'include' ? parent : d.name);
    }
  };
  sweep(input.tree, 'main');

  const typeUpper = (input.env.get('LN_CLIENT_TYPE')?.value.trim() || 'LNURL').toUpperCase() === 'LND' && input.env.get('LNC_PAIRING_PHRASE')?.value.trim() ? 'LNC' : (input.env.get('LN_CLIENT_TYPE')?.value.trim() || 'LNURL').toUpperCase();

  // ---- routes ----
  const routes: ImportedRoute[] = [];
  const routeByMatch = new Map<string, { r: ImportedRoute; loc: Loc }>();
  const protectedLocs: Loc[] = [];
  /**
   * Locations that pin their route (`set $l402_route_pin <id>;`): l402d has one route table for every server,
   * so where another server's route would take a location's paths, the location names its own (as ngx_l402
   * priced each location by its own settings).
   */
  const pins = new Map<Loc, ImportedRoute>();
  /** An id for a route a location pins: readable, unique, and safe unquoted in nginx and in l402.yaml. */
  const pinId = (r: ImportedRoute): string => {
    if (r.id !== undefined) return r.id;
    const mod = /^(=|\^~|~\*|~)?\s*/.exec(r.match.trim())![1];
    const base = (({ '=': 'exact:', '^~': 'prefix:', '~': 're:', '~*': 're-i:' } as Record<string, string>)[mod ?? ''] ?? '') + r.match.trim().replace(/^(=|\^~|~\*|~)?\s*/, '');
    const slug = base.replace(/[^A-Za-z0-9_.\/:-]+/g, '_').slice(0, 100).replace(/^plan:/, 'plan_');
    const taken = new Set(routes.filter((x) => x !== r).map((x) => x.id ?? x.match));
    let id = slug;
    for (let n = 2; taken.has(id); n++) id = `${slug}-${n}`;
    r.id = id;
    return id;
  };
  let manifestSeen = false;
  let metricsSeen = false;
  const metricsListen = input.metricsListen ?? '127.0.0.1:9402';

  // A location ngx_l402 protected that gets no route is closed (`return 403`), never left open: without a
  // route of its own, l402d could price it by another route that happens to cover its paths.
  const closed: Loc[] = [];
  /** Servers whose manifest location goes: server.conf must answer there instead. */
  const manifestServers = new Set<Directive | undefined>();
  for (const loc of locations) {
    const d = loc.dir;
    if (loc.manifest) {
      manifestSeen = true;
      if (loc.match === '= /.well-known/l402-services' || loc.match === '=/.well-known/l402-services') {
        // server.conf serves this exact location: a second one would stop nginx.
        const others = flatten(d.block).filter((x) => !x.name.startsWith('l402'));
        manifestServers.add(loc.server);
        if (others.length) note(`the manifest location goes whole; its other directives (${others.map((x) => x.name).join(', ')}) go with it: l402/server.conf's location answers instead`, d);
        edits.push({ file: d.file, start: d.start, end: d.end, text: '', line: d.line, what: `remove the whole \`location ${d.args.join(' ')}\` block (lines ${d.line}-${d.endLine}): l402/server.conf serves /.well-known/l402-services` });
      } else {
        const md = flatten(d.block).find((x) => x.name === 'l402_manifest')!;
        replace(md, 'return 308 /.well-known/l402-services;', `replace \`l402_manifest;\` with \`return 308 /.well-known/l402-services;\``);
        note(`the manifest moves to /.well-known/l402-services (l402/server.conf); ${loc.match} now redirects there`, d);
      }
    }
    if (loc.metrics) {
      metricsSeen = true;
      const md = flatten(d.block).find((x) => x.name === 'l402_metrics')!;
      // rewrite + a proxy_pass without a URI: valid in every kind of location (a regex one refuses a URI part).
      // Host is the listener's own address (nginx's default), also under a server-level `proxy_set_header Host
      // $host`: without a token, the listener answers only a local Host (metrics-server.ts).
      const target = metricsListen.startsWith('unix:') ? `http://${metricsListen}:` : `http://${metricsListen}`;
      const text = `rewrite ^ /metrics break; proxy_set_header Host ${metricsListen.startsWith('unix:') ? 'localhost' : '$proxy_host'}; proxy_pass ${target};`;
      replace(md, text, `replace \`l402_metrics;\` with \`${text}\``);
      note(`metrics: l402d serves them on metrics.listen ${metricsListen}; this location now proxies there (metric names differ: see docs/operations.md); keep its allow/deny rules`, md);
    }
    if (!loc.settings.enable) continue;
    const s = loc.settings;
    if (!loc.match || loc.match.startsWith('@')) {
      problem(`named location ${loc.match ?? ''}: l402d prices by request path, which a named location has none of; not carried over: closed (return 403) until you give it a path`, d);
      closed.push(loc);
      continue;
    }
    try {
      parseRouteMatch(loc.match);
    } catch (e) {
      problem(`location ${loc.match}: l402d cannot match it the way nginx does: ${(e as Error).message}; not carried over: closed (return 403) until you rewrite it`, d);
      closed.push(loc);
      continue;
    }
    if (/\$\{/.test(loc.match) || (s.lnurl !== undefined && /\$\{/.test(s.lnurl))) {
      problem(`location ${loc.match}: holds "\${", which l402.yaml would read as an environment variable; not carried over: closed (return 403)`, d);
      closed.push(loc);
      continue;
    }
    if (loc.nested && parseRouteMatch(loc.match).kind === 'regex') {
      // l402d's routes are flat: this regex would also price paths of other locations, outside its parent.
      problem(`location ${loc.match} is a regex nested in another location: l402d's routes are flat, so it would also match (and price) paths outside its parent; not carried over: closed (return 403) until you write it as a top-level regex anchored to the parent's path`, d);
      closed.push(loc);
      continue;
    }
    if (!(s.amount > 0)) {
      problem(`location ${loc.match}: l402 on without a valid l402_amount_msat_default: ngx_l402 answered 500 to every request here; closed (return 403) until you give it a price`, d);
      closed.push(loc);
      continue;
    }
    let autoDetect = s.autoDetect;
    if (autoDetect && s.lnurl) {
      problem(`location ${loc.match}: l402_auto_detect_payment with l402_lnurl_addr: the invoices come from a Lightning address, which l402d cannot look up; auto-detect not carried over (ngx_l402 never found those payments either)`, d);
      autoDetect = false;
    }
    if (autoDetect && ['LNURL', 'NWC', 'LNC'].includes(typeUpper) && !s.lnurl) note(`location ${loc.match}: auto-detect with ${typeUpper}: ngx_l402 answered 500 to such lookups; l402d refuses to start if the backend cannot look invoices up`, d);
    if (loc.nested) note(`location ${loc.match} is nested: l402d matches routes as nginx matches top-level locations; check that the same requests reach it`, d);
    if (s.rate) note(`location ${loc.match}: invoice_rate_limit ${s.rate} counts per client address and route (ngx_l402: per address and exact URI, from X-Real-IP/X-Forwarded-For)`, d);
    if (s.timeout > 0 && !s.indefinite) note(`location ${loc.match}: single-use credentials with ExpiresAt (l402_macaroon_timeout ${s.timeout}): access per-request, macaroon_timeout ${s.timeout}`, d);
    const r: ImportedRoute = {
      match: loc.match,
      amountMsat: s.amount,
      macaroonTimeout: s.timeout,
      indefinite: s.indefinite,
      autoDetect,
      dryRun: s.dryRun === true,
      manifestHide: s.manifestHide,
      rateLimit: s.rate,
      lnurlAddr: s.lnurl,
      where: where(d),
    };
    const key = parseKey(loc.match);
    const prev = routeByMatch.get(key);
    if (prev) {
      const same = JSON.stringify({ ...prev.r, where: '' }) === JSON.stringify({ ...r, where: '' });
      if (same) note(`location ${loc.match} is also at ${prev.r.where} with the same settings: one route (l402d does not tell servers apart)`, d);
      else {
        // l402d would sell this one on the first one's terms (perhaps cheaper): a route of its own, which only
        // this location (pinned) decides with.
        routes.push(r);
        const id = pinId(r);
        r.pinned = true;
        pins.set(loc, r);
        note(`location ${loc.match} is also at ${prev.r.where} with other settings: carried over as its own route ${id} (pinned: true), which this location pins (\`set $l402_route_pin ${id};\`): l402d has one route table for all servers`, d);
      }
    } else {
      routeByMatch.set(key, { r, loc });
      routes.push(r);
    }
    protectedLocs.push(loc);
  }

  // ---- l402d's view versus nginx's ----
  // l402d has one flat route table for every server; nginx matches within one server, among protected and
  // free locations alike. For each server, every location path of every server (and one path below it) is
  // looked up both ways: a path nginx serves from a protected location must get that location's route, so a
  // location where l402d would find another route pins its own.
  const routeOf = (l: Loc): ImportedRoute | undefined => pins.get(l) ?? routeByMatch.get(parseKey(l.match!))?.r;
  const routeTable = new RouteTable(routes);
  const topLevel = (l: Loc) => !!l.match && !l.match.startsWith('@') && !l.nested && safeMatch(l.match);
  const probes = new Set<string>();
  for (const l of locations.filter(topLevel)) {
    const m = parseRouteMatch(l.match!);
    if (m.kind === 'regex' || normalizePath(m.path) !== m.path) continue;
    probes.add(m.path);
    probes.add(m.path.endsWith('/') ? `${m.path}x` : `${m.path}/x`);
  }
  for (const [, locs] of servers) {
    const nginxTable = new RouteTable(locs.filter(topLevel).map((l) => ({ match: l.match!, loc: l })));
    for (const path of probes) {
      const served = nginxTable.lookup(path)?.loc;
      if (!served || !served.settings.enable || closed.includes(served) || !protectedLocs.includes(served) || pins.has(served)) continue;
      const own = routeOf(served);
      if (!own) continue;
      const priced = routeTable.lookup(path);
      if (priced !== own) {
        const id = pinId(own);
        pins.set(served, own);
        note(`${path}: nginx serves it from location ${served.match} here, but l402d would price it as ${priced ? `route ${priced.match} (${priced.where})` : 'no route'}: l402d has one route table for all servers and sees only the paid locations, so this location pins its route (\`set $l402_route_pin ${id};\`)`, served.dir);
      }
    }
  }

  // ---- nginx edits for protected locations, their servers and the http block ----
  const CLASHES: Record<string, string> = {
    satisfy: 'protect.conf sets `satisfy all` (under `satisfy any` an allow rule let requests past ngx_l402)',
    recursive_error_pages: 'protect.conf sets it',
    proxy_intercept_errors: 'protect.conf sets it off',
    grpc_intercept_errors: 'protect.conf sets it off',
  };
  const serversWithProtected = new Set<Directive>([...manifestServers].filter((x): x is Directive => x !== undefined));
  for (const loc of protectedLocs) {
    const d = loc.dir;
    const pin = pins.get(loc);
    const lines = [...(pin ? [`set $l402_route_pin ${pinId(pin)};`] : []), 'include l402/protect.conf;', ...(loc.settings.dryRun ? ['include l402/dry-run.conf;'] : [])];
    insertAfterOpen(d, lines, `add ${lines.map((l) => `\`${l}\``).join(' and ')} at the top of \`location ${d.args.join(' ')}\` (line ${d.line})`);
    for (const c of flatten(d.block)) {
      if (c.name === 'auth_request') problem(`location ${loc.match}: has its own auth_request, and nginx allows one per location; l402d's protect.conf needs it. Move your check elsewhere (kept as it is: nginx -t fails until then)`, c);
      else if (CLASHES[c.name]) {
        remove(c, `remove \`${show(c)};\` (${CLASHES[c.name]}; nginx refuses a second one)`);
        note(`${show(c)}: removed: ${CLASHES[c.name]}${c.file !== d.file ? ` (${c.file.path} may be included elsewhere too)` : ''}`, c);
      }
    }
    // protect.conf sets proxy_/grpc_set_header (and dry-run.conf add_header) in the location, which replaces
    // every such line the location inherited: say which ones stop applying.
    for (const name of ['proxy_set_header', 'grpc_set_header', ...(loc.settings.dryRun ? ['add_header'] : [])]) {
      if (flatten(d.block).some((x) => x.name === name)) continue;
      const outer = [...(loc.server ? flatten(loc.server.block) : []), ...(httpBlock ? flatten(httpBlock.block) : [])].filter((x) => x.name === name);
      if (outer.length) note(`location ${loc.match}: the ${name} lines it inherited (${outer.map(where).join(', ')}) no longer apply once protect.conf sets its own: repeat them in the location, after the include (nginx's inheritance rule, see docs/nginx.md)`, d);
    }
    if (loc.server) serversWithProtected.add(loc.server);
    else if (!findings.some((f) => f.text.startsWith('include l402/server.conf'))) note('include l402/server.conf; in the server {} block that includes this file (not among the files read)', d);
  }
  for (const loc of closed) {
    insertAfterOpen(loc.dir, ['return 403;  # l402d import-ngx-l402: not carried over, see nginx-changes.txt'], `add \`return 403;\` at the top of \`location ${loc.dir.args.join(' ')}\` (line ${loc.dir.line}): not carried over, closed`);
  }
  for (const s of serversWithProtected) insertAfterOpen(s, ['include l402/server.conf;'], `add \`include l402/server.conf;\` at the top of the \`server\` block (line ${s.line})`);
  const needsUpstream = protectedLocs.length > 0 || manifestSeen || metricsSeen;
  if (httpBlock && needsUpstream) insertAfterOpen(httpBlock, ['include l402/upstream.conf;'], `add \`include l402/upstream.conf;\` at the top of the \`http\` block (line ${httpBlock.line})`);

  // ---- environment ----
  const refs = new Set<string>();
  const ref = (name: string) => {
    refs.add(name);
    return `\${${name}}`;
  };
  const used = new Set<string>();
  const refEnv: Record<string, string | undefined> = {};
  // Secrets, values that hold "${" (the loader would read it as a variable) and URLs with a password in them.
  for (const [k, v] of env) refEnv[k] = SECRET_VARS.has(k) || v.value.includes('${') || (/:\/\/[^/\s]*@/.test(v.value) && k !== 'CASHU_WHITELISTED_MINTS') ? ref(k) : v.value;
  // ref() above marks every secret as referenced; keep only those the yaml really uses.
  refs.clear();

  const out: string[] = [];
  out.push('# Written by `l402d import-ngx-l402` from an ngx_l402 deployment; see nginx-changes.txt beside it.');
  out.push("# ${NAME} values are read from l402d's environment when it starts: give it the variables ngx_l402 had.");
  out.push(`listen: ${y(input.listen ?? '127.0.0.1:8402')}`);

  // Root keys: ngx_l402's credentials keep working (ngx_l402_root_key); l402d's own key.
  const rootKey = envVal('ROOT_KEY');
  used.add('ROOT_KEY');
  let rootRef = 'L402D_ROOT_KEY';
  if (rootKey === undefined || rootKey.trim() === '') {
    problem('ROOT_KEY is not set: ngx_l402 refused to start without it, so no credentials of its are outstanding. Set L402D_ROOT_KEY for l402d (openssl rand -hex 32)', input.envSource);
  } else if (rootKey.length < 32) {
    problem('ROOT_KEY is shorter than 32 characters (ngx_l402 refused to start with it); set L402D_ROOT_KEY for l402d (openssl rand -hex 32)', envAt('ROOT_KEY'));
  } else {
    try {
      parseRootKey(rootKey, 'ROOT_KEY');
      rootRef = 'ROOT_KEY';
    } catch (e) {
      problem(`${(e as Error).message.replace(/`openssl rand -hex 32`/, 'openssl rand -hex 32')}: l402d's own credentials need a stronger key: set L402D_ROOT_KEY. ngx_l402's credentials keep working with ROOT_KEY`, envAt('ROOT_KEY'));
    }
    out.push(`# ngx_l402's ROOT_KEY: the credentials it sold keep working (each bound to its path and method).`);
    out.push(`ngx_l402_root_key: ${y(ref('ROOT_KEY'))}`);
  }
  out.push(`root_key: ${y(ref(rootRef))}`);

  // Store.
  used.add('REDIS_URL');
  if (envVal('REDIS_URL')?.trim()) {
    out.push("# ngx_l402's Redis: single-use marks are shared (l402:preimage:*), so credentials spent there stay spent.");
    out.push(`store: { type: redis, url: ${y(ref('REDIS_URL'))} }`);
    out.push('pricing: { legacy_keys: true }   # also read the bare-URI price keys ngx_l402 read from Redis');
  } else {
    out.push('# ngx_l402 had no Redis (no replay protection at all); l402d keeps single-use marks in SQLite.');
    out.push('store: { type: sqlite }');
  }

  // Lightning backend.
  const typeRaw = envVal('LN_CLIENT_TYPE')?.trim() || 'LNURL';
  used.add('LN_CLIENT_TYPE');
  const typeKnown = ['LNURL', 'LND', 'NWC', 'CLN', 'BOLT12', 'ECLAIR', 'LNC'];
  let lightning: Record<string, unknown> | undefined;
  if (!typeKnown.includes(typeRaw.toUpperCase())) {
    problem(`LN_CLIENT_TYPE=${typeRaw}: not a backend ngx_l402 knows (it aborted at start); set lightning: yourself`, envAt('LN_CLIENT_TYPE'));
  } else {
    if (!env.has('LN_CLIENT_TYPE')) note('LN_CLIENT_TYPE not set: ngx_l402 used LNURL', input.envSource);
    if (typeRaw.toUpperCase() === 'LNC') note('LN_CLIENT_TYPE=LNC: ngx_l402 aborted with this value (it selects LNC as LND plus LNC_PAIRING_PHRASE); carried over as lnc', envAt('LN_CLIENT_TYPE'));
    lightning = lightningFromLegacyEnv({ ...refEnv, LN_CLIENT_TYPE: typeRaw });
    // eclair's mapper adds http:// to a bare host:port; a reference hides whether the value had a scheme.
    const ea = envVal('ECLAIR_ADDRESS')?.trim();
    if (lightning?.type === 'eclair' && ea && refEnv.ECLAIR_ADDRESS !== ea && /^[a-z][a-z0-9+.-]*:\/\//i.test(ea)) lightning.url = refEnv.ECLAIR_ADDRESS;
  }
  if (lightning) {
    const type = String(lightning.type);
    for (const v of BACKEND_VARS[type] ?? []) used.add(v);
    if (type === 'lnd') {
      // ngx_l402's defaults when unset, spelt out; relative paths were relative to nginx's working directory.
      lightning.address ??= 'localhost:10009';
      lightning.macaroon_path ??= 'admin.macaroon';
      lightning.tls_cert_path ??= 'tls.cert';
      for (const [key, name] of [['macaroon_path', 'MACAROON_FILE_PATH'], ['tls_cert_path', 'CERT_FILE_PATH']] as const) {
        const p = String(lightning[key]);
        if (!p.startsWith('/') && !p.startsWith('${')) problem(`${name}${env.has(name) ? `=${p}` : ` (unset: ${p})`}: relative; ngx_l402 read it from nginx's working directory, l402d from the yaml's directory: give the absolute path`, env.has(name) ? envAt(name) : input.envSource);
      }
    }
    if (type === 'lnurl' && !lightning.address) problem('LNURL_ADDRESS is not set: ngx_l402 aborted at start with the LNURL backend; set lightning.address', input.envSource);
    if (type === 'nwc' && !lightning.uri) problem('NWC_URI is not set: set lightning.uri', input.envSource);
    if (type === 'bolt12' && !lightning.offer) problem('BOLT12_OFFER is not set: set lightning.offer', input.envSource);
    if ((type === 'cln' || type === 'bolt12') && !lightning.rpc_path) problem("CLN_LIGHTNING_RPC_FILE_PATH is not set: ngx_l402's default was not a path; set lightning.rpc_path", input.envSource);
    for (const v of Object.values(lightning)) if (typeof v === 'string') for (const m of v.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) refs.add(m[1]!);
    out.push(`lightning: ${flow(lightning)}`);
  } else {
    out.push('lightning: { type: dev }   # REPLACE: the backend could not be read from the environment (see the problems)');
  }
  if (lnurlFallbackUsed) used.add('LNURL_ADDRESS');
  for (const name of ALL_BACKEND_VARS) {
    if (env.has(name) && !used.has(name)) note(`${name}: not used by the ${String(lightning?.type ?? '?')} backend (ngx_l402 ignored it too)`, envAt(name));
    used.add(name);
  }

  // Cashu.
  for (const v of CASHU_VARS) used.add(v);
  const cashu = cashuFromLegacyEnv(refEnv as NodeJS.ProcessEnv);
  const cashuSet = [...env.keys()].filter((k) => CASHU_VARS.has(k) && k !== 'CASHU_ECASH_SUPPORT');
  if (!cashu && cashuSet.length) note(`${cashuSet.join(', ')}: set, but CASHU_ECASH_SUPPORT is not true: no Cashu, as under ngx_l402`, input.envSource);
  if (cashu) {
    if (cashu.db_path !== undefined) {
      note(`CASHU_DB_PATH: ngx_l402's cdk wallet database cannot be reused: melt what it holds with ngx_l402 (CASHU_REDEEM_ON_LIGHTNING) before you switch; l402d keeps its own wallet under data_dir`, envAt('CASHU_DB_PATH'));
      delete cashu.db_path;
    }
    const walletSecret = env.has('CASHU_WALLET_SECRET') && envVal('CASHU_WALLET_SECRET')!.trim() !== '';
    if (walletSecret) {
      problem(
        `CASHU_WALLET_SECRET: the seed of the wallet an earlier ngx_l402 release derived from it cannot be carried over: l402d's Cashu wallet is a new one${cashu.mnemonic === undefined && cashu.mnemonic_file === undefined ? ' (its seed generated under data_dir at first start; back it up)' : ''}; redeem what ngx_l402's wallet holds (CASHU_REDEEM_ON_LIGHTNING) before you switch`,
        envAt('CASHU_WALLET_SECRET'),
      );
    } else if (cashu.mnemonic === undefined && cashu.mnemonic_file === undefined) {
      const db = envVal('CASHU_DB_PATH')?.trim() || '/var/lib/nginx/cashu_tokens.db';
      cashu.mnemonic_file = `${db.includes('/') ? db.slice(0, db.lastIndexOf('/')) || '/' : '.'}/wallet.mnemonic`;
      note(`the Cashu seed: ngx_l402 kept it in ${cashu.mnemonic_file}; l402d reads the same file (if it is missing there, l402d writes a new seed to it; its wallet database is its own either way)`, input.envSource);
    }
    if (envVal('CASHU_P2PK_MODE') !== undefined && envVal('CASHU_ECASH_SUPPORT') && !/^true$/i.test(envVal('CASHU_P2PK_MODE')!.trim()) && envVal('CASHU_P2PK_MODE')!.trim() !== '') {
      note(`CASHU_P2PK_MODE=${envVal('CASHU_P2PK_MODE')}: not "true": standard mode, as ngx_l402`, envAt('CASHU_P2PK_MODE'));
    }
    for (const v of JSON.stringify(cashu).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) refs.add(v[1]!);
    out.push(`cashu: ${flow(cashu)}`);
  }

  // Manifest.
  const manifest: Record<string, unknown> = { enabled: manifestSeen };
  for (const [name, key] of Object.entries(MANIFEST_VARS)) {
    used.add(name);
    const v = envVal(name);
    if (v !== undefined && v !== '') manifest[key] = v.includes('${') ? ref(name) : v;
  }
  if (!manifestSeen) note('no l402_manifest location: ngx_l402 published no manifest; manifest.enabled: false', input.tree[0] ? input.tree[0].file.path : undefined);
  out.push(`manifest: ${flow(manifest)}`);
  if (metricsSeen) out.push(`metrics: { listen: ${y(metricsListen)} }`);

  // Logging.
  used.add('RUST_LOG');
  const rustLog = envVal('RUST_LOG')?.trim().toLowerCase();
  if (rustLog !== undefined) {
    const LEVELS: Record<string, string> = { error: 'error', warn: 'warn', info: 'info', debug: 'debug', trace: 'trace', off: 'silent' };
    // env_logger's list: a bare level is the default for every module, `module=level` one module's (ngx_l402's
    // docs show `ngx_l402_lib=debug,info`). l402d has one level: the default is carried over.
    const parts = rustLog.split(',').map((p) => p.trim()).filter(Boolean);
    const bare = parts.filter((p) => !p.includes('='));
    const level = bare.length === 1 ? LEVELS[bare[0]!] : undefined;
    if (level) out.push(`log: { level: ${level} }`);
    if (level && parts.length > 1) note(`RUST_LOG=${envVal('RUST_LOG')}: log.level ${level}; l402d has no per-module levels (${parts.filter((p) => p.includes('=')).join(', ')} not carried over)`, envAt('RUST_LOG'));
    else if (!level) note(`RUST_LOG=${envVal('RUST_LOG')}: not a plain level; l402d's log.level stays info`, envAt('RUST_LOG'));
  }
  for (const [name, why] of Object.entries(NOT_NEEDED)) {
    used.add(name);
    if (env.has(name)) note(`${name}: not needed: ${why}`, envAt(name));
  }
  for (const [name, e] of env) {
    if (used.has(name)) continue;
    if (NGX_LOOKING.test(name)) problem(`${name}: not a variable ngx_l402 reads (misspelt?); not carried over`, `${input.envSource}:${e.line}`);
    else note(`${name}: not ngx_l402's; ignored`, `${input.envSource}:${e.line}`);
  }

  // Routes.
  if (routes.length === 0) problem('no location with l402 on and a price: the yaml has no routes, and l402d refuses to start without one');
  out.push('routes:');
  for (const r of routes) {
    out.push(`  # ${r.where}`);
    out.push(`  - match: ${y(r.match)}`);
    if (r.id !== undefined) out.push(`    id: ${y(r.id)}`);
    if (r.pinned) out.push('    pinned: true   # decided only where a location pins it (set $l402_route_pin)');
    out.push(`    amount_msat: ${r.amountMsat}`);
    out.push(`    access: ${r.indefinite ? 'indefinite' : 'per-request'}`);
    if (r.macaroonTimeout > 0) out.push(`    macaroon_timeout: ${r.macaroonTimeout}`);
    if (r.autoDetect) out.push('    auto_detect_payment: true');
    if (r.rateLimit) out.push(`    invoice_rate_limit: ${y(r.rateLimit)}`);
    if (r.dryRun) out.push('    dry_run: true');
    if (r.manifestHide) out.push('    manifest_hide: true');
    if (r.lnurlAddr) out.push(`    lnurl_addr: ${y(r.lnurlAddr)}`);
  }
  const yaml = out.join('\n') + '\n';
  for (const l of out) if (!l.trimStart().startsWith('#')) for (const m of l.replace(/\s#.*$/, '').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) refs.add(m[1]!);

  // ---- load it through the real loader, with the values ngx_l402 had ----
  let config: GateConfig | undefined;
  const values: Record<string, string> = {};
  for (const [k, v] of env) values[k] = v.value;
  // A key this import asks the operator to create: any strong value validates the rest.
  if (refs.has('L402D_ROOT_KEY') && values.L402D_ROOT_KEY === undefined) values.L402D_ROOT_KEY = randomBytes(32).toString('hex');
  try {
    config = parseConfig(yaml, { source: 'l402.yaml', env: values });
  } catch (e) {
    problem(`the generated l402.yaml does not load yet:\n${scrub((e as Error).message, env)}`);
  }
  const complete = !findings.some((f) => f.level === 'problem');
  return { yaml, findings, edits: withoutShadowed(dedupe(edits)), routes, envRefs: [...refs].sort(), config, httpFound: !!httpBlock, complete };
}

function safeMatch(m: string): boolean {
  try {
    parseRouteMatch(m);
    return true;
  } catch {
    return false;
  }
}

/** `=/x` and `= /x` are the same location. */
function parseKey(match: string): string {
  const m = /^(=|\^~|~\*|~)?\s*(.+)$/.exec(match.trim());
  return m ? `${m[1] ?? ''} ${m[2]}` : match;
}

/** A flow mapping in YAML, values as y() writes them; nested objects and arrays too. */
function flow(o: unknown): string {
  if (Array.isArray(o)) return `[${o.map(flow).join(', ')}]`;
  if (o && typeof o === 'object') return `{ ${Object.entries(o).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${flow(v)}`).join(', ')} }`;
  return y(o as string | number | boolean);
}

/** Removes any environment value long enough to be a secret from a message. */
function scrub(msg: string, env: Map<string, EnvEntry>): string {
  let out = msg;
  for (const [name, e] of env) if (e.value.length >= 6) out = out.split(e.value).join(`<${name}>`);
  return out;
}

function dedupe(edits: Edit[]): Edit[] {
  const seen = new Set<string>();
  const out: Edit[] = [];
  // A replacement wins over a plain removal of the same directive.
  const replaced = new Set(edits.filter((e) => e.text !== '').map((e) => `${e.file.path}\0${e.start}\0${e.end}`));
  for (const e of edits) {
    if (e.text === '' && replaced.has(`${e.file.path}\0${e.start}\0${e.end}`)) continue;
    const k = `${e.file.path}\0${e.start}\0${e.end}\0${e.text}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(e);
  }
  return out;
}

/** The indentation of a block's first child, else the block's own plus four spaces. */
function childIndent(block: Directive): string {
  const text = block.file.text;
  const first = block.block?.find((c) => c.file === block.file);
  const lineStart = (at: number) => text.lastIndexOf('\n', at - 1) + 1;
  if (first) {
    const ls = lineStart(first.start);
    const ws = text.slice(ls, first.start);
    if (/^[ \t]*$/.test(ws) && ls > block.blockOpen!) return ws;
  }
  const ls = lineStart(block.start);
  return (/^[ \t]*/.exec(text.slice(ls, block.start))?.[0] ?? '') + '    ';
}

/** Drops an edit inside a block that another edit removes whole. */
function withoutShadowed(edits: Edit[]): Edit[] {
  return edits.filter((e) => !edits.some((o) => o !== e && o.file.path === e.file.path && o.text === '' && o.start <= e.start && e.end <= o.end && (o.start < e.start || e.end < o.end)));
}

/** The file's text with its edits applied (removals that leave a blank line take the line with them). */
export function applyEdits(file: SourceFile, edits: Edit[]): string {
  const mine = edits.filter((e) => e.file === file || e.file.path === file.path).sort((a, b) => b.start - a.start || b.end - a.end);
  const kept = withoutShadowed(mine);
  let text = file.text;
  for (const e of kept) {
    let { start, end } = e;
    if (e.text === '') {
      const ls = text.lastIndexOf('\n', start - 1) + 1;
      const nl = text.indexOf('\n', end);
      const le = nl < 0 ? text.length : nl;
      const before = text.slice(ls, start);
      const rest = text.slice(end, le);
      if (/^[ \t]*$/.test(before) && /^[ \t]*$/.test(rest)) {
        // Alone on its line: the line goes.
        start = ls;
        end = nl < 0 ? le : nl + 1;
      } else if (/^[ \t]*$/.test(before) && /^[ \t]*#/.test(rest)) {
        // Followed by a comment: the comment stays where the directive began.
        end += /^[ \t]*/.exec(rest)![0].length;
      } else {
        // Beside other directives: the blanks before it go with it.
        while (start > ls && (text[start - 1] === ' ' || text[start - 1] === '\t')) start--;
      }
    }
    text = text.slice(0, start) + e.text + text.slice(end);
  }
  return text;
}
