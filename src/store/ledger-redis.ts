// The Redis ledger: every l402d host and the CLI share it. All keys carry one hash tag ({ledger}) so the
// scripts also run on Redis Cluster (one slot). Each script is atomic; its trimming work is bounded per call.
import type { Cluster, Redis } from 'ioredis';
import { bucketOf, EARNINGS_BUCKET_MS, LedgerFullError, PartialSalesError, MAX_REVOCATIONS, MAX_SALES, parseRevocation, parseSale, retentionStart, revocationLive, SALES_RETENTION_DAYS, type EarningsRow, type Ledger, type Revocation, type Sale } from './ledger.js';

// KEYS: sales (id -> record), time (zset id by at), hashes (payment hash -> id), earnings bucket
// ARGV: id, record, at, payment hash or '', field, msat, bucket ttl ms, cutoff ms, max sales
// All or nothing: Redis keeps a script's writes when a later command in it fails, so every command that could
// fail (a key of another type, an argument that is not a number, an earnings field HINCRBY cannot add to) is
// checked before the first write; then nothing after it can fail. (A sale recorded without its earnings would
// be "already recorded" to every retry, and never counted.) Earnings stay within 2^53 msat, exact in Lua's
// numbers and far from Redis's 64-bit limit.
const RECORD_SALE = `
local function kind(k) return redis.call('TYPE', k)['ok'] end
for i, want in ipairs({'hash', 'zset', 'hash', 'hash'}) do
  local t = kind(KEYS[i])
  if t ~= want and t ~= 'none' then return redis.error_reply('ledger key ' .. i .. ' holds a ' .. t) end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local LIMIT = 9007199254740992
local function int(v)
  if type(v) ~= 'string' or #v > 17 or not (v == '0' or string.match(v, '^%-?[1-9]%d*$')) then return nil end
  local n = tonumber(v)
  if n > LIMIT or n < -LIMIT then return nil end
  return n
end
local function num(v)
  local n = tonumber(v)
  if n == nil or n ~= n then return nil end
  return n
end
local msat = int(ARGV[6])
if msat == nil or msat < 0 then return redis.error_reply('the amount is not a whole number of msat') end
if num(ARGV[3]) == nil or int(ARGV[7]) == nil or num(ARGV[8]) == nil or num(ARGV[9]) == nil then return redis.error_reply('a sale argument is not a number') end
for _, f in ipairs({{'m' .. ARGV[5], msat}, {'n' .. ARGV[5], 1}}) do
  local cur = redis.call('HGET', KEYS[4], f[1])
  local n = cur and int(cur) or (cur == false and 0 or nil)
  if n == nil or n + f[2] > LIMIT then return redis.error_reply('an earnings field cannot be added to') end
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[1]) end
redis.call('HINCRBY', KEYS[4], 'm' .. ARGV[5], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'n' .. ARGV[5], 1)
redis.call('PEXPIRE', KEYS[4], ARGV[7])
local drop = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[8], 'LIMIT', 0, 64)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[9])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(over, 64) - 1)) do table.insert(drop, id) end
end
for _, id in ipairs(drop) do
  local rec = redis.call('HGET', KEYS[1], id)
  if rec then
    local ok, v = pcall(cjson.decode, rec)
    if ok and type(v) == 'table' and type(v.paymentHash) == 'string' and redis.call('HGET', KEYS[3], v.paymentHash) == id then redis.call('HDEL', KEYS[3], v.paymentHash) end
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return 1`;

