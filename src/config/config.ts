// YAML config + environment, validated with zod. Every error names the key, its line and what is allowed.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve, dirname } from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, visit, type Document } from 'yaml';
import { z } from 'zod';
import { boolLike, intLike } from '../util/zod-coerce.js';
import { AddressSet } from '../policy/rate-limit.js';
import { routeSchema, type RouteConfig } from '../policy/route-config.js';
import { DEFAULT_STORE_PREFIX } from '../policy/store-keys.js';
import { lightningConfigSchema, lightningFromLegacyEnv } from '../rails/lightning/registry.js';
import { parseRedisTarget, REDIS_URL_PATTERN } from '../store/redis-url.js';
import { DECISION_DEADLINE_MS, RENDER_DEADLINE_MS, type Timeouts } from '../policy/budget.js';
import { cashuConfigSchema, cashuFromLegacyEnv, type CashuConfig } from '../rails/cashu/index.js';
import { parseFreePath } from '../policy/free-paths.js';

export class ConfigError extends Error {}


const storeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('memory') }).strict(),
  z.object({ type: z.literal('sqlite'), path: z.string().min(1).optional(), durability: z.enum(['normal', 'full']).default('normal') }).strict(),
  z
    .object({
      type: z.literal('redis'),
      url: z
        .string()
        .regex(REDIS_URL_PATTERN, 'a redis://, rediss://, unix:, redis+sentinel:// or redis+cluster:// URL')
        .superRefine((u, ctx) => {
          try {
            parseRedisTarget(u);
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message });
          }
        }),
      prefix: z.string().default(DEFAULT_STORE_PREFIX),
      // Refuse to start unless Redis is seen to keep spent marks (persistence on, maxmemory-policy noeviction).
      require_persistence: z.boolean().default(false),
    })
    .strict(),
]);


