// WAL checkpoints run in a worker thread (store/sqlite-checkpointer.ts): the serving connection never stalls
// on one, the WAL still gets checkpointed, and if the worker is gone the serving connection checkpoints again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { BackgroundCheckpointer } from '../../src/store/sqlite-checkpointer.js';
import { sleep } from '../../src/util/timeout.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'l402-ckpt-'));
  dirs.push(d);
  return d;
};

test('the store checkpoints its WAL from a worker thread, not from a commit', async () => {
  const path = join(dir(), 's.db');
  const s = new SqliteStore(path, 'normal', { backgroundCheckpoints: true });
  const c = s.checkpointer!;
  assert.equal(c.running, true);
  // The serving connection no longer checkpoints by itself.
  const probe = new Database(path);
  for (let i = 0; i < 3000; i++) assert.equal(await s.claimOnce(`k${i}`, 600, 'v'.repeat(200)), true);
  for (let i = 0; i < 60 && !(c.last && c.last.checkpointed > 0); i++) await sleep(100, { ref: true });
  assert.ok(c.runs > 0 && c.last!.checkpointed > 0, `the worker checkpointed (${JSON.stringify(c.last)})`);
  assert.equal(probe.prepare('SELECT count(*) AS n FROM kv').get() && (probe.prepare('SELECT count(*) AS n FROM kv').get() as { n: number }).n, 3000);
  probe.close();
  await s.close();
  assert.equal(c.running, false, 'stopped with the store');
  assert.ok(statSync(path).size > 3000 * 200, 'the claims are in the database file');
});

test('a checkpointer that cannot run hands checkpoints back to the serving connection', async () => {
  const path = join(dir(), 's.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  const c = new BackgroundCheckpointer(db, join(dir(), 'missing', 'nothing.db'));
  for (let i = 0; i < 50 && c.running; i++) await sleep(100, { ref: true });
  assert.equal(c.running, false);
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1000);
  await c.stop();
  db.close();
});
