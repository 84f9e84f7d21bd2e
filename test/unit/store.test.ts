// One behaviour for every Store: memory, SQLite and a real redis-server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { Cleanup, requireTool, startRedis } from '../integration/harness.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const makers: Array<[string, () => Promise<Store>, string | false]> = [
  ['memory', async () => new MemoryStore(), false],
  [
    'sqlite',
    async () => {
      const d = mkdtempSync(join(tmpdir(), 'l402-store-'));
      cleanup.add(() => rmSync(d, { recursive: true, force: true }));
      return new SqliteStore(join(d, 's.db'), 'full');
    },
    false,
  ],
  [
    'redis',
    async () => {
      const r = cleanup.use(await startRedis());
      const s = new RedisStore(r.url, 'test:', 1000);
      await s.ping();
      return s;
    },
    requireTool('redis-server') ? false : 'redis-server not installed',
  ],
];

for (const [name, make, skip] of makers) {
  test(`${name} store: claimOnce, TTLs, get/set/del, fixed windows`, { skip }, async () => {
    const s = await make();
    cleanup.add(() => s.close());
    assert.equal(await s.claimOnce('a'), true);
    assert.equal(await s.claimOnce('a'), false);
    const racers = await Promise.all(Array.from({ length: 25 }, () => s.claimOnce('race')));
    assert.equal(racers.filter(Boolean).length, 1);
    assert.equal(await s.claimOnce('ttl', 1), true);
    assert.equal(await s.claimOnce('ttl', 1), false);
    await s.set('k', 'v');
    assert.equal(await s.get('k'), 'v');
    await s.del('k');
    assert.equal(await s.get('k'), undefined);
    await s.set('short', 'x', 1);
    const w1 = await s.incrWindow('w', 1);
    const w2 = await s.incrWindow('w', 1);
    assert.deepEqual([w1.count, w2.count], [1, 2]);
    assert.ok(w2.resetInSecs >= 1 && w2.resetInSecs <= 1);
    await sleep(1100);
    assert.equal(await s.claimOnce('ttl', 1), true, 'claim reopens only after its TTL');
    assert.equal(await s.get('short'), undefined);
    assert.equal((await s.incrWindow('w', 1)).count, 1, 'window resets');
    await s.addCounters([['a{x="1"}', 2], ['b', 0.5]]);
    await s.addCounters([['a{x="1"}', 3]]);
    assert.deepEqual(new Map(await s.readCounters()), new Map([['a{x="1"}', 5], ['b', 0.5]]));
    await s.ping();
  });

  test(`${name} store: operations issued after a claim, without waiting for it, never overtake it`, { skip }, async () => {
    const s = await make();
    cleanup.add(() => s.close());
    // Claims of one event-loop turn may be committed together (SQLite): each still gets its own answer, and
    // a read, a give-back or another write issued right after sees the claim already made.
    const claims = [s.claimOnce('o1', 60, 'claim:a'), s.claimOnce('o1', 60, 'claim:b'), s.claimOnce('o2', 60, 'claim:c')];
    const read = s.get('o1');
    const giveBack = s.delIfValue('o2', 'claim:c');
    const again = s.claimOnce('o2', 60, 'claim:d');
    assert.deepEqual(await Promise.all(claims), [true, false, true]);
    assert.equal(await read, 'claim:a');
    assert.equal(await giveBack, true);
    assert.equal(await again, true, 'claimed again after the give-back');
    assert.equal(await s.get('o2'), 'claim:d');
  });

  test(`${name} store: a claim written with a value is deleted only by its owner`, { skip }, async () => {
    const s = await make();
    cleanup.add(() => s.close());
    assert.equal(await s.claimOnce('c', 60, 'claim:mine'), true);
    assert.equal(await s.get('c'), 'claim:mine');
    assert.equal(await s.delIfValue('c', 'claim:theirs'), false);
    assert.equal(await s.claimOnce('c', 60, 'claim:theirs'), false, 'still claimed');
    assert.equal(await s.delIfValue('c', 'claim:mine'), true);
    assert.equal(await s.delIfValue('c', 'claim:mine'), false, 'once');
    assert.equal(await s.claimOnce('c', 60, 'claim:next'), true);
    assert.equal(await s.delIfValue('never', 'x'), false);
  });

  test(`${name} store: a claim is taken over only from the value it holds, keeping its expiry`, { skip }, async () => {
    const s = await make();
    cleanup.add(() => s.close());
    assert.equal(await s.claimOnce('t', 1, 'claim:a'), true);
    assert.equal(await s.replaceIfValue('t', 'claim:x', 'claim:b'), false);
    assert.equal(await s.get('t'), 'claim:a');
    assert.equal(await s.replaceIfValue('t', 'claim:a', 'claim:b'), true);
    assert.equal(await s.get('t'), 'claim:b');
    assert.equal(await s.delIfValue('t', 'claim:a'), false, 'the old owner cannot delete it now');
    assert.equal(await s.replaceIfValue('never', 'claim:a', 'claim:b'), false);
    assert.equal(await s.get('never'), undefined, 'nothing created');
    await sleep(1_100);
    assert.equal(await s.get('t'), undefined, 'the expiry was kept');
    assert.equal(await s.replaceIfValue('t', 'claim:b', 'claim:c'), false, 'an expired claim is not revived');
    assert.equal(await s.claimOnce('u', undefined, 'claim:a'), true);
    assert.equal(await s.replaceIfValue('u', 'claim:a', 'claim:b'), true);
    assert.equal(await s.get('u'), 'claim:b', 'no expiry stays none');
  });
}
