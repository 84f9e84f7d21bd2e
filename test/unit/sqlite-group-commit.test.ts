// SQLite claims are group-committed per event-loop turn (sqlite-store.ts). Attacks on that batching: a storm
// of claims on one key from two l402d processes sharing one file (two connections), the same key twice in one
// batch, a batch that meets another process's write lock until busy_timeout (SQLITE_BUSY) or fills the disk
// (SQLITE_FULL), close() while claims are queued, and a commit that held the event loop. A claim answered true
// must be the one row in the file, and no claim may be lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite-store.js';

function tempDb(): { file: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'l402-group-'));
  return { file: join(dir, 'l402.db'), done: () => rmSync(dir, { recursive: true, force: true }) };
}
const turn = () => new Promise((r) => setImmediate(r));

test('storm over two connections on one file: exactly one claim of a key wins, and the file holds its value', async () => {
  const { file, done } = tempDb();
  const a = new SqliteStore(file);
  const b = new SqliteStore(file);
  try {
    const tries: Array<Promise<boolean>> = [];
    const values: string[] = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 20; i++) {
        const v = `claim:${round}:${i}`;
        values.push(v);
        tries.push((i % 2 === 0 ? a : b).claimOnce('claim:l402:storm', 60, v));
      }
      if (round % 3 === 0) await turn();
    }
    const won = await Promise.all(tries);
    assert.equal(won.filter(Boolean).length, 1, 'exactly one claim wins');
    const winner = values[won.indexOf(true)]!;
    assert.equal(await a.get('claim:l402:storm'), winner);
    assert.equal(await b.get('claim:l402:storm'), winner);
  } finally {
    await a.close();
    await b.close();
    done();
  }
});

test('the same key twice in one batch: the first wins, the second is refused', async () => {
  const s = new SqliteStore(':memory:');
  try {
    const [x, y, z] = await Promise.all([s.claimOnce('k', undefined, 'one'), s.claimOnce('k', undefined, 'two'), s.claimOnce('other', undefined, 'three')]);
    assert.deepEqual([x, y, z], [true, false, true]);
    assert.equal(await s.get('k'), 'one');
  } finally {
    await s.close();
  }
});

test("a batch that meets another process's write lock fails as a whole (no claim believed won), and nothing of it is written", async () => {
  const { file, done } = tempDb();
  const s = new SqliteStore(file);
  const other = new Database(file);
  other.pragma('busy_timeout = 0');
  try {
    other.exec('BEGIN IMMEDIATE');
    const got = await Promise.allSettled([s.claimOnce('busy:1', 60, 'mine1'), s.claimOnce('busy:2', 60, 'mine2')]);
    assert.deepEqual(got.map((g) => g.status), ['rejected', 'rejected'], 'a store error, never an answer');
    other.exec('ROLLBACK');
    assert.equal(await s.get('busy:1'), undefined);
    assert.equal(await s.get('busy:2'), undefined);
    // The next claims work (nothing half-committed blocks them).
    assert.deepEqual(await Promise.all([s.claimOnce('busy:1', 60, 'again1'), s.claimOnce('busy:2', 60, 'again2')]), [true, true]);
  } finally {
    other.close();
    await s.close();
    done();
  }
});

test('close() while claims are queued commits them first: the answers given are what the file holds', async () => {
  const { file, done } = tempDb();
  try {
    const s = new SqliteStore(file);
    const pending = [s.claimOnce('c:1', undefined, 'v1'), s.claimOnce('c:2', undefined, 'v2')];
    await s.close();
    assert.deepEqual(await Promise.all(pending), [true, true]);
    const late = await s.claimOnce('c:3', undefined, 'v3').then(
      () => 'answered',
      () => 'refused',
    );
    assert.equal(late, 'refused', 'a claim after close is an error, never an answer');
    const again = new SqliteStore(file);
    try {
      assert.deepEqual([await again.get('c:1'), await again.get('c:2'), await again.get('c:3')], ['v1', 'v2', undefined]);
    } finally {
      await again.close();
    }
  } finally {
    done();
  }
});

test("a claim that waited for another process's write lock is answered after the timers that came due while it held the event loop (a decision's deadline sees it landed late)", async () => {
  const { file, done } = tempDb();
  const s = new SqliteStore(file);
  // Another process (a second l402d on the file, a CLI) holds the write lock for 600 ms, less than busy_timeout.
  const script = `const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.exec('BEGIN IMMEDIATE');
process.stdout.write('locked\\n');
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600);
db.exec('COMMIT');
db.close();`;
  const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => b.toString().includes('locked') && resolve());
      child.once('exit', () => reject(new Error('lock holder exited before locking')));
    });
    const order: string[] = [];
    // A deadline armed before the claim, due long before the lock is let go.
    setTimeout(() => order.push('deadline'), 50);
    const won = await s.claimOnce('held:1', 60, 'mine').then((w) => {
      order.push('claim');
      return w;
    });
    assert.equal(won, true, 'the claim landed once the lock was let go');
    assert.deepEqual(order, ['deadline', 'claim']);
  } finally {
    child.kill('SIGKILL');
    await s.close();
    done();
  }
});

test('a batch that fills the disk midway (SQLITE_FULL) fails as a whole: no claim believed won, nothing of it written', async () => {
  const { file, done } = tempDb();
  const s = new SqliteStore(file);
  // The file may not grow past a few pages: the first claims of the batch fit, the later ones do not.
  const db = (s as unknown as { db: Database.Database }).db;
  db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true })) + 1}`);
  try {
    const big = 'v'.repeat(900);
    const got = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => s.claimOnce(`full:${i}`, 60, `${big}${i}`)));
    assert.deepEqual(new Set(got.map((g) => g.status)), new Set(['rejected']), 'a store error, never an answer');
    db.pragma('max_page_count = 1000000');
    for (let i = 0; i < 12; i++) assert.equal(await s.get(`full:${i}`), undefined);
  } finally {
    await s.close();
    done();
  }
});