const listenSchema = z
  .string()
  .regex(/^(unix:\/.+|(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5})$/, 'host:port or unix:/path')
  .refine((l) => l.startsWith('unix:') || Number(l.slice(l.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535');

const configSchema = z
  .object({
    listen: listenSchema.default('127.0.0.1:8402'),
    workers: z.union([z.literal('auto'), intLike(z.number().int().min(1).max(64))]).default(1),
    // l402d start checks the Lightning backend (bounded); true refuses to start when it is not usable.
    require_backend: z.boolean().default(false),
    data_dir: z.string().min(1).default('./data'),
    root_key: z.string().optional(),
    previous_root_keys: z.array(z.string()).default([]),
    // Raw bytes, as ngx_l402 used its ROOT_KEY (no hex decoding); its own minimum length.
    ngx_l402_root_key: z.string().min(32, 'at least 32 characters (ngx_l402 refused shorter keys)').optional(),
    // Sent by nginx on every call to /_l402/auth and /_l402/render (nginx-conf writes it into server.conf):
    // l402d refuses those calls without it, for an l402d that something other than nginx can reach.
    nginx_secret: z.string().regex(/^[A-Za-z0-9_-]{32,128}$/, '32-128 characters A-Z a-z 0-9 _ - (openssl rand -hex 32)').optional(),
    service: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'lowercase letters, digits, _ and -').default('l402'),
    store: storeSchema.default({ type: 'sqlite', durability: 'normal' }),
    // Required: the development wallet (not real money) is an explicit choice, never what a missing section means.
    lightning: lightningConfigSchema,
    invoice: z
      .object({
        memo: z.string().max(639).default('L402 payment'),
        expiry_secs: intLike(z.number().int().min(60).max(7 * 86400)).default(3600),
      })
      .strict()
      .default({ memo: 'L402 payment', expiry_secs: 3600 }),
    challenge: z.object({ lsat: boolLike.default(false) }).strict().default({ lsat: false }),
    // A caveat condition l402d does not know, appended by a holder: skip (the L402 macaroon spec) or reject.
    l402: z.object({ unknown_caveats: z.enum(['skip', 'reject']).default('skip') }).strict().default({ unknown_caveats: 'skip' }),
    upstream: z.url({ protocol: /^https?$/ }).optional(),
    // Standalone mode: paths proxied without payment ("= /exact" or "/prefix"), Aperture's authwhitelistpaths.
    free_paths: z
      .array(
        z.string().superRefine((v, ctx) => {
          try {
            parseFreePath(v);
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message });
          }
        }),
      )
      .max(256)
      .default([]),
    // Standalone mode: l402d faces clients over HTTPS itself (MPP and x402 are offered over HTTPS only).
    tls: z.object({ cert_file: z.string().min(1), key_file: z.string().min(1) }).strict().optional(),
    // Standalone mode: how long the upstream may stay silent (nginx's proxy_read_timeout, 60 s by default).
    upstream_timeout_ms: intLike(z.number().int().min(100).max(3_600_000)).default(60_000),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).strict().default({ level: 'info' }),
    // The answer's time budget (see policy/budget.ts and docs/configuration.md): each backend call ends inside
    // the render deadline, each store call inside the decision deadline; the nginx snippets wait for each
    // deadline plus a margin. Unset deadlines grow to fit longer call bounds (with a warning at start-up when
    // the total passes 5 s); deadlines set explicitly must fit them.
    timeouts: z
      .object({
        backend_ms: intLike(z.number().int().min(100).max(30_000)).default(1500),
        store_ms: intLike(z.number().int().min(50).max(30_000)).default(500),
        decision_ms: intLike(z.number().int().min(200).max(60_000)).optional(),
        render_ms: intLike(z.number().int().min(200).max(60_000)).optional(),
      })
      .strict()
      .superRefine((t, ctx) => {
        if (t.render_ms !== undefined && t.backend_ms >= t.render_ms) {
          ctx.addIssue({ code: 'custom', path: ['backend_ms'], message: `must be below timeouts.render_ms (${t.render_ms}): a challenge waits for the backend within the render deadline` });
        }
        if (t.decision_ms !== undefined && t.store_ms * 2 > t.decision_ms) {
          ctx.addIssue({ code: 'custom', path: ['store_ms'], message: `at most half of timeouts.decision_ms (${t.decision_ms}): a decision may need a lookup and a claim before its deadline` });
        }
      })
      .default({ backend_ms: 1500, store_ms: 500 }),
    rate_limit: z
      .object({
        trusted_proxies: z
          .array(z.string())
          .default([])
          .superRefine((v, ctx) => {
            try {
              new AddressSet(v);
            } catch (e) {
              ctx.addIssue({ code: 'custom', message: (e as Error).message });
            }
          }),
        on_store_error: z.enum(['closed', 'open']).default('closed'),
      })
      .strict()
      .default({ trusted_proxies: [], on_store_error: 'closed' }),
    metrics: z
      .object({
        listen: listenSchema,
        token: z.string().min(16, 'at least 16 characters').optional(),
      })
      .strict()
      .optional(),
    /** Options for per-route Lightning addresses (lnurl_addr and store overrides): the lnurl backend's keys. */
    lnurl_options: z.record(z.string(), z.unknown()).default({}),
    cashu: cashuConfigSchema.optional(),
    /** Pass the payment credential (Authorization L402/LSAT/Cashu, X-Cashu, gRPC token/macaroon) on to the upstream. */
    forward_payment_credentials: boolLike.default(false),
    /** required: every request nginx asks about must come from a location that pins its route ($l402_route_pin). */
    route_pins: z.enum(['optional', 'required']).default('optional'),
    nginx_cache: z
      .object({ max_secs: intLike(z.number().int().min(0).max(300)).default(5) })
      .strict()
      .default({ max_secs: 5 }),
    manifest: z
      .object({
        enabled: boolLike.default(true),
        // Also serve the MPP discovery document at /openapi.json (off: the upstream's own is reached instead).
        openapi: boolLike.default(true),
        name: z.string().max(200).optional(),
        description: z.string().max(2000).optional(),
        operator: z.string().max(200).optional(),
        contact: z.string().max(200).optional(),
      })
      .strict()
      .default({ enabled: true, openapi: true }),
    pricing: z
      .object({
        dynamic: boolLike.default(true),
        cache_ms: intLike(z.number().int().min(0).max(600_000)).default(2000),
        legacy_keys: boolLike.default(false),
      })
      .strict()
      .default({ dynamic: true, cache_ms: 2000, legacy_keys: false }),
    dry_run: z
      .object({ invoice_sample_rate: z.number().min(0).max(1).default(0) })
      .strict()
      .default({ invoice_sample_rate: 0 }),
    retry_after_secs: intLike(z.number().int().min(1).max(3600)).default(5),
    routes: z.array(routeSchema).min(1, 'at least one route'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.tls && !c.upstream) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'only in standalone mode (with upstream:); behind nginx, nginx terminates TLS' });
    if (c.route_pins === 'required' && c.upstream) ctx.addIssue({ code: 'custom', path: ['route_pins'], message: 'required only behind nginx (its locations pin routes); standalone mode has no pins' });
  });

