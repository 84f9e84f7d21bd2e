// One route's config section (`routes:` in the YAML): owned by the core, which decides by it. The whole
// gate's config (config/config.ts) embeds it.
import { z } from 'zod';
import { boolLike, intLike } from '../util/zod-coerce.js';
import { parseRouteMatch } from './routes.js';
import { parseRateLimit } from './rate-limit.js';
import { CAPABILITY_NAME } from '../protocol/caveats.js';
import { checkSchemes, defaultSchemes, PAYMENT_SCHEMES, railsOf } from './schemes.js';

/** A balance stays well inside the integers every store counts exactly (2^53). */
export const MAX_BALANCE_MSAT = 1_000_000_000_000_000;
/** MPP sessions' idle timeout when the route sets none: draft-lightning-session-00's recommended 5 minutes. */
export const DEFAULT_SESSION_IDLE_SECS = 300;
/** The route caveat of a plan's credentials: `plan:<id>` (no route id may start with it). */
export const BALANCE_SCOPE_PREFIX = 'plan:';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT'] as const;

export const routeSchema = z
  .object({
    match: z.string().min(1).superRefine((m, ctx) => {
      try {
        parseRouteMatch(m);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
      }
    }),
    id: z.string().regex(/^[A-Za-z0-9_.\/:-]{1,128}$/, 'letters, digits and _ . / : - only').optional(),
    methods: z.array(z.preprocess((m) => (typeof m === 'string' ? m.toUpperCase() : m), z.enum(HTTP_METHODS))).min(1).optional(),
    amount_msat: intLike(z.number().int().positive().max(2_100_000_000_000_000)),
    access: z.enum(['per-request', 'timed', 'indefinite', 'balance']).optional(),
    /** access: balance: msat of credit one payment buys (each request draws the route's price). */
    balance_msat: intLike(z.number().int().positive().max(MAX_BALANCE_MSAT)).optional(),
    /** access: balance with mpp: seconds an MPP session may stay idle before l402d closes it and refunds; 0 = never. */
    session_idle_secs: intLike(z.number().int().min(0).max(30 * 86_400)).optional(),
    /** access: balance: routes with the same plan share one balance (a credential bought on one opens all). */
    plan: z.string().regex(/^[A-Za-z0-9_.\/:-]{1,128}$/, 'letters, digits and _ . / : - only').optional(),
    indefinite_access: boolLike.optional(),
    macaroon_timeout: intLike(z.number().int().min(0).max(10 * 365 * 86400)).default(0),
    auto_detect_payment: boolLike.default(false),
    dry_run: boolLike.default(false),
    manifest_hide: boolLike.default(false),
    /** Decided only where an nginx location pins it (`set $l402_route_pin <id>;`), never by path alone. */
    pinned: boolLike.default(false),
    payment_page: boolLike.default(true),
    lnurl_addr: z.string().trim().min(3).max(320).optional(),
    rails: z.array(z.enum(['lightning', 'cashu'])).min(1).optional(),
    schemes: z.array(z.enum(PAYMENT_SCHEMES)).min(1).optional(),
    // The capability set sold (minted as <service>_capabilities) and which requests need which capability.
    capabilities: z.array(z.string().regex(CAPABILITY_NAME, 'letters, digits and _ . : - (at most 64)')).min(1).max(32).optional(),
    capability_rules: z
      .array(
        z
          .object({
            capability: z.string(),
            methods: z.array(z.string().transform((m) => m.toUpperCase()).pipe(z.string().regex(/^[A-Z_-]{1,64}$/, 'an HTTP method'))).min(1).optional(),
            path_prefix: z.string().startsWith('/', 'a path starting with /').max(1024).optional(),
          })
          .strict(),
      )
      .max(64)
      .optional(),
    invoice_rate_limit: z
      .string()
      .superRefine((v, ctx) => {
        try {
          parseRateLimit(v);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: (e as Error).message });
        }
      })
      .optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.indefinite_access && r.access && r.access !== 'indefinite') {
      ctx.addIssue({ code: 'custom', path: ['indefinite_access'], message: `conflicts with access: ${r.access}` });
    }
    const access = r.access ?? (r.indefinite_access ? 'indefinite' : 'per-request');
    if (r.lnurl_addr && r.auto_detect_payment) {
      ctx.addIssue({ code: 'custom', path: ['auto_detect_payment'], message: 'cannot be combined with lnurl_addr (a Lightning Address gives no settlement lookups we can rely on)' });
    }
    if (access === 'balance') {
      if (r.balance_msat === undefined) ctx.addIssue({ code: 'custom', path: ['balance_msat'], message: 'access: balance needs balance_msat (the credit one payment buys)' });
      else if (r.balance_msat < r.amount_msat) ctx.addIssue({ code: 'custom', path: ['balance_msat'], message: `must be at least amount_msat (${r.amount_msat}), what one request draws` });
      if (r.auto_detect_payment) ctx.addIssue({ code: 'custom', path: ['auto_detect_payment'], message: 'cannot be combined with access: balance (the preimage proves each payment)' });
      if (r.dry_run) ctx.addIssue({ code: 'custom', path: ['dry_run'], message: 'cannot be combined with access: balance' });
      // x402's credential carries no balance. MPP is served as its Lightning `session` intent (a deposit drawn
      // per request, refunded on close): whole satoshis, paid to and refunded by our own node (never a payee's
      // Lightning address, which we cannot refund from).
      if (r.schemes?.includes('x402')) ctx.addIssue({ code: 'custom', path: ['schemes'], message: 'access: balance is sold over L402 (with Cashu top-ups) and MPP sessions: not x402' });
      if (r.session_idle_secs !== undefined && !r.schemes?.includes('mpp')) ctx.addIssue({ code: 'custom', path: ['session_idle_secs'], message: 'needs mpp in schemes (MPP sessions)' });
      if (r.schemes?.includes('mpp')) {
        if (r.balance_msat !== undefined && r.balance_msat % 1000 !== 0) ctx.addIssue({ code: 'custom', path: ['balance_msat'], message: 'an MPP session deposit is whole satoshis: balance_msat must be a multiple of 1000 when schemes includes mpp' });
        if (r.lnurl_addr) ctx.addIssue({ code: 'custom', path: ['schemes'], message: 'mpp on access: balance (MPP sessions) cannot be combined with lnurl_addr: the deposit must reach our own node, which pays the refund on close' });
      }
      if ((r.schemes && !r.schemes.includes('l402')) || (r.rails && !r.rails.includes('lightning'))) ctx.addIssue({ code: 'custom', path: [r.schemes ? 'schemes' : 'rails'], message: 'access: balance needs L402 on Lightning (its credential holds the balance)' });
    } else {
      if (r.balance_msat !== undefined) ctx.addIssue({ code: 'custom', path: ['balance_msat'], message: 'needs access: balance' });
      if (r.plan !== undefined) ctx.addIssue({ code: 'custom', path: ['plan'], message: 'needs access: balance' });
      if (r.session_idle_secs !== undefined) ctx.addIssue({ code: 'custom', path: ['session_idle_secs'], message: 'needs access: balance with mpp in schemes (MPP sessions)' });
    }
    if ((r.id ?? r.match).startsWith(BALANCE_SCOPE_PREFIX)) ctx.addIssue({ code: 'custom', path: ['id'], message: `must not start with "${BALANCE_SCOPE_PREFIX}" (reserved for plans)` });
    if (access === 'timed' && r.macaroon_timeout === 0) {
      ctx.addIssue({ code: 'custom', path: ['macaroon_timeout'], message: 'access: timed needs macaroon_timeout > 0 (seconds the credential stays valid)' });
    }
    checkSchemes(r, access, ctx);
    for (const [i, rule] of (r.capability_rules ?? []).entries()) {
      // A rule needing a capability the route never sells would refuse every request it applies to.
      if (!r.capabilities?.includes(rule.capability)) {
        ctx.addIssue({ code: 'custom', path: ['capability_rules', i, 'capability'], message: r.capabilities ? `not one of this route's capabilities (${r.capabilities.join(', ')})` : 'needs capabilities: [...] on the route (the set it sells)' });
      }
    }
  })
  .transform((r) => ({
    match: r.match,
    id: r.id ?? r.match,
    methods: r.methods,
    amountMsat: r.amount_msat,
    access: r.access ?? (r.indefinite_access ? 'indefinite' : 'per-request'),
    /** access: balance: the credit one payment (or top-up) buys, msat. */
    balanceMsat: r.balance_msat,
    plan: r.plan,
    /** MPP sessions (access: balance with mpp): the idle timeout, seconds; 0: none. Default the spec's 5 minutes. */
    sessionIdleSecs: r.access === 'balance' && r.schemes?.includes('mpp') ? (r.session_idle_secs ?? DEFAULT_SESSION_IDLE_SECS) : undefined,
    macaroonTimeout: r.macaroon_timeout,
    autoDetect: r.auto_detect_payment,
    dryRun: r.dry_run,
    manifestHide: r.manifest_hide,
    /** Left out of the lookup by path: only a location that names it (nginx's $l402_route_pin) is decided with it. */
    pinned: r.pinned,
    paymentPage: r.payment_page,
    lnurlAddr: r.lnurl_addr,
    /** Which payment rails this route accepts (Cashu only where a `cashu:` section exists). */
    rails: r.schemes ? railsOf(r.schemes) : (r.rails ?? (['lightning', 'cashu'] as Array<'lightning' | 'cashu'>)),
    /** Which payment schemes this route offers (see policy/schemes.ts); Cashu only where a `cashu:` section exists. */
    schemes: r.schemes ? [...new Set(r.schemes)] : defaultSchemes(r.rails ?? ['lightning', 'cashu']),
    rateLimit: r.invoice_rate_limit === undefined ? undefined : parseRateLimit(r.invoice_rate_limit),
    /** The capability set sold (minted into every credential of the route), if any. */
    capabilities: r.capabilities === undefined ? undefined : [...new Set(r.capabilities)],
    capabilityRules: r.capability_rules?.map((c) => ({ capability: c.capability, methods: c.methods, pathPrefix: c.path_prefix })),
  }));

export type RouteConfig = z.output<typeof routeSchema>;

/** The route caveat a credential for this route carries: its plan's scope on a plan, else its own id. */
export function soldScope(route: Pick<RouteConfig, 'id' | 'plan'>): string {
  return route.plan === undefined ? route.id : BALANCE_SCOPE_PREFIX + route.plan;
}
