// Dynamic prices from the shared store, with a short in-process cache. A bad or missing value falls back
// to the route's static price (logged), never an error for the client.
import type { Store } from '../store/store.js';
import { withTimeout } from '../util/timeout.js';
import type { RouteConfig } from './config.js';

export interface Price {
  amountMsat: number;
  source: 'static' | 'dynamic';
  /**
   * The price is set for this exact path (`price:path:…`, or ngx_l402's bare-path key), not the route:
   * the path is sold separately, so a reusable credential for the route does not open it, and one bought
   * for it opens only it.
   */
  pathPriced: boolean;
  /** The store did not answer for the path's own price and nothing was cached: whether it is path-priced is unknown. */
  pathUnknown?: boolean;
}

/** The documented key scheme (inside the store's own prefix, `l402:` on Redis). */
export const priceKeys = {
  route: (routeId: string) => `price:route:${routeId}`,
  path: (path: string) => `price:path:${path}`,
};

export const MAX_PRICE_MSAT = 2_100_000_000_000_000;

export function parsePrice(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,16}$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return n > 0 && n <= MAX_PRICE_MSAT ? n : undefined;
}

export interface PriceResolverOptions {
  store: Store;
  storeTimeoutMs: number;
  cacheMs: number;
  /** ngx_l402 compatibility: the bare request path as a key, outside any prefix. */
  legacyGet?: (key: string) => Promise<string | undefined>;
  onBadValue: (key: string) => void;
}

/** What a control-plane read returns when the store did not answer and nothing was cached. */
export const UNKNOWN = Symbol('store did not answer');

/**
 * Store reads for the control plane (prices, payee overrides), cached for `cacheMs`. On store trouble the
 * last known value is kept; with none, UNKNOWN (callers decide what that means: a challenge uses the static
 * price, a credential check fails closed). At most 10,000 keys, the oldest dropped first (clients choose
 * paths: clearing everything at once would let them empty the cache at will).
 */
export function createCachedReader(cacheMs: number, storeTimeoutMs: number) {
  const cache = new Map<string, { value: string | undefined; at: number }>();
  return async (key: string, get: (k: string) => Promise<string | undefined>): Promise<string | undefined | typeof UNKNOWN> => {
    const hit = cache.get(key);
    const now = Date.now();
    if (hit && now - hit.at < cacheMs) return hit.value;
    let value: string | undefined;
    try {
      value = await withTimeout(get(key), storeTimeoutMs, 'store lookup');
    } catch {
      return hit ? hit.value : UNKNOWN;
    }
    cache.delete(key);
    cache.set(key, { value, at: now });
    if (cache.size > 10_000) cache.delete(cache.keys().next().value!);
    return value;
  };
}

export function createPriceResolver(o: PriceResolverOptions) {
  const read = createCachedReader(o.cacheMs, o.storeTimeoutMs);
  const pick = (key: string, raw: string | undefined | typeof UNKNOWN): number | undefined => {
    if (raw === undefined || raw === UNKNOWN) return undefined;
    const n = parsePrice(raw);
    if (n === undefined) o.onBadValue(key);
    return n;
  };
  return async (route: RouteConfig, path: string): Promise<Price> => {
    const get = (k: string) => o.store.get(k);
    const rawPath = await read(priceKeys.path(path), get);
    const byPath = pick(priceKeys.path(path), rawPath);
    if (byPath !== undefined) return { amountMsat: byPath, source: 'dynamic', pathPriced: true };
    let pathUnknown = rawPath === UNKNOWN;
    const byRoute = pick(priceKeys.route(route.id), await read(priceKeys.route(route.id), get));
    if (byRoute !== undefined) return { amountMsat: byRoute, source: 'dynamic', pathPriced: false, pathUnknown };
    if (o.legacyGet) {
      const rawLegacy = await read(`legacy:${path}`, () => o.legacyGet!(path));
      const legacy = pick(path, rawLegacy);
      if (legacy !== undefined) return { amountMsat: legacy, source: 'dynamic', pathPriced: true };
      pathUnknown ||= rawLegacy === UNKNOWN;
    }
    return { amountMsat: route.amountMsat, source: 'static', pathPriced: false, pathUnknown };
  };
}
