// Dynamic prices from the shared store, with a short in-process cache. A bad or missing value falls back
// to the route's static price (logged), never an error for the client.
import { hasRawBytes } from '../protocol/path-bytes.js';
import type { ClaimStore } from './ports.js';
import { ngxL402LegacyKeys, storeKeys } from './store-keys.js';
import { withTimeout } from '../util/timeout.js';
import type { RouteConfig } from './route-config.js';

export interface Price {
  amountMsat: number;
  source: 'static' | 'dynamic';
  /**
   * The price is set for this exact path (`price:path:…`, or ngx_l402's bare-path key), not the route:
   * the path is sold separately, so a reusable credential for the route does not open it, and one bought
   * for it opens only it.
   */
  pathPriced: boolean;
}

/** The documented key scheme (inside the store's own prefix, `l402:` on Redis): see store-keys.ts. */
export const priceKeys = { route: storeKeys.priceRoute, path: storeKeys.pricePath };

export const MAX_PRICE_MSAT = 2_100_000_000_000_000;

export function parsePrice(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,16}$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return n > 0 && n <= MAX_PRICE_MSAT ? n : undefined;
}

export interface PriceResolverOptions {
  store: Pick<ClaimStore, 'get'>;
  storeTimeoutMs: number;
  cacheMs: number;
  /** ngx_l402 compatibility: the bare request path as a key, outside any prefix. */
  legacyGet?: (key: string) => Promise<string | undefined>;
  onBadValue: (key: string) => void;
}

/** What one cached entry costs, roughly (UTF-16 key and value, plus the Map entry and its record). */
function entryBytes(key: string, value: string | undefined): number {
  return 2 * (key.length + (value?.length ?? 0)) + 96;
}

/**
 * Store reads for the control plane (prices, payee overrides), cached for `cacheMs`. On store trouble the
 * last known value is kept rather than failing (with none, the static price and configured payee apply).
 * Bounded by entries and by bytes (clients choose paths, and a path can be kilobytes long), the oldest
 * dropped first: clearing everything at once would let clients empty the cache, and so the last known
 * values, at will. `bytes()` and `size()` report the cache's own accounting.
 */
export function createCachedReader(cacheMs: number, storeTimeoutMs: number, limits: { maxEntries?: number; maxBytes?: number } = {}) {
  const maxEntries = limits.maxEntries ?? 10_000;
  const maxBytes = limits.maxBytes ?? 4 * 1024 * 1024;
  const cache = new Map<string, { value: string | undefined; at: number; bytes: number }>();
  let total = 0;
  const drop = (key: string) => {
    const e = cache.get(key);
    if (!e) return;
    total -= e.bytes;
    cache.delete(key);
  };
  const put = (key: string, value: string | undefined, at: number) => {
    drop(key);
    const bytes = entryBytes(key, value);
    if (bytes > maxBytes) return;
    cache.set(key, { value, at, bytes });
    total += bytes;
    while (cache.size > maxEntries || total > maxBytes) drop(cache.keys().next().value!);
  };
  const read = async (key: string, get: (k: string) => Promise<string | undefined>): Promise<string | undefined> => {
    const hit = cache.get(key);
    const now = Date.now();
    if (hit && now - hit.at < cacheMs) return hit.value;
    let value: string | undefined;
    try {
      value = await withTimeout(get(key), storeTimeoutMs, 'store lookup');
    } catch {
      // The last known value stands for another cacheMs: a stalled store costs one wait per key and
      // cacheMs, not one per request (several lookups in a row would otherwise outlast the deadlines).
      put(key, hit?.value, Date.now());
      return hit?.value;
    }
    put(key, value, now);
    return value;
  };
  return Object.assign(read, { bytes: () => total, size: () => cache.size });
}

export function createPriceResolver(o: PriceResolverOptions) {
  const read = createCachedReader(o.cacheMs, o.storeTimeoutMs);
  const pick = (key: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    const n = parsePrice(raw);
    if (n === undefined) o.onBadValue(key);
    return n;
  };
  const resolve = async (route: RouteConfig, path: string): Promise<Price> => {
    const get = (k: string) => o.store.get(k);
    // Store keys are text: a path that is not UTF-8 would share its key with the U+FFFD path, so it has none.
    const byPath = hasRawBytes(path) ? undefined : pick(priceKeys.path(path), await read(priceKeys.path(path), get));
    if (byPath !== undefined) return { amountMsat: byPath, source: 'dynamic', pathPriced: true };
    const byRoute = pick(priceKeys.route(route.id), await read(priceKeys.route(route.id), get));
    if (byRoute !== undefined) return { amountMsat: byRoute, source: 'dynamic', pathPriced: false };
    if (o.legacyGet && !hasRawBytes(path)) {
      const legacy = pick(path, await read(`legacy:${path}`, () => o.legacyGet!(ngxL402LegacyKeys.price(path))));
      if (legacy !== undefined) return { amountMsat: legacy, source: 'dynamic', pathPriced: true };
    }
    return { amountMsat: route.amountMsat, source: 'static', pathPriced: false };
  };
  return Object.assign(resolve, { cacheBytes: () => read.bytes() });
}