export type { RouteConfig };
type Parsed = z.output<typeof configSchema>;

export interface GateConfig {
  listen: Parsed['listen'];
  /** l402d processes sharing the listen address (node:cluster). */
  workers: number;
  /** Refuse to start (exit 2) when the start-up backend check fails, instead of logging an error and serving 503s. */
  requireBackend: boolean;
  dataDir: string;
  /** Raw text; parsed and strength-checked by root-key.ts. Absent only for the dev wallet (generated). */
  rootKey?: string;
  previousRootKeys: string[];
  /** ngx_l402's ROOT_KEY bytes: credentials it sold are honoured while clients move over. */
  ngxL402RootKey?: Buffer;
  /** Shared by nginx and l402d (nginx_secret): required on the nginx endpoints when set. */
  nginxSecret?: string;
  service: string;
  store: { type: 'memory' } | { type: 'sqlite'; path: string; durability: 'normal' | 'full' } | { type: 'redis'; url: string; prefix: string; requirePersistence: boolean };
  lightning: Parsed['lightning'];
  /** Directory of the config file: relative paths in backend sections resolve against it. */
  configDir: string;
  invoice: { memo: string; expirySecs: number };
  challenge: { lsat: boolean };
  /** A caveat condition l402d does not know, appended by a holder: skipped (the L402 spec) or refused. */
  unknownCaveats: 'skip' | 'reject';
  upstream?: string;
  /** Standalone mode: paths proxied without payment (see policy/free-paths.ts). */
  freePaths: string[];
  /** Standalone mode: the certificate chain and key (PEM files, absolute paths) l402d serves HTTPS with. */
  tls?: { certFile: string; keyFile: string };
  /** Standalone mode: the upstream's silence (before or between response bytes) that ends the request (504). */
  upstreamTimeoutMs: number;
  logLevel: Parsed['log']['level'];
  /** Bounds on each backend and store call, and l402d's deadlines for a decision and a render (see policy/budget.ts). */
  timeouts: Timeouts;
  retryAfterSecs: number;
  rateLimit: { trustedProxies: string[]; onStoreError: 'closed' | 'open' };
  /** Fraction of dry-run requests that would get a challenge for which a real invoice is minted (0 = none). */
  dryRunInvoiceSampleRate: number;
  pricing: { dynamic: boolean; cacheMs: number; legacyKeys: boolean };
  lnurlOptions: Record<string, unknown>;
  /** Absent: no Cashu rail. */
  cashu?: CashuConfig;
  /**
   * Pass the payment credential the gate consumed on to the upstream (off: stripped in protect.conf and in
   * standalone mode; the upstream gets the X-L402-* identity headers instead).
   */
  forwardPaymentCredentials: boolean;
  /** required: a request from a location without `set $l402_route_pin` has no route (403 no_route). */
  routePins: 'optional' | 'required';
  /** How long nginx may reuse a "paid" answer for a reusable credential (0 = never). */
  nginxCacheMaxSecs: number;
  /** Absent: no metrics endpoint. It never shares the gate's listen address. */
  metrics?: { listen: string; token?: string };
  manifest: { enabled: boolean; /** Serve /openapi.json (MPP discovery). */ openapi: boolean; name?: string; description?: string; operator?: string; contact?: string };
  routes: RouteConfig[];
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** ngx_l402's environment names, so its operators can migrate without rewriting their secrets. */
function applyLegacyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  if (raw.root_key === undefined && env.ROOT_KEY) raw.root_key = env.ROOT_KEY;
  if (raw.lightning === undefined) raw.lightning = lightningFromLegacyEnv(env);
  if (raw.cashu === undefined) raw.cashu = cashuFromLegacyEnv(env);
  if (raw.store === undefined && env.REDIS_URL) raw.store = { type: 'redis', url: env.REDIS_URL };
  const m = (raw.manifest ?? {}) as Record<string, unknown>;
  for (const [key, name] of [['name', 'L402_SERVICE_NAME'], ['description', 'L402_SERVICE_DESCRIPTION'], ['operator', 'L402_SERVICE_OPERATOR'], ['contact', 'L402_SERVICE_CONTACT']] as const) {
    if (m[key] === undefined && env[name]) m[key] = env[name];
  }
  if (Object.keys(m).length > 0) raw.manifest = m;
}

