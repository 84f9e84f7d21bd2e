// Moves SQLite's WAL checkpoints off the event loop. A checkpoint copies the WAL back into the database file
// and syncs both to disk; run by whichever connection commits past the WAL's size limit (SQLite's default),
// it stalled that commit, and every request waiting behind it, for ~10 ms at a time here. A worker thread
// with its own connection to the same file checkpoints instead, every second, PASSIVE (never waiting for
// readers or writers), while the serving connection no longer checkpoints by itself. If the worker cannot
// start or dies, the serving connection checkpoints by itself again: the WAL never grows without bound.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { sleep } from '../util/timeout.js';

const SCRIPT = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 0');
const timer = setInterval(() => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage(r);
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message) });
  }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/** SQLite's own default: checkpoint once the WAL holds this many pages. */
const AUTO_CHECKPOINT_PAGES = 1000;

export interface CheckpointReport {
  busy: number;
  log: number;
  checkpointed: number;
}

export class BackgroundCheckpointer {
  private worker?: Worker;
  private stopping = false;
  /** Checkpoints the worker ran (tests and `doctor` can tell it is alive). */
  runs = 0;
  last?: CheckpointReport;

  constructor(
    db: Database.Database,
    path: string,
    everyMs = 1000,
  ) {
    try {
      this.worker = new Worker(SCRIPT, { eval: true, workerData: { module: createRequire(import.meta.url).resolve('better-sqlite3'), path, everyMs } });
    } catch {
      return;
    }
    db.pragma('wal_autocheckpoint = 0');
    this.worker.unref();
    this.worker.on('message', (m: CheckpointReport | { error: string }) => {
      if ('error' in m) return;
      this.runs++;
      this.last = m;
    });
    const fallBack = () => {
      this.worker = undefined;
      if (!this.stopping && db.open) db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    };
    this.worker.once('error', fallBack);
    this.worker.once('exit', fallBack);
  }

  /** Whether checkpoints run in the background now (false: the serving connection checkpoints). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const w = this.worker;
    if (!w) return;
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    w.postMessage('stop');
    await Promise.race([exited, sleep(2000)]);
    await w.terminate();
  }
}
