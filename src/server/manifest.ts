// The capability manifest at /.well-known/l402-services, in ngx_l402's schema (keys sorted, as its serde
// output is), so agents written for it read ours. Public by design: it describes prices, not secrets.
import type { GateConfig, RouteConfig } from '../config/config.js';
import type { Price } from '../policy/pricing.js';
import { soldScope } from '../policy/route-config.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json | undefined };

/** Stable output: object keys sorted at every level, undefined members dropped. */
export function sortedJson(v: Json, indent = 2): string {
  const norm = (x: Json): Json => {
    if (Array.isArray(x)) return x.map(norm);
    if (x && typeof x === 'object') {
      const out: { [k: string]: Json } = {};
      for (const k of Object.keys(x).sort()) if (x[k] !== undefined) out[k] = norm(x[k]!);
      return out;
    }
    return x;
  };
  return JSON.stringify(norm(v), null, indent) + '\n';
}

function caveats(r: RouteConfig, service: string): string[] {
  const out = [`services=${service}:0`, `route=${soldScope(r)}`];
  if (r.access === 'per-request') out.push('path=<request path>', 'method=<request method>', 'uses=1');
  else if (r.methods) out.push(`method=${r.methods.join(',')}`);
  if (r.macaroonTimeout > 0) out.push(`${service}_valid_until=<invoice expiry + ${r.macaroonTimeout}s>`);
  if (r.capabilities) out.push(`${service}_capabilities=${r.capabilities.join(',')}`);
  if (r.balanceMsat !== undefined) out.push(`balance_msat=${r.balanceMsat}`);
  return out;
}

/**
 * The routes the discovery documents (this one and /openapi.json) describe: what a client can buy by path.
 * Not `manifest_hide` or `dry_run` ones, nor `pinned: true` ones: those are sold only where an nginx location
 * pins them, perhaps on another server, while these documents are per path and every server serves them
 * alike, so listing one would tell every server's clients another server's route, path and price.
 */
export function listedRoute(r: RouteConfig): boolean {
  return !r.manifestHide && !r.dryRun && !r.pinned;
}

export async function buildManifest(cfg: GateConfig, backendKind: string, price: (r: RouteConfig, path: string) => Promise<Price>): Promise<string> {
  const cashu = cfg.cashu;
  const routes: Json[] = [];
  const listed = cfg.routes.filter(listedRoute);
  // All at once: with a stalled store each lookup waits its store_ms, so one after another would add up.
  const prices = await Promise.all(listed.map((r) => price(r, r.match.replace(/^(=|\^~)\s*/, ''))));
  for (const [i, r] of listed.entries()) {
    const p = prices[i]!;
    routes.push({
      path: r.match,
      price: { type: p.source, amount_msat: p.amountMsat },
      caveats_required: caveats(r, cfg.service),
      access: r.access,
      methods: r.methods,
      macaroon_timeout_secs: r.macaroonTimeout > 0 ? r.macaroonTimeout : undefined,
      rate_limit: r.rateLimit ? { max_requests: r.rateLimit.max, window_secs: r.rateLimit.windowSecs } : undefined,
      auto_detect_payment: r.autoDetect ? true : undefined,
      // access: balance: the invoice buys this much credit; each request draws price.amount_msat from it.
      balance_msat: r.balanceMsat,
      plan: r.plan,
      rails: cashu ? r.rails : ['lightning'],
    });
  }
  const m = cfg.manifest;
  return sortedJson({
    payment_methods: [
      { type: 'lightning', backend: backendKind.toUpperCase(), challenge_header: 'WWW-Authenticate', schemes: cfg.challenge.lsat ? ['L402', 'LSAT'] : ['L402'] },
      ...(cashu
        ? [{ type: 'cashu', mints: cashu.mints, unit: cashu.unit, p2pk_supported: cashu.mode === 'p2pk' ? true : undefined, challenge_header: 'X-Cashu', credential_headers: ['X-Cashu', 'Authorization: Cashu'] }]
        : []),
    ],
    routes,
    service: { name: m.name, description: m.description, operator: m.operator, contact: m.contact },
    version: '1',
  });
}
