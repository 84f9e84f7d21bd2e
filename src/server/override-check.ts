// A request naming another method or path for the upstream (method-override.ts: X-HTTP-Method-Override and its
// kin, a `_method` parameter, X-Original-URL/X-Rewrite-URL) is refused 400 method_override before any decision,
// behind nginx and standalone alike: this module is that one check for both.
//
// A dry-run route always passes and reports what enforcement would have answered (docs/configuration.md). A
// request naming another method, which an enforced route refuses, passes there too, reported as that 400:
// clients that tunnel methods (older JS clients' POST with X-HTTP-Method-Override, Rails-style `?_method=`) were
// refused on a route the operator only observes. Nothing is opened by it: a dry-run route passes any method
// unpaid, and the override headers never reach the upstream (protect.conf empties them, standalone mode drops
// them). No credential is read, so none is spent. A path named in X-Original-URL or X-Rewrite-URL stays refused
// (behind nginx server.conf refuses it server-wide: it could name another route).
import type { Decision } from '../policy/decide.js';
import type { RouteConfig } from '../policy/route-config.js';
import { isPathHeaderName, methodOverride, namesPathHeader } from '../protocol/method-override.js';
import type { Rendered } from './render.js';

export type DryRunPass = Extract<Decision, { reason: 'dry_run' }>;

/**
 * The override check of one request: nothing (no override named), the refusal to answer, or, on a dry-run route,
 * the pass to decide with. `route`: the route the request's path falls under (looked up only when one is named).
 */
export function overrideCheck(
  method: string,
  rawHeaders: readonly string[],
  target: string | undefined,
  route: () => RouteConfig | undefined,
  grpc: boolean,
): { refuse: Rendered } | { pass: DryRunPass } | undefined {
  const named = methodOverride(method, rawHeaders, target);
  if (named === undefined) return undefined;
  const pass = dryRunOverridePass(route(), rawHeaders);
  return pass ? { pass } : { refuse: methodOverridden(method, named, grpc) };
}

/** The dry-run pass for a request naming another method on `route`, or undefined (refuse it as usual). */
function dryRunOverridePass(route: RouteConfig | undefined, rawHeaders: readonly string[]): DryRunPass | undefined {
  if (!route?.dryRun || namesPathHeader(rawHeaders)) return undefined;
  return { outcome: 'allow', route, reason: 'dry_run', dryRun: { wouldReturn: 400, reason: 'method_override', authState: 'invalid' } };
}

/** The 400 (a gRPC call: status 3) for a request naming another method or path; `name`: the header or parameter. */
export function methodOverridden(method: string, name: string, grpc: boolean): Rendered {
  if (grpc) return { status: 200, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/grpc'], ['grpc-status', '3'], ['grpc-message', encodeURIComponent('method override')]], body: '' };
  const what = isPathHeaderName(name) ? 'a path other than the request\'s own' : `a method other than ${method}`;
  const fix = isPathHeaderName(name) ? 'send the request to that path instead' : 'send the request with that method instead';
  const body = JSON.stringify({ type: 'urn:l402:problem:method-override', title: 'Method override refused', status: 400, reason: 'method_override', detail: `refused: ${name} names ${what}; ${fix}` }) + '\n';
  return { status: 400, headers: [['Cache-Control', 'no-store'], ['Content-Type', 'application/problem+json']], body: method === 'HEAD' ? '' : body };
}
