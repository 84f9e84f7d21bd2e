// The MPP discovery document (mpp-specs specs/extensions/draft-payment-discovery-00): `GET /openapi.json`,
// an OpenAPI 3.1 document whose paid operations carry `x-payment-info` offers and a 402 response. Generated
// from the same routes as /.well-known/l402-services (manifest.ts). Advisory, as the draft says: the 402
// challenge stays authoritative. Public by design: it describes prices, not secrets.
import type { GateConfig, RouteConfig } from '../config/config.js';
import type { Price } from '../policy/pricing.js';
import { priceInUnit } from '../rails/cashu/payment-request.js';
import { parseRouteMatch } from '../policy/routes.js';
import { listedRoute, sortedJson } from './manifest.js';

export const OPENAPI_PATH = '/openapi.json';

/** One payment offer, exactly the draft's fields (its schema allows no others). */
interface Offer {
  intent: 'charge' | 'session';
  method: string;
  amount: string | null;
  currency?: string;
  description?: string;
  [k: string]: string | null | undefined;
}

/** The schemes a route offers (its `schemes`, policy/schemes.ts), Cashu only where the rail is on. */
export function offeredSchemes(route: RouteConfig, cashuOn: boolean): string[] {
  return route.schemes.filter((s) => s !== 'cashu' || cashuOn);
}

/** The offer for one scheme at a price (msat), or undefined for a scheme this document cannot describe. */
function offerFor(scheme: string, amountMsat: number, route: RouteConfig, cfg: GateConfig): Offer | undefined {
  const access =
    route.access === 'per-request'
      ? 'one request'
      : route.access === 'timed'
        ? `${route.macaroonTimeout} s of access to the route`
        : route.access === 'balance'
          ? `a prepaid balance of ${route.balanceMsat} msat${route.plan ? ` shared by plan ${route.plan}` : ''}, each request drawing its price; an empty balance is topped up on the same credential`
          : 'reusable access to the route';
  switch (scheme) {
    case 'mpp':
      // On a balance route, the Lightning session intent: the amount is the price of one request (the unit),
      // the deposit (depositAmount) is the route's balance_msat; both whole satoshis.
      if (route.access === 'balance' && route.balanceMsat !== undefined) {
        return { intent: 'session', method: 'lightning', amount: String(Math.ceil(amountMsat / 1000)), currency: 'sat', description: `HTTP Payment scheme (MPP), Lightning session: a deposit of ${route.balanceMsat / 1000} sat${route.plan ? ` shared by plan ${route.plan}` : ''}, each request drawing its price; topUp adds a deposit, close refunds the unspent part to the return invoice` };
      }
      // The Payment scheme's Lightning charge method: whole satoshis.
      return { intent: 'charge', method: 'lightning', amount: String(Math.ceil(amountMsat / 1000)), currency: 'sat', description: 'HTTP Payment scheme (MPP), Lightning charge: one request' };
    case 'l402':
      // Not a Payment-scheme method: named "l402" so an MPP client that does not speak it passes it by.
      // A balance route's invoice buys its balance_msat (each request then draws amountMsat).
      return { intent: 'charge', method: 'l402', amount: String(route.access === 'balance' && route.balanceMsat !== undefined ? route.balanceMsat : amountMsat), currency: 'msat', description: `L402: WWW-Authenticate: L402 challenge (macaroon and BOLT11 invoice), paid with Authorization: L402 <macaroon>:<preimage>; ${access}${route.capabilities ? `; capabilities ${route.capabilities.join(', ')}` : ''}` };
    case 'x402':
      return { intent: 'charge', method: 'x402', amount: String(Math.ceil(amountMsat / 1000)), currency: 'sat', description: 'x402 v2 exact on Lightning (PAYMENT-REQUIRED): one request' };
    case 'cashu': {
      const unit = cfg.cashu?.unit ?? 'sat';
      return { intent: 'charge', method: 'cashu', amount: String(priceInUnit(amountMsat, unit)), currency: unit, description: 'Cashu ecash (NUT-24): X-Cashu payment request, paid with X-Cashu: <token>; one request' };
    }
    default:
      return undefined;
  }
}

const OPENAPI_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
/** Operations listed for a route that sells every method. */
const DEFAULT_METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete'];

export async function buildOpenApi(cfg: GateConfig, price: (r: RouteConfig, path: string) => Promise<Price>): Promise<string> {
  const paths: Record<string, Record<string, unknown>> = {};
  const listed: Array<{ route: RouteConfig; path: string; prefix: boolean }> = [];
  for (const route of cfg.routes) {
    if (!listedRoute(route)) continue;
    const m = parseRouteMatch(route.match);
    // A regex has no OpenAPI path; "{" would read as a path template.
    if (m.kind === 'regex' || /[{}]/.test(m.path)) continue;
    listed.push({ route, path: m.path, prefix: m.kind === 'prefix' });
  }
  // All at once: with a stalled store each lookup waits its store_ms.
  const prices = await Promise.all(listed.map((l) => price(l.route, l.path)));
  for (const [i, { route, path, prefix }] of listed.entries()) {
    const offers = offeredSchemes(route, !!cfg.cashu)
      .map((s) => offerFor(s, prices[i]!.amountMsat, route, cfg))
      .filter((o): o is Offer => o !== undefined);
    if (offers.length === 0) continue;
    const methods = route.methods ? route.methods.map((x) => x.toLowerCase()).filter((x) => OPENAPI_METHODS.includes(x)) : DEFAULT_METHODS;
    const ops: Record<string, unknown> = {};
    for (const method of methods) {
      ops[method] = {
        summary: prefix ? `Paid: ${path} and every path under it (route ${route.id})` : `Paid: ${path} (route ${route.id})`,
        'x-payment-info': { offers },
        responses: { '200': { description: 'Paid: the service answers' }, '402': { description: 'Payment Required' } },
      };
    }
    if (Object.keys(ops).length > 0) paths[path] = { ...paths[path], ...ops };
  }
  const m = cfg.manifest;
  return sortedJson({
    openapi: '3.1.0',
    info: { title: m.name ?? cfg.service, version: '1', description: m.description },
    paths: paths as never,
  });
}
