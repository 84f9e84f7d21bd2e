// Which Redis deployment a store URL names: one server (redis://, rediss://, unix:), a Sentinel-managed
// master (redis+sentinel://[:password@]host:port[,host:port...]/master-name) or a Cluster
// (redis+cluster://[:password@]host:port[,host:port...]).
export type RedisTarget =
  | { kind: 'single'; url: string }
  | { kind: 'sentinel'; sentinels: Array<{ host: string; port: number }>; name: string; password?: string; tls: boolean }
  | { kind: 'cluster'; nodes: Array<{ host: string; port: number }>; password?: string; tls: boolean };

export const REDIS_URL_PATTERN = /^(redis|rediss|unix|redis\+sentinel|rediss\+sentinel|redis\+cluster|rediss\+cluster):/;

function hosts(list: string): Array<{ host: string; port: number }> {
  const all = list.split(',');
  return all.map((hp, i) => {
    const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hp.trim());
    // Never the text itself: a password holding '/' or '@' (unencoded) ends up here, cut at the wrong place.
    if (!m) throw new Error(`host ${i + 1} of ${all.length} is not host:port (percent-encode a '/', '@' or ':' in the password)`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  });
}

/** Throws an Error whose message never contains the password. */
export function parseRedisTarget(url: string): RedisTarget {
  const m = /^(rediss?)\+(sentinel|cluster):\/\/(?:(?:[^:@/]*):([^@/]*)@)?([^/]+)(?:\/([^/?#]*))?$/.exec(url.trim());
  if (!m) {
    if (/\+(sentinel|cluster):/.test(url)) throw new Error('expected redis+sentinel://[:password@]host:port[,host:port]/master or redis+cluster://host:port[,host:port]');
    return { kind: 'single', url };
  }
  const [, scheme, kind, password, list, name] = m as unknown as [string, string, string, string | undefined, string, string | undefined];
  const pw = password ? decodeURIComponent(password) : undefined;
  const tls = scheme === 'rediss';
  if (kind === 'sentinel') {
    if (!name) throw new Error('a Sentinel URL needs the master name as its path: redis+sentinel://host:port/mymaster');
    return { kind: 'sentinel', sentinels: hosts(list), name: decodeURIComponent(name), password: pw, tls };
  }
  return { kind: 'cluster', nodes: hosts(list), password: pw, tls };
}
