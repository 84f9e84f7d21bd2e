import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { parseRedisTarget } from './redis-url.js';
import { assessRedis, infoField, type DurabilityReport, type RedisNodeSettings } from './redis-durability.js';
import type { Store, WindowCount } from './store.js';
import { creditMark, drawMark } from './balance-ledger.js';
import { RedisLedger } from './ledger-redis.js';

const INCR_WINDOW = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`;

const DEL_IF_VALUE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

// KEEPTTL needs Redis 6: the remaining lifetime is carried over by hand.
const REPLACE_IF_VALUE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('PTTL', KEYS[1])
if t > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', t) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1`;

// Balances (see policy/ports.ts BalanceLedger; the same steps as store/balance-ledger.ts). KEYS[1] the balance,
// KEYS[2] its credit or draw mark: one hash slot (the caller's key carries a {hash tag}), one atomic script.
// All or nothing: Redis keeps a script's writes when a later command fails, so what a later command could refuse
// (a lifetime that is not a whole number of ms, a mark that does not read) is checked before the first write.
// Otherwise a credit without its mark counts again when retried, and a draw without one cannot be given back.
const CREDIT_BALANCE = `local b = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('EXISTS', KEYS[2]) == 1 then return {0, b} end
if ARGV[2] ~= '' and not string.match(ARGV[2], '^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then return redis.error_reply('the balance lifetime is not a whole number of ms') end
b = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PERSIST', KEYS[1]); redis.call('SET', KEYS[2], ARGV[1])
end
return {1, b}`;

const DRAW_BALANCE = `local b = tonumber(redis.call('GET', KEYS[1]) or '0')
local m = redis.call('GET', KEYS[2])
local a = tonumber(ARGV[1])
if not string.match(ARGV[3], '^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then return redis.error_reply('the hold is not a whole number of ms') end
if m and not string.match(m, '^%d+|') then return redis.error_reply('the draw mark does not read') end
if m then
  local drawn = string.match(m, '^[^|]*')
  local had = tonumber(drawn) or 0
  if a <= had then
    redis.call('SET', KEYS[2], drawn .. '|' .. ARGV[2], 'PX', ARGV[3])
    return {1, b}
  end
  if b < a - had then
    redis.call('DEL', KEYS[2])
    if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
    b = redis.call('INCRBY', KEYS[1], drawn)
    return {0, b}
  end
  b = redis.call('DECRBY', KEYS[1], a - had)
  redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
  return {1, b}
end
if b < a then return {0, b} end
b = redis.call('DECRBY', KEYS[1], a)
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return {1, b}`;

const REFUND_DRAW = `local m = redis.call('GET', KEYS[2])
local b = tonumber(redis.call('GET', KEYS[1]) or '0')
if not m then return {0, b} end
if not string.match(m, '^%d+|') then return redis.error_reply('the draw mark does not read') end
local bar = string.find(m, '|', 1, true)
if ARGV[1] ~= '' and string.sub(m, bar + 1) ~= ARGV[1] then return {0, b} end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
b = redis.call('INCRBY', KEYS[1], string.sub(m, 1, bar - 1))
return {1, b}`;

