// The Redis ledger against a real redis-server: the same contract as memory and SQLite, seen by two
// connections (two l402d hosts), and its keys in one Cluster slot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Cleanup, requireTool, startRedis } from './harness.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { hex, ledgerContract } from '../unit/ledger-contract.js';

const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
after(() => cleanup.run());

test('Redis ledger: one sale per credential across hosts, hourly earnings, revocations with a generation, one slot', { skip: !redisBin ? 'redis-server not installed' : false }, async () => {
  const redis = cleanup.use(await startRedis());
  const one = new RedisStore(redis.url, 'l402:', 1000);
  const two = new RedisStore(redis.url, 'l402:', 1000);
  cleanup.add(() => one.close());
  cleanup.add(() => two.close());
  await one.ping();
  await two.ping();
  await ledgerContract(one.ledger());
  assert.equal((await two.ledger().recentSales(10)).length, 9);
  assert.equal(await two.ledger().revocationGeneration(), await one.ledger().revocationGeneration());
  assert.equal((await two.ledger().recordSales([{ id: hex('a'), rail: 'lightning', route: '/premium', amountMsat: 1, at: Date.now() }]))[0], false, 'the other host sees it recorded');
  const raw = new Redis(redis.url);
  cleanup.add(() => raw.quit());
  const keys = await raw.keys('l402:{ledger}:*');
  assert.ok(keys.length >= 5, keys.join(' '));
  // Redis Cluster hashes only the first non-empty {...} of a key: the same tag puts every key in one slot.
  assert.deepEqual([...new Set(keys.map((k) => /\{([^}]+)\}/.exec(k)?.[1]))], ['ledger'], 'every ledger key in one slot');
  // Nothing secret is stored: records hold ids, never a macaroon or preimage (there is none to hold).
  const recs = Object.values(await raw.hgetall('l402:{ledger}:sales'));
  assert.ok(recs.every((r) => !/macaroon|preimage/.test(r)));
  // A record that is not ours (a shared Redis) is ignored, not trusted.
  await raw.hset('l402:{ledger}:sales', 'junk', '{"id":1}');
  await raw.zadd('l402:{ledger}:sales:time', Date.now() + 1000, 'junk');
  assert.deepEqual((await one.ledger().recentSales(2)).map((s) => s.id), [hex('d')]);
});