// KEYS: revoked (value -> record), generation. ARGV: value, record, max
// The generation is checked before the first write (INCR could fail after the HSET): a revocation stored without
// its generation moving on would not reach the other processes, which would go on accepting the credential.
const REVOKE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
local g = redis.call('GET', KEYS[2])
if g and (#g > 18 or not (g == '0' or string.match(g, '^%-?[1-9]%d*$'))) then return redis.error_reply('the revocation generation is not a number') end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1`;

// KEYS: revoked, generation: the list and its generation in one atomic read.
const READ_REVOKED = `return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}`;

export class RedisLedger implements Ledger {
  private readonly keys;

  constructor(private readonly redis: Redis | Cluster, prefix: string) {
    const k = (s: string) => `${prefix}{ledger}:${s}`;
    this.keys = { sales: k('sales'), time: k('sales:time'), hashes: k('sales:hash'), earnings: (bucket: number) => k(`earnings:${bucket}`), revoked: k('revoked'), generation: k('revoked:generation') };
  }

  async recordSales(sales: readonly Sale[]): Promise<boolean[]> {
    if (sales.length === 0) return [];
    const ttl = String(SALES_RETENTION_DAYS * 86_400_000 + EARNINGS_BUCKET_MS);
    const cutoff = String(retentionStart());
    // One round trip for the batch; each sale is still its own atomic script, run in order.
    const p = this.redis.pipeline();
    for (const s of sales) {
      p.eval(RECORD_SALE, 4, this.keys.sales, this.keys.time, this.keys.hashes, this.keys.earnings(bucketOf(s.at)), s.id, JSON.stringify(s), String(s.at), s.paymentHash ?? '', JSON.stringify([s.route, s.rail]), String(s.amountMsat), ttl, cutoff, String(MAX_SALES));
    }
    const results = (await p.exec()) ?? [];
    if (results.length !== sales.length) throw new Error('the sales batch was not run');
    const recorded = results.map(([err, r]) => (err ? undefined : Number(r) === 1));
    const failed = results.find(([err]) => err)?.[0];
    // The others were written: say which, so they are counted once and only the failed ones are tried again.
    if (failed) throw new PartialSalesError(failed.message, recorded);
    return recorded as boolean[];
  }

  async recentSales(limit: number): Promise<Sale[]> {
    if (limit <= 0) return [];
    const ids = await this.redis.zrevrange(this.keys.time, 0, limit - 1);
    if (ids.length === 0) return [];
    const recs = await this.redis.hmget(this.keys.sales, ...ids);
    return recs.map((t) => parseSale(t)).filter((s): s is Sale => s !== undefined);
  }

  async findSale(idOrHash: string): Promise<Sale | undefined> {
    const direct = parseSale(await this.redis.hget(this.keys.sales, idOrHash));
    if (direct) return direct;
    const id = await this.redis.hget(this.keys.hashes, idOrHash);
    return id ? parseSale(await this.redis.hget(this.keys.sales, id)) : undefined;
  }

  async earnings(sinceMs: number): Promise<EarningsRow[]> {
    const out: EarningsRow[] = [];
    const first = bucketOf(Math.max(sinceMs + EARNINGS_BUCKET_MS - 1, retentionStart()));
    const buckets: number[] = [];
    for (let b = first; b <= Date.now(); b += EARNINGS_BUCKET_MS) buckets.push(b);
    const p = this.redis.pipeline();
    for (const b of buckets) p.hgetall(this.keys.earnings(b));
    const results = (await p.exec()) ?? [];
    results.forEach(([err, value], i) => {
      if (err) throw err;
      const h = value as Record<string, string>;
      for (const [f, v] of Object.entries(h)) {
        if (!f.startsWith('m')) continue;
        let route: unknown;
        let rail: unknown;
        try {
          [route, rail] = JSON.parse(f.slice(1)) as unknown[];
        } catch {
          continue;
        }
        if (typeof route !== 'string' || typeof rail !== 'string') continue;
        out.push({ bucket: buckets[i]!, route, rail, msat: Number(v), sales: Number(h[`n${f.slice(1)}`] ?? 0) });
      }
    });
    return out;
  }

  async revoke(r: Revocation): Promise<boolean> {
    // Entries past their credential's expiry go first (they could not verify anyway).
    const all = await this.redis.hgetall(this.keys.revoked);
    const stale = Object.entries(all).filter(([, t]) => {
      const x = parseRevocation(t);
      return !x || !revocationLive(x);
    }).map(([v]) => v);
    if (stale.length) await this.redis.hdel(this.keys.revoked, ...stale);
    const n = Number(await this.redis.eval(REVOKE, 2, this.keys.revoked, this.keys.generation, r.value, JSON.stringify(r), String(MAX_REVOCATIONS)));
    if (n === -1) throw new LedgerFullError(`${MAX_REVOCATIONS} revocations are in force already`);
    return n === 1;
  }

  async revocationGeneration(): Promise<string> {
    return (await this.redis.get(this.keys.generation)) ?? '0';
  }

  async revocations(): Promise<{ generation: string; list: Revocation[] }> {
    const [generation, flat] = (await this.redis.eval(READ_REVOKED, 2, this.keys.revoked, this.keys.generation)) as [string, string[]];
    const list: Revocation[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const r = parseRevocation(flat[i + 1]);
      if (r && r.value === flat[i] && revocationLive(r)) list.push(r);
    }
    return { generation: String(generation), list: list.sort((a, b) => b.at - a.at) };
  }
}
