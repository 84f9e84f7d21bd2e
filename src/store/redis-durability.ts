// Spent marks (single-use claims, Cashu proof claims) live in Redis. A Redis that forgets them (restarted
// without persistence) or throws them away under memory pressure (an evicting maxmemory-policy) lets a spent
// credential pass again. l402d cannot fix that from the outside: it checks, says so loudly, and can refuse
// to start (store.require_persistence).

/** What one Redis server says about itself. `undefined`: could not be read (CONFIG disabled, no INFO). */
export interface RedisNodeSettings {
  /** The node's address as we reach it (never its password). */
  node: string;
  /** CONFIG GET appendonly, or INFO persistence aof_enabled. */
  appendonly?: boolean;
  /** CONFIG GET save: the RDB snapshot rules ("" = none). INFO does not say. */
  save?: string;
  /** CONFIG GET maxmemory-policy, or INFO memory maxmemory_policy. */
  maxmemoryPolicy?: string;
  /** Why CONFIG could not be used (managed services disable or rename it). */
  configError?: string;
}

export interface DurabilityReport {
  /** Definite problems: a spent credential can pass again. Each names the setting and the fix. */
  problems: string[];
  /** Settings that could not be checked (each says which and why). */
  unchecked: string[];
}

export function assessRedis(nodes: readonly RedisNodeSettings[]): DurabilityReport {
  const problems: string[] = [];
  const unchecked: string[] = [];
  for (const n of nodes) {
    const at = nodes.length > 1 ? ` on ${n.node}` : '';
    const why = n.configError ? ` (CONFIG unavailable: ${n.configError})` : '';
    if (n.appendonly === true || (n.save !== undefined && n.save.trim() !== '')) {
      // AOF, or RDB snapshots (which lose the writes since the last snapshot on a crash: AOF is better).
    } else if (n.appendonly === false && n.save !== undefined) {
      problems.push(
        `redis${at} does not persist (appendonly no, save ""): a restart forgets every spent credential, which then passes again; fix: appendonly yes (CONFIG SET appendonly yes, and in redis.conf)`,
      );
    } else {
      unchecked.push(`redis${at} persistence could not be checked${why}${n.appendonly === false ? '; AOF is off, RDB snapshots unknown' : ''}: make sure AOF (appendonly yes) or RDB snapshots are on`);
    }
    if (n.maxmemoryPolicy === undefined) {
      unchecked.push(`redis${at} maxmemory-policy could not be checked${why}: it must be noeviction`);
    } else if (n.maxmemoryPolicy !== 'noeviction') {
      problems.push(
        `redis${at} maxmemory-policy is ${n.maxmemoryPolicy}: under memory pressure Redis evicts spent marks, which then pass again; fix: maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)`,
      );
    }
  }
  return { problems, unchecked };
}

/** `field:value` lines of an INFO section. */
export function infoField(info: string, field: string): string | undefined {
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return m ? m[1]!.trim() : undefined;
}
