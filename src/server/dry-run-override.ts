// A dry-run route always passes and reports what enforcement would have answered (docs/configuration.md). A
// request naming another method for the upstream (method-override.ts: X-HTTP-Method-Override and its kin, a
// `_method` parameter), which an enforced route refuses with 400 method_override, passes there too, reported as
// that 400: clients that tunnel methods (older JS clients' POST with X-HTTP-Method-Override, Rails-style
// `?_method=`) were refused on a route the operator only observes. Nothing is opened by it: a dry-run route
// passes any method unpaid, and the override headers never reach the upstream (protect.conf empties them,
// standalone mode drops them). No credential is read, so none is spent. A path named in X-Original-URL or
// X-Rewrite-URL stays refused (behind nginx server.conf refuses it server-wide: it could name another route).
import type { Decision } from '../policy/decide.js';
import type { RouteConfig } from '../policy/route-config.js';
import { namesPathHeader } from '../protocol/method-override.js';

export type DryRunPass = Extract<Decision, { reason: 'dry_run' }>;

/** The dry-run pass for a request naming another method on `route`, or undefined (refuse it as usual). */
export function dryRunOverridePass(route: RouteConfig | undefined, rawHeaders: readonly string[]): DryRunPass | undefined {
  if (!route?.dryRun || namesPathHeader(rawHeaders)) return undefined;
  return { outcome: 'allow', route, reason: 'dry_run', dryRun: { wouldReturn: 400, reason: 'method_override', authState: 'invalid' } };
}
