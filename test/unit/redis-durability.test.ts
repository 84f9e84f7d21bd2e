// Which Redis settings keep spent marks: the assessment behind the start-up warning and `l402d doctor`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assessRedis, infoField } from '../../src/store/redis-durability.js';

test('no persistence and an evicting policy are problems; each names the setting and the fix', () => {
  const r = assessRedis([{ node: 'a:1', appendonly: false, save: '', maxmemoryPolicy: 'allkeys-lru' }]);
  assert.equal(r.problems.length, 2);
  assert.match(r.problems[0]!, /does not persist \(appendonly no, save ""\).*fix: appendonly yes/);
  assert.match(r.problems[1]!, /maxmemory-policy is allkeys-lru.*fix: maxmemory-policy noeviction/);
  assert.deepEqual(r.unchecked, []);
  // volatile-* policies evict keys with a TTL: spent marks of expiring credentials have one.
  for (const p of ['volatile-lru', 'volatile-ttl', 'allkeys-random', 'volatile-lfu']) assert.equal(assessRedis([{ node: 'a', appendonly: true, save: '', maxmemoryPolicy: p }]).problems.length, 1, p);
});

test('AOF or RDB snapshots with noeviction: nothing to say', () => {
  assert.deepEqual(assessRedis([{ node: 'a', appendonly: true, save: '', maxmemoryPolicy: 'noeviction' }]), { problems: [], unchecked: [] });
  assert.deepEqual(assessRedis([{ node: 'a', appendonly: false, save: '3600 1 300 100', maxmemoryPolicy: 'noeviction' }]), { problems: [], unchecked: [] });
});

test('settings that could not be read are said to be unchecked, never assumed fine', () => {
  const r = assessRedis([{ node: 'a', configError: 'ERR unknown command', appendonly: false, maxmemoryPolicy: undefined }]);
  assert.deepEqual(r.problems, []);
  assert.equal(r.unchecked.length, 2);
  assert.match(r.unchecked[0]!, /persistence could not be checked \(CONFIG unavailable: ERR unknown command\); AOF is off, RDB snapshots unknown/);
  assert.match(r.unchecked[1]!, /maxmemory-policy could not be checked/);
  assert.equal(assessRedis([{ node: 'a', configError: 'x', appendonly: true, maxmemoryPolicy: 'noeviction' }]).unchecked.length, 0);
});

test('cluster: every master is checked and named', () => {
  const r = assessRedis([
    { node: '10.0.0.1:6379', appendonly: true, save: '', maxmemoryPolicy: 'noeviction' },
    { node: '10.0.0.2:6379', appendonly: false, save: '', maxmemoryPolicy: 'noeviction' },
  ]);
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0]!, /on 10\.0\.0\.2:6379/);
});

test('INFO fields', () => {
  const info = '# Persistence\r\nloading:0\r\naof_enabled:1\r\n';
  assert.equal(infoField(info, 'aof_enabled'), '1');
  assert.equal(infoField(info, 'maxmemory_policy'), undefined);
});
