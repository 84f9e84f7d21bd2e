// l402d's Redis store on a real redis-server of its own, with a plain client beside it that reads and plants
// keys as another writer sharing that Redis would.
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis-store.js';
import { startRedis } from './redis.js';
import type { Cleanup } from './waits.js';

/** A fresh redis-server, a RedisStore on it (prefix `l402:`, answered PING), and a raw ioredis client; all stopped at cleanup. */
export async function startRedisStore(cleanup: Cleanup): Promise<{ store: RedisStore; raw: Redis }> {
  const redis = cleanup.use(await startRedis());
  const store = new RedisStore(redis.url, 'l402:', 1000);
  cleanup.add(() => store.close());
  await store.ping();
  const raw = new Redis(redis.url);
  cleanup.add(() => raw.quit());
  return { store, raw };
}