/**
 * Shared state for several l402d processes or hosts. Commands fail fast while disconnected (no offline
 * queue) so callers can answer 503 instead of hanging; ioredis reconnects by itself.
 */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  private readonly redis: Redis | Cluster;

  constructor(url: string, private readonly prefix: string, commandTimeoutMs: number) {
    const common: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: commandTimeoutMs,
      connectTimeout: Math.max(commandTimeoutMs, 1000),
      retryStrategy: (times) => Math.min(times * 100, 1000),
      lazyConnect: false,
      // Commands issued in one turn of the event loop (the claims of concurrent requests) go out in one write.
      enableAutoPipelining: true,
    };
    const t = parseRedisTarget(url);
    if (t.kind === 'single') this.redis = new Redis(url, common);
    else if (t.kind === 'sentinel') {
      this.redis = new Redis({ ...common, sentinels: t.sentinels, name: t.name, password: t.password, sentinelPassword: t.password, tls: t.tls ? {} : undefined, sentinelRetryStrategy: (times) => Math.min(times * 100, 1000) });
    } else {
      this.redis = new Cluster(t.nodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: (times) => Math.min(times * 100, 1000),
        redisOptions: { ...common, password: t.password, tls: t.tls ? {} : undefined },
      });
    }
    // Errors surface on each command; the connection-level event would otherwise be an unhandled 'error'.
    this.redis.on('error', (e: Error) => {
      this.lastError = e.message;
    });
  }

  private lastError = '';

  /** Waits (bounded) for the connection, so a check right after start does not fail spuriously. */
  private async connected(timeoutMs: number): Promise<void> {
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`cannot connect to redis${this.lastError ? `: ${this.lastError}` : ''}`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  async claimOnce(key: string, ttlSecs?: number, value = '1'): Promise<boolean> {
    const r = ttlSecs === undefined ? await this.redis.set(this.k(key), value, 'NX') : await this.redis.set(this.k(key), value, 'EX', Math.max(1, Math.ceil(ttlSecs)), 'NX');
    return r === 'OK';
  }
  async delIfValue(key: string, value: string): Promise<boolean> {
    return Number(await this.redis.eval(DEL_IF_VALUE, 1, this.k(key), value)) === 1;
  }
  async replaceIfValue(key: string, expected: string, next: string): Promise<boolean> {
    return Number(await this.redis.eval(REPLACE_IF_VALUE, 1, this.k(key), expected, next)) === 1;
  }
  async get(key: string): Promise<string | undefined> {
    return (await this.redis.get(this.k(key))) ?? undefined;
  }
  /** Reads a key outside our prefix: ngx_l402's bare-URI price keys. */
  async getUnprefixed(key: string): Promise<string | undefined> {
    return (await this.redis.get(key)) ?? undefined;
  }
  async set(key: string, value: string, ttlSecs?: number): Promise<void> {
    if (ttlSecs === undefined) await this.redis.set(this.k(key), value);
    else await this.redis.set(this.k(key), value, 'EX', Math.max(1, Math.ceil(ttlSecs)));
  }
  async del(key: string): Promise<void> {
    await this.redis.del(this.k(key));
  }
  async incrWindow(key: string, windowSecs: number): Promise<WindowCount> {
    const [n, ttl] = (await this.redis.eval(INCR_WINDOW, 1, this.k(key), String(windowSecs * 1000))) as [number, number];
    return { count: Number(n), resetInSecs: Math.max(1, Math.ceil(Number(ttl) / 1000)) };
  }
  async creditBalance(key: string, amountMsat: number, creditId: string, ttlSecs?: number) {
    const [c, b] = (await this.redis.eval(CREDIT_BALANCE, 2, this.k(key), this.k(creditMark(key, creditId)), String(amountMsat), ttlSecs === undefined ? '' : String(Math.max(1000, Math.ceil(ttlSecs * 1000))))) as [number, number];
    return { credited: Number(c) === 1, balanceMsat: Number(b) };
  }
  async drawBalance(key: string, amountMsat: number, drawId: string, owner: string, holdSecs: number) {
    const [ok, b] = (await this.redis.eval(DRAW_BALANCE, 2, this.k(key), this.k(drawMark(key, drawId)), String(amountMsat), owner, String(Math.max(1000, Math.ceil(holdSecs * 1000))))) as [number, number];
    return { ok: Number(ok) === 1, balanceMsat: Number(b) };
  }
  async refundDraw(key: string, drawId: string, owner?: string) {
    const [r, b] = (await this.redis.eval(REFUND_DRAW, 2, this.k(key), this.k(drawMark(key, drawId)), owner ?? '')) as [number, number];
    return { refunded: Number(r) === 1, balanceMsat: Number(b) };
  }
  async getBalance(key: string): Promise<number> {
    return Number((await this.redis.get(this.k(key))) ?? 0) || 0;
  }
  async addCounters(deltas: ReadonlyArray<readonly [string, number]>): Promise<void> {
    if (deltas.length === 0) return;
    const p = this.redis.pipeline();
    for (const [k, n] of deltas) p.hincrbyfloat(this.k('metrics'), k, n);
    const results = await p.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0];
  }
  async readCounters(): Promise<Array<[string, number]>> {
    return Object.entries(await this.redis.hgetall(this.k('metrics'))).map(([k, v]) => [k, Number(v)]);
  }
  private ledgerInstance?: RedisLedger;
  ledger(): RedisLedger {
    return (this.ledgerInstance ??= new RedisLedger(this.redis, this.prefix));
  }
  async ping(): Promise<void> {
    await this.connected(2000);
    await this.redis.ping();
  }
  /**
   * Whether Redis keeps spent marks: persistence (AOF or RDB) and maxmemory-policy noeviction, on the server
   * we talk to (single, or Sentinel's current master) or on every Cluster master. Rejects when Redis cannot
   * be reached.
   */
  async durability(): Promise<DurabilityReport> {
    await this.connected(2000);
    const nodes = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    if (nodes.length === 0) throw new Error('no redis cluster master reachable');
    return assessRedis(await Promise.all(nodes.map((n) => readSettings(n))));
  }
  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

async function configGet(r: Redis, name: string): Promise<string | undefined> {
  const v = (await r.config('GET', name)) as unknown;
  return Array.isArray(v) && v.length >= 2 ? String(v[1]) : undefined;
}

/** CONFIG GET first; where CONFIG is disabled or renamed (managed services), what INFO says. */
async function readSettings(r: Redis): Promise<RedisNodeSettings> {
  const node = `${r.options.host ?? '?'}:${r.options.port ?? '?'}`;
  // Cluster nodes connect lazily; commands fail fast (no offline queue) until they have.
  if (r.status === 'wait') await r.connect().catch(() => undefined);
  try {
    const [appendonly, save, maxmemoryPolicy] = await Promise.all([configGet(r, 'appendonly'), configGet(r, 'save'), configGet(r, 'maxmemory-policy')]);
    if (appendonly !== undefined && save !== undefined && maxmemoryPolicy !== undefined) return { node, appendonly: appendonly === 'yes', save, maxmemoryPolicy };
    throw new Error('CONFIG GET answered nothing');
  } catch (e) {
    const configError = ((e as Error).message || 'refused').split('\n')[0]!.slice(0, 120);
    const info = await r.info('persistence').catch(() => '');
    const mem = await r.info('memory').catch(() => '');
    const aof = infoField(info, 'aof_enabled');
    return { node, configError, appendonly: aof === undefined ? undefined : aof === '1', maxmemoryPolicy: infoField(mem, 'maxmemory_policy') };
  }
}
