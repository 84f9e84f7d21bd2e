// Which payee a request pays (both rails): a Lightning address set in the store for its path or route, then
// ngx_l402's bare `lnurl:<path>` key (pricing.legacy_keys), then the route's lnurl_addr; undefined means the
// configured backend. Read like prices (policy/pricing.ts): cached, bounded, the last known value on store trouble.
import { hasRawBytes } from '../protocol/path-bytes.js';
import type { ClaimStore } from './ports.js';
import { createCachedReader } from './pricing.js';
import type { RouteConfig } from './route-config.js';
import { ngxL402LegacyKeys, storeKeys } from './store-keys.js';

export interface PayeeResolverOptions {
  store: Pick<ClaimStore, 'get'>;
  storeTimeoutMs: number;
  cacheMs: number;
  /** Read overrides from the store (pricing.dynamic); off: the route's lnurl_addr only. */
  dynamic: boolean;
  /** ngx_l402 compatibility: its keys, outside any prefix. */
  legacyGet?: (key: string) => Promise<string | undefined>;
}

export function createPayeeResolver(o: PayeeResolverOptions) {
  const read = createCachedReader(o.cacheMs, o.storeTimeoutMs);
  const get = (k: string) => o.store.get(k);
  const resolve = async (route: RouteConfig, path: string): Promise<string | undefined> => {
    let address: string | undefined;
    if (o.dynamic) {
      // Store keys are text: a path that is not UTF-8 would share its key with the U+FFFD path, so it has none.
      const byPath = !hasRawBytes(path);
      address = (byPath ? await read(storeKeys.payeePath(path), get) : undefined) ?? (await read(storeKeys.payeeRoute(route.id), get));
      const legacyGet = o.legacyGet;
      if (!address && legacyGet && byPath) address = await read(`legacy-lnurl:${path}`, () => legacyGet(ngxL402LegacyKeys.payee(path)));
    }
    return address ?? route.lnurlAddr;
  };
  return Object.assign(resolve, { cacheBytes: () => read.bytes() });
}