function lineOf(lc: LineCounter, doc: Document, path: readonly PropertyKey[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

/** The line of the key `key` itself in the mapping at `path` (an unknown key is reported on its own line). */
function keyLineOf(lc: LineCounter, doc: Document, path: readonly PropertyKey[], key: string): number | undefined {
  const map = doc.getIn(path as unknown[], true);
  if (isMap(map)) {
    for (const pair of map.items) {
      if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) return lc.linePos(pair.key.range[0]).line;
    }
  }
  return lineOf(lc, doc, path);
}

/** The keys a zod object schema at `path` accepts (through defaults, optionals, pipes, arrays and unions on `type`). */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[], value: unknown): string[] {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let s: any = schema;
  let v: unknown = value;
  let i = 0;
  for (let guard = 0; s && guard < 200; guard++) {
    const def = s._zod?.def;
    if (!def) return [];
    if (def.type === 'default' || def.type === 'optional' || def.type === 'nullable' || def.type === 'prefault' || def.type === 'catch' || def.type === 'readonly') s = def.innerType;
    else if (def.type === 'pipe') s = def.in?._zod?.def?.type === 'transform' ? def.out : def.in;
    else if (def.type === 'union') {
      const t = v && typeof v === 'object' ? (v as Record<string, unknown>).type : undefined;
      const opts = def.options as Array<{ _zod: { def: { type: string; shape?: Record<string, { _zod: { def: { type: string; values?: unknown[] } } }> } } }>;
      const hit = opts.find((o) => o._zod.def.type === 'object' && o._zod.def.shape?.type?._zod.def.values?.includes(t));
      if (!hit) return [...new Set(opts.flatMap((o) => (o._zod.def.type === 'object' ? Object.keys(o._zod.def.shape ?? {}) : [])))];
      s = hit;
    } else if (i === path.length) return def.type === 'object' ? Object.keys(def.shape) : [];
    else if (def.type === 'object') {
      s = def.shape[String(path[i])];
      v = v && typeof v === 'object' ? (v as Record<string, unknown>)[String(path[i])] : undefined;
      i++;
    } else if (def.type === 'array') {
      s = def.element;
      v = Array.isArray(v) ? v[path[i] as number] : undefined;
      i++;
    } else if (def.type === 'record') {
      s = def.valueType;
      v = v && typeof v === 'object' ? (v as Record<string, unknown>)[String(path[i])] : undefined;
      i++;
    } else return [];
  }
  return [];
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest known key to a misspelt one, when it is close enough to be a likely typo. */
function closestKey(key: string, known: string[]): string | undefined {
  if (key.length > 64) return undefined;
  let best: string | undefined;
  let bestD = Infinity;
  const k = key.toLowerCase().replace(/-/g, '_');
  for (const c of known) {
    const d = editDistance(k, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function keyName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(top level)';
}

/** A hint for the usual cause of a YAML syntax error on `line`: an unquoted ${VAR} or other flow syntax inside { } or [ ]. */
function yamlHint(text: string, line: number | undefined): string {
  if (!line) return '';
  const l = text.split(/\r?\n/)[line - 1] ?? '';
  if (/\$\{/.test(l)) return ' (quote a value that holds ${VAR}, as in key: "${VAR}": inside { } or [ ] an unquoted { starts a new mapping)';
  if (/[{[]/.test(l)) return ' (inside { } or [ ], quote a value that holds { } [ ] , # or ": ", as in key: "value")';
  return '';
}

/** Parses and validates config text. `source` names the file in messages; relative paths resolve against `baseDir`. */
export function parseConfig(text: string, opts: { source?: string; baseDir?: string; env?: NodeJS.ProcessEnv } = {}): GateConfig {
  const env = opts.env ?? process.env;
  const source = opts.source ?? 'config';
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line;
    throw new ConfigError(`${source}${line ? `:${line}` : ''}: invalid YAML: ${e.message.split('\n')[0]!.replace(/:$/, '')}${e.code === 'DUPLICATE_KEY' ? ' (each key may appear only once in a mapping)' : yamlHint(text, line)}`);
  }
  const problems: string[] = [];
  // ${VAR} expansion on string scalars only, so a secret's characters can never change the YAML structure.
  const expand = (value: string, path: readonly PropertyKey[]): string =>
    value.replace(ENV_REF, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push(`${source}:${lineOf(lc, doc, path) ?? '?'}: ${keyName(path)}: environment variable ${name} is not set`);
        return '';
      }
      return v;
    });
  const walk = (v: unknown, path: PropertyKey[]): unknown => {
    // Aliases can make a document refer to itself; no config is anywhere near this deep.
    if (path.length > 32) throw new ConfigError(`${source}:${lineOf(lc, doc, path.slice(0, 1)) ?? '?'}: ${keyName(path.slice(0, 1))}: nested too deeply (a YAML alias that refers to itself?)`);
    if (typeof v === 'string') return expand(v, path);
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, [...path, k])]));
    return v;
  };
  // Keys must be plain scalars (a mapping as a key would be silently stringified by toJS).
  let badKey: number | undefined;
  visit(doc, {
    Pair(_, pair) {
      if (badKey === undefined && pair.key !== null && !isScalar(pair.key)) {
        const range = (pair.key as { range?: [number, number, number] }).range;
        badKey = range ? lc.linePos(range[0]).line : 0;
      }
    },
  });
  if (badKey !== undefined) throw new ConfigError(`${source}${badKey ? `:${badKey}` : ''}: invalid YAML: mapping keys must be plain strings`);
  let js: unknown;
  try {
    // A small alias budget refuses "billion laughs" documents; an undefined alias throws here too.
    js = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    throw new ConfigError(`${source}: invalid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof js !== 'object' || Array.isArray(js)) throw new ConfigError(`${source}: the config must be a YAML mapping`);
  const raw = walk(js, []) as Record<string, unknown>;
  if (problems.length) throw new ConfigError(problems.join('\n'));
  applyLegacyEnv(raw, env);
  // The development wallet (not real money) is an explicit choice, never what a missing section means.
  const noLightning = raw.lightning === undefined;
  if (noLightning) raw.lightning = { type: 'dev' }; // only so the rest is still checked and reported at once
  const result = configSchema.safeParse(raw);
  const lines = result.success
    ? []
    : result.error.issues.flatMap((i) => {
        if (i.code === 'unrecognized_keys') {
          // Each unknown key on its own line, with the closest key this section knows.
          const known = knownKeys(configSchema, i.path, raw);
          return i.keys.map((k) => {
            const line = keyLineOf(lc, doc, i.path, k);
            const near = closestKey(k, known);
            return `${source}${line ? `:${line}` : ''}: ${keyName([...i.path, k])}: unknown key${near ? ` (did you mean ${near}?)` : ''}`;
          });
        }
        const line = lineOf(lc, doc, i.path);
        return [`${source}${line ? `:${line}` : ''}: ${keyName(i.path)}: ${i.message}`];
      });
  const missingLightning = `${source}: lightning: required: name the Lightning backend (lightning.type lnd, cln, nwc, eclair, lnurl, bolt12, lnc), or \`lightning: { type: dev }\` for the development wallet, whose invoices are not real money`;
  if (!result.success) throw new ConfigError([...lines, ...(noLightning ? [missingLightning] : [])].join('\n'));
  const c = result.data;
  if (c.workers !== 1 && c.store.type === 'memory') {
    throw new ConfigError(`${source}:${lineOf(lc, doc, ['workers']) ?? '?'}: workers: several processes need a shared store (sqlite or redis), not memory`);
  }
  if (c.workers !== 1 && c.lightning?.type === 'lnc') {
    throw new ConfigError(`${source}:${lineOf(lc, doc, ['workers']) ?? '?'}: workers: an LNC session serves one client at a time; use workers: 1 with lightning.type lnc`);
  }
  if (c.metrics && c.metrics.listen === c.listen) {
    throw new ConfigError(`${source}:${lineOf(lc, doc, ['metrics', 'listen']) ?? '?'}: metrics.listen: must differ from listen (keep metrics off the gate's address)`);
  }
  if (c.free_paths.length > 0 && !c.upstream) {
    throw new ConfigError(`${source}:${lineOf(lc, doc, ['free_paths']) ?? '?'}: free_paths: only in standalone mode (with upstream:); behind nginx, serve free paths from locations without protect.conf`);
  }
  if (c.pricing.legacy_keys && c.store.type !== 'redis') {
    throw new ConfigError(`${source}:${lineOf(lc, doc, ['pricing', 'legacy_keys']) ?? '?'}: pricing.legacy_keys: needs store.type redis (the keys are ngx_l402's Redis keys)`);
  }
  const base = opts.baseDir ?? process.cwd();
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const dataDir = abs(c.data_dir);
  const ids = new Set<string>();
  for (const [i, r] of c.routes.entries()) {
    if (ids.has(r.id)) throw new ConfigError(`${source}:${lineOf(lc, doc, ['routes', i]) ?? '?'}: routes[${i}]: duplicate route id "${r.id}" (set a distinct id:)`);
    ids.add(r.id);
  }
  // A plan is one balance: its routes agree on what a payment buys and how long the credential lives.
  const plans = new Map<string, RouteConfig>();
  for (const [i, r] of c.routes.entries()) {
    if (r.plan === undefined) continue;
    const first = plans.get(r.plan);
    if (!first) plans.set(r.plan, r);
    else if (first.schemes.includes('mpp') !== r.schemes.includes('mpp')) {
      // An MPP session opened on one route of a plan draws on all of them: each must accept its credential.
      throw new ConfigError(`${source}:${lineOf(lc, doc, ['routes', i, 'schemes']) ?? lineOf(lc, doc, ['routes', i]) ?? '?'}: routes[${i}].schemes: plan "${r.plan}": every route of a plan offers mpp (MPP sessions) or none does (as route "${first.id}")`);
    } else if (first.balanceMsat !== r.balanceMsat || first.macaroonTimeout !== r.macaroonTimeout || first.sessionIdleSecs !== r.sessionIdleSecs) {
      throw new ConfigError(`${source}:${lineOf(lc, doc, ['routes', i]) ?? '?'}: routes[${i}]: plan "${r.plan}": every route of a plan needs the same balance_msat, macaroon_timeout and session_idle_secs (as route "${first.id}")`);
    }
  }
  if (noLightning) throw new ConfigError(missingLightning);
  return {
    listen: c.listen,
    workers: c.workers === 'auto' ? availableParallelism() : c.workers,
    requireBackend: c.require_backend,
    dataDir,
    rootKey: c.root_key,
    previousRootKeys: c.previous_root_keys,
    nginxSecret: c.nginx_secret,
    ngxL402RootKey: c.ngx_l402_root_key === undefined ? undefined : Buffer.from(c.ngx_l402_root_key, 'utf8'),
    service: c.service,
    store:
      c.store.type === 'sqlite'
        ? { type: 'sqlite', path: abs(c.store.path ?? resolve(dataDir, 'l402.db')), durability: c.store.durability }
        : c.store.type === 'redis'
          ? { type: 'redis', url: c.store.url, prefix: c.store.prefix, requirePersistence: c.store.require_persistence }
          : c.store,
    lightning: c.lightning,
    configDir: base,
    invoice: { memo: c.invoice.memo, expirySecs: c.invoice.expiry_secs },
    challenge: c.challenge,
    unknownCaveats: c.l402.unknown_caveats,
    upstream: c.upstream,
    freePaths: c.free_paths,
    tls: c.tls ? { certFile: abs(c.tls.cert_file), keyFile: abs(c.tls.key_file) } : undefined,
    upstreamTimeoutMs: c.upstream_timeout_ms,
    logLevel: c.log.level,
    timeouts: {
      backendMs: c.timeouts.backend_ms,
      storeMs: c.timeouts.store_ms,
      decisionMs: c.timeouts.decision_ms ?? Math.max(DECISION_DEADLINE_MS, 2 * c.timeouts.store_ms),
      renderMs: c.timeouts.render_ms ?? Math.max(RENDER_DEADLINE_MS, c.timeouts.backend_ms + 500),
    },
    retryAfterSecs: c.retry_after_secs,
    rateLimit: { trustedProxies: c.rate_limit.trusted_proxies, onStoreError: c.rate_limit.on_store_error },
    dryRunInvoiceSampleRate: c.dry_run.invoice_sample_rate,
    nginxCacheMaxSecs: c.nginx_cache.max_secs,
    forwardPaymentCredentials: c.forward_payment_credentials,
    routePins: c.route_pins,
    lnurlOptions: c.lnurl_options,
    cashu: c.cashu,
    metrics: c.metrics,
    manifest: c.manifest,
    pricing: { dynamic: c.pricing.dynamic, cacheMs: c.pricing.cache_ms, legacyKeys: c.pricing.legacy_keys },
    routes: c.routes,
  };
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): GateConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, { source: path, baseDir: dirname(resolve(path)), env });
}
