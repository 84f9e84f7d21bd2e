// Capabilities a route sells (the L402 spec's `<service>_capabilities` caveat) and which requests need which.
// A route with `capabilities: [read, write]` mints that set into every credential it sells; its
// `capability_rules` say which requests of the route need which capability. A holder may append a smaller set
// for a delegate (sets only intersect); the upstream learns the granted set in X-L402-Capabilities.

export interface CapabilityRule {
  capability: string;
  /** Methods this rule applies to (exact, upper case); absent: every method. */
  methods?: string[];
  /** Path prefix this rule applies to, compared ignoring ASCII case (so it can only apply to more); absent: every path. */
  pathPrefix?: string;
}

export interface CapabilityRoute {
  capabilities?: string[];
  capabilityRules?: CapabilityRule[];
}

/** The capabilities a request needs: those of every rule that applies to it (none: the request needs none). */
export function requiredCapabilities(route: CapabilityRoute, path: string, method: string): string[] {
  const rules = route.capabilityRules;
  if (!rules || rules.length === 0) return [];
  const lower = path.toLowerCase();
  const out = new Set<string>();
  for (const r of rules) {
    if (r.methods && !r.methods.includes(method)) continue;
    if (r.pathPrefix !== undefined && !lower.startsWith(r.pathPrefix.toLowerCase())) continue;
    out.add(r.capability);
  }
  return [...out];
}
