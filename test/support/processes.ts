// Child processes for tests: free loopback ports, tools on PATH, and tracked children that never outlive the
// test process (SIGKILLed on exit, nginx as a whole process group, temp dirs removed).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import net from 'node:net';

export const KEEP_TMP = process.env.L402_KEEP_TMP === '1' || process.env.L402_KEEP_TMP === 'true';

/** Binds 127.0.0.1:0, reads the port the kernel picked, closes, and returns it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: unexpected server address'));
        return;
      }
      srv.close((err) => (err ? reject(err) : resolve(addr.port)));
    });
  });
}

/** Resolves true if a TCP connection to host:port succeeds (and closes it), false otherwise. */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok: boolean): void => {
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Finds an executable in PATH plus /usr/sbin, /usr/local/sbin, /sbin (Debian puts nginx in
 * /usr/sbin, which is often not in a non-root PATH).
 * - found: returns its absolute path;
 * - missing and `process.env.CI === 'true'`: throws (a missing tool in CI is a failure);
 * - missing otherwise: returns undefined so the caller can `t.skip('nginx not installed')`.
 */
export function requireTool(name: 'nginx' | 'redis-server' | (string & {})): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  if (process.env.CI === 'true') {
    throw new Error(
      `required tool "${name}" not found in PATH or /usr/sbin; integration tests must not be skipped in CI (CI=true). ` +
        `Install it (e.g. apt-get install nginx-light redis-server).`,
    );
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Child process tracking (no orphans)
// ---------------------------------------------------------------------------------------------

export interface Tracked {
  child: ChildProcess;
  /** kill the whole process group (nginx: master + workers) */
  group: boolean;
  tmpDir?: string;
}

export const tracked = new Set<Tracked>();
export let hooksInstalled = false;

export function killTrackedSync(): void {
  for (const t of tracked) {
    const pid = t.child.pid;
    if (pid !== undefined && t.child.exitCode === null && t.child.signalCode === null) {
      try {
        process.kill(t.group ? -pid : pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (t.tmpDir && !KEEP_TMP) {
      try {
        rmSync(t.tmpDir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  }
  tracked.clear();
}

export function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killTrackedSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      killTrackedSync();
      // If nobody else handles this signal, restore the default behaviour (terminate).
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

/** A bounded in-memory log of a child's stdout+stderr. */
export class OutputBuffer {
  private text = '';
  constructor(private readonly max = 64 * 1024) {}
  append(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text;
  }
}

/**
 * Spawns a tracked child. Resolves once the process has actually spawned; rejects on spawn
 * errors (ENOENT etc.).
 */
export function spawnTracked(
  cmd: string,
  args: string[],
  opts: { group?: boolean; tmpDir?: string; output: OutputBuffer; cwd?: string },
): Promise<{ child: ChildProcess; entry: Tracked }> {
  installExitHooks();
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: opts.group ?? false,
        cwd: opts.cwd,
      });
    } catch (err) {
      reject(err);
      return;
    }
    const entry: Tracked = { child, group: opts.group ?? false, tmpDir: opts.tmpDir };
    child.stdout?.on('data', (c: Buffer) => opts.output.append(c));
    child.stderr?.on('data', (c: Buffer) => opts.output.append(c));
    child.once('error', (err) => {
      tracked.delete(entry);
      reject(new Error(`failed to spawn ${cmd}: ${err.message}`, { cause: err }));
    });
    child.once('spawn', () => {
      tracked.add(entry);
      // After spawn, 'error' can still fire (e.g. kill failure); never let it crash the run.
      child.on('error', () => {});
      resolve({ child, entry });
    });
  });
}

export const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/** Waits for `child` to exit; resolves false on timeout. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Sends signals in turn (each followed by a bounded wait) until the child exits. */
export async function terminate(child: ChildProcess, steps: Array<[NodeJS.Signals, number]>, group = false): Promise<void> {
  for (const [sig, ms] of steps) {
    if (!isRunning(child)) return;
    try {
      // Only SIGKILL goes to the whole group; other signals go to the master, which
      // relays them to its workers properly.
      if (group && sig === 'SIGKILL' && child.pid !== undefined) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      // already gone
    }
    if (await waitExit(child, ms)) return;
  }
  if (isRunning(child)) throw new Error(`process ${child.pid} did not exit after ${steps.map((s) => s[0]).join(', ')}`);
}
