/**
 * Integration-test harness: starts REAL nginx and redis-server processes (plus small
 * Node HTTP / gRPC upstreams) on free loopback ports, and tears them down again.
 *
 * Typical use with node:test:
 *
 * ```ts
 * import { test } from 'node:test';
 * import { Cleanup, requireTool, startRedis, startNginx, freePort } from './harness.js';
 *
 * test('something end to end', async (t) => {
 *   if (!requireTool('nginx')) return t.skip('nginx not installed');
 *   const cleanup = new Cleanup();
 *   t.after(() => cleanup.run());          // runs even when the test fails
 *   const redis = cleanup.use(await startRedis());
 *   const port = await freePort();
 *   const nginx = cleanup.use(await startNginx({ http: `server { listen 127.0.0.1:${port}; ... }` }));
 *   ...
 * });
 * ```
 *
 * Guarantees:
 * - Every wait is bounded (default 10 s) and fails with an Error naming what was awaited,
 *   including the tail of the relevant process log (nginx error.log / redis stdout).
 * - Spawn errors (ENOENT, EACCES, ...) reject the start promise instead of crashing the run.
 * - No orphans: every child is tracked; if the test process exits (normally, via
 *   process.exit, or on SIGINT/SIGTERM/SIGHUP) while something is still running, it is
 *   SIGKILLed synchronously (nginx as a whole process group: master + workers) and its
 *   temp dir removed.
 *
 * Set L402_KEEP_TMP=1 to keep nginx/redis temp dirs after stop() for debugging.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync, readFileSync, writeFileSync, rmSync, chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Default bound for every wait in this file. */
export const DEFAULT_TIMEOUT_MS = 10_000;

const KEEP_TMP = process.env.L402_KEEP_TMP === '1' || process.env.L402_KEEP_TMP === 'true';

// ---------------------------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Last `lines` lines of a text (for error messages). */
export function tail(text: string, lines = 40): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * Polls `check` every `intervalMs` until it returns a truthy value (which is returned), or
 * throws `Error("timed out after Nms waiting for <what>")` plus `details()` when given.
 * Errors thrown by `check` count as "not yet" (the last one is quoted in the timeout error).
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; details?: () => string } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      if (err instanceof FatalWaitError) throw err;
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      let msg = `timed out after ${timeoutMs}ms waiting for ${what}`;
      if (lastErr) msg += `\nlast error: ${String((lastErr as Error)?.message ?? lastErr)}`;
      const extra = opts.details?.();
      if (extra) msg += `\n${extra}`;
      throw new Error(msg);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/** Thrown from a waitFor() check to abort the wait immediately (e.g. the process died). */
class FatalWaitError extends Error {}

/** Rejects with a clear timeout error if `p` does not settle within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A LIFO stack of async stoppers. Register everything you start, then call `run()` from
 * `t.after()` / `after()` so it runs even when the test fails. `run()` calls every stopper
 * (last registered first), even if some throw, then throws an AggregateError of failures.
 */
export class Cleanup {
  private readonly stack: Array<{ name: string; fn: () => unknown }> = [];

  /** Registers an arbitrary stopper. */
  add(fn: () => unknown, name = `cleanup #${this.stack.length + 1}`): void {
    this.stack.push({ name, fn });
  }

  /** Registers `resource.stop()` and returns the resource, e.g. `cleanup.use(await startRedis())`. */
  use<R extends { stop(): unknown }>(resource: R, name?: string): R {
    this.add(() => resource.stop(), name);
    return resource;
  }

  /** Runs all stoppers in reverse order; idempotent (the stack is emptied). */
  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.stack.length > 0) {
      const { name, fn } = this.stack.pop()!;
      try {
        await withTimeout(Promise.resolve().then(fn), DEFAULT_TIMEOUT_MS + 5_000, `cleanup step ${name}`);
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
  }
}

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

interface Tracked {
  child: ChildProcess;
  /** kill the whole process group (nginx: master + workers) */
  group: boolean;
  tmpDir?: string;
}

const tracked = new Set<Tracked>();
let hooksInstalled = false;

function killTrackedSync(): void {
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

function installExitHooks(): void {
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
class OutputBuffer {
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
function spawnTracked(
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

const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/** Waits for `child` to exit; resolves false on timeout. */
function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
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
async function terminate(child: ChildProcess, steps: Array<[NodeJS.Signals, number]>, group = false): Promise<void> {
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

// ---------------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------------

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  /** Graceful: SHUTDOWN NOSAVE (then SIGTERM/SIGKILL if needed); waits for exit; removes the tmp dir. */
  stop(): Promise<void>;
  /** SIGKILL (simulates an outage); waits for exit. The handle can be restart()ed. */
  kill(): Promise<void>;
  /** Starts redis again on the same port (stopping it first if it is still running); data is empty. */
  restart(): Promise<void>;
  /** Captured stdout/stderr of the current redis process. */
  log(): string;
  /** Sends a signal to the current redis process (e.g. SIGSTOP / SIGCONT to stall it without closing sockets). */
  signal(sig: NodeJS.Signals): void;
}

/** Sends one inline command over a raw socket; resolves the first reply line (e.g. "+PONG"). */
function redisRaw(port: number, command: string, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const finish = (err: Error | null, line?: string): void => {
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      if (err) reject(err);
      else resolve(line ?? '');
    };
    sock.setTimeout(timeoutMs, () => finish(new Error(`redis ${command}: socket timeout`)));
    sock.once('error', (err) => finish(err));
    sock.once('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (c: Buffer) => {
      buf += c.toString();
      const i = buf.indexOf('\r\n');
      if (i >= 0) finish(null, buf.slice(0, i));
    });
    sock.once('end', () => finish(null, buf));
  });
}

/**
 * Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no --dir <tmp>` on a
 * free port and waits until it answers PING with +PONG.
 */
export async function startRedis(opts: { bin?: string; port?: number; timeoutMs?: number } = {}): Promise<RedisHandle> {
  const bin = opts.bin ?? requireTool('redis-server');
  if (!bin) throw new Error('redis-server not installed (use requireTool("redis-server") to skip)');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'l402-redis-'));
  let output = new OutputBuffer();
  let current: { child: ChildProcess; entry: Tracked } | undefined;

  const launch = async (): Promise<void> => {
    output = new OutputBuffer();
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--daemonize', 'no',
      '--logfile', '',
      '--loglevel', 'notice',
    ];
    const started = await spawnTracked(bin, args, { output, tmpDir: dir });
    current = started;
    const { child } = started;
    await waitFor(
      `redis-server to answer PING on 127.0.0.1:${port}`,
      async () => {
        if (!isRunning(child)) {
          throw new FatalWaitError(
            `redis-server exited early (code ${child.exitCode}, signal ${child.signalCode})\n--- redis output ---\n${tail(output.toString())}`,
          );
        }
        return (await redisRaw(port, 'PING')) === '+PONG';
      },
      { timeoutMs, details: () => `--- redis output ---\n${tail(output.toString())}` },
    ).catch(async (err: unknown) => {
      await terminate(child, [['SIGKILL', 2_000]]).catch(() => {});
      throw err;
    });
  };

  const stopProcess = async (): Promise<void> => {
    const cur = current;
    if (!cur || !isRunning(cur.child)) return;
    // SHUTDOWN NOSAVE closes the connection without a reply; ignore socket errors.
    await redisRaw(port, 'SHUTDOWN NOSAVE').catch(() => {});
    if (!(await waitExit(cur.child, 3_000))) await terminate(cur.child, [['SIGTERM', 3_000], ['SIGKILL', 3_000]]);
  };

  await launch().catch((err: unknown) => {
    if (!KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    throw err;
  });

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    log: () => output.toString(),
    signal(sig) {
      current?.child.kill(sig);
    },
    async stop() {
      // A stalled redis cannot answer SHUTDOWN.
      current?.child.kill('SIGCONT');
      await stopProcess();
      if (current) tracked.delete(current.entry);
      if (!KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      const cur = current;
      if (!cur || !isRunning(cur.child)) return;
      await terminate(cur.child, [['SIGKILL', 3_000]]);
    },
    async restart() {
      await stopProcess();
      if (current) tracked.delete(current.entry);
      await launch();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

export interface NginxOptions {
  /** Text placed inside the http{} block (upstreams, servers, ...). */
  http: string;
  /** worker_processes (default 1). */
  workers?: number;
  /** worker_connections (default 1024): raise it for tests with more connections in flight. */
  workerConnections?: number;
  /**
   * Main-context text placed before events{} (e.g. `load_module /usr/lib/nginx/modules/ngx_http_js_module.so;`).
   * Use ABSOLUTE module paths: relative paths resolve against our temp prefix, not /usr/share/nginx.
   * Debian's /etc/nginx/nginx.conf (and modules-enabled/) is never included.
   */
  mainPrefix?: string;
  /** nginx binary (default: requireTool('nginx')). */
  bin?: string;
  /** Bound for startup waits (default 10 s). */
  timeoutMs?: number;
}

export interface NginxHandle {
  /** Temp prefix dir holding nginx.conf, error.log, access.log, nginx.pid and temp paths. */
  dir: string;
  /** Path of the generated nginx.conf. */
  confPath: string;
  /** PID of the nginx master process. */
  pid: number;
  /** Listen ports parsed from the http text (the ones startup waited for). */
  ports: number[];
  /** Graceful stop: SIGQUIT, SIGTERM after 3 s, SIGKILL (whole group) after 3 more s; waits for exit. */
  stop(): Promise<void>;
  /**
   * SIGHUP (optionally after rewriting the http{} text, which is validated with `nginx -t`
   * first: an invalid config throws and nginx is not signalled). Waits until the master
   * logs the start of new workers (bounded) plus ~200 ms, and until all listen ports accept.
   */
  reload(http?: string): Promise<void>;
  /** Current contents of error.log ('' if none); still available after stop(). */
  errorLog(): string;
  /** Current contents of access.log ('' if none); still available after stop(). */
  accessLog(): string;
}

/** Parses `listen 127.0.0.1:PORT`, `listen PORT`, `listen *:PORT`, `listen [::1]:PORT` (skips unix:). */
export function parseListenAddresses(httpText: string): Array<{ host: string; port: number }> {
  const out: Array<{ host: string; port: number }> = [];
  const seen = new Set<string>();
  // Drop comments first so commented-out listens are not waited for.
  const text = httpText.replace(/#[^\n]*/g, '');
  const re = /\blisten\s+(?:(\[[^\]]+\]|[A-Za-z0-9.*_-]+):)?(\d+)(?=[\s;])/g;
  for (const m of text.matchAll(re)) {
    let host = m[1] ?? '127.0.0.1';
    if (host === '*' || host === '0.0.0.0' || host === 'localhost') host = '127.0.0.1';
    if (host === '[::]') host = '::1';
    if (host.startsWith('[')) host = host.slice(1, -1);
    const port = Number(m[2]);
    const key = `${host}:${port}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ host, port });
    }
  }
  return out;
}

function renderNginxConf(dir: string, opts: NginxOptions, pidFile = 'nginx.pid'): string {
  const p = (name: string): string => join(dir, name);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return `# generated by test/integration/harness.ts
daemon off;
master_process on;
worker_processes ${opts.workers ?? 1};
pid ${p(pidFile)};
lock_file ${p('nginx.lock')};
error_log ${p('error.log')} info;
${
  // As root, nginx's compiled-in default "user nobody nobody" fails on Debian (no "nobody"
  // group); run workers as root so they can also use the 0700 temp dir / unix sockets.
  isRoot ? 'user root root;' : '# not root: "user" directive would be ignored'
}
${opts.mainPrefix ?? ''}
events {
  worker_connections ${opts.workerConnections ?? 1024};
}
http {
  default_type application/octet-stream;
  access_log ${p('access.log')};
  client_body_temp_path ${p('client_body_temp')};
  proxy_temp_path ${p('proxy_temp')};
  fastcgi_temp_path ${p('fastcgi_temp')};
  uwsgi_temp_path ${p('uwsgi_temp')};
  scgi_temp_path ${p('scgi_temp')};

${opts.http}
}
`;
}

/**
 * Runs `nginx -t` on a config; throws with nginx's output if invalid.
 * NB: `nginx -t` WRITES the pid file named in the config (with its own pid), so the file
 * tested must use a different pid path than the running master (see renderNginxConf).
 */
function nginxTest(bin: string, dir: string, confPath: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ['-t', '-p', `${dir}/`, '-c', confPath, '-e', 'stderr'],
      { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (!err) return resolve();
        const conf = readFileSync(confPath, 'utf8')
          .split('\n')
          .map((l, i) => `${String(i + 1).padStart(3)}| ${l}`)
          .join('\n');
        reject(
          new Error(`nginx -t rejected the generated config:\n${`${stdout}${stderr}`.trim() || err.message}\n--- ${confPath} ---\n${conf}`),
        );
      },
    );
  });
}

const readIfExists = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/**
 * Writes a temp prefix dir with its own nginx.conf (never Debian's), validates it with
 * `nginx -t`, starts `nginx -p <dir> -c <dir>/nginx.conf -e <dir>/error.log` in the
 * foreground (daemon off, master + N workers, own process group) and waits until every
 * `listen` port in `opts.http` accepts TCP connections and the pid file exists.
 *
 * Note (nginx 1.22): `listen ... http2` without `ssl` is h2c with prior knowledge ONLY (no
 * HTTP/1.1 on that socket, no Upgrade: h2c). Give a server two listens — one plain for
 * HTTP/1.1 and one `http2` for h2c / gRPC — if both protocols are needed.
 */
export async function startNginx(opts: NginxOptions): Promise<NginxHandle> {
  const bin = opts.bin ?? requireTool('nginx');
  if (!bin) throw new Error('nginx not installed (use requireTool("nginx") to skip)');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const dir = mkdtempSync(join(tmpdir(), 'l402-nginx-'));
  chmodSync(dir, 0o755);
  const confPath = join(dir, 'nginx.conf');
  const errorLogPath = join(dir, 'error.log');
  const accessLogPath = join(dir, 'access.log');
  const pidPath = join(dir, 'nginx.pid');
  let listens = parseListenAddresses(opts.http);
  const output = new OutputBuffer();
  let finalErrorLog: string | undefined;
  let finalAccessLog: string | undefined;
  const errorLog = (): string => finalErrorLog ?? readIfExists(errorLogPath);
  const details = (): string =>
    `--- nginx error.log (${errorLogPath}) ---\n${tail(errorLog())}` +
    (output.toString().trim() ? `\n--- nginx stdout/stderr ---\n${tail(output.toString())}` : '');

  const waitListening = async (child: ChildProcess): Promise<void> => {
    for (const { host, port } of listens) {
      await waitFor(
        `nginx to accept TCP on ${host}:${port}`,
        async () => {
          if (!isRunning(child)) {
            throw new FatalWaitError(
              `nginx exited early (code ${child.exitCode}, signal ${child.signalCode})\n${details()}`,
            );
          }
          return canConnect(port, host);
        },
        { timeoutMs, details },
      );
    }
  };

  let started: { child: ChildProcess; entry: Tracked } | undefined;
  const testConfPath = join(dir, 'nginx.test.conf');
  /** Validates `o` with nginx -t (using a separate pid file), then writes it as nginx.conf. */
  const writeValidatedConf = async (o: NginxOptions): Promise<void> => {
    writeFileSync(testConfPath, renderNginxConf(dir, o, 'nginx.test.pid'));
    await nginxTest(bin, dir, testConfPath, timeoutMs);
    writeFileSync(confPath, renderNginxConf(dir, o));
  };

  try {
    await writeValidatedConf(opts);
    started = await spawnTracked(bin, ['-p', `${dir}/`, '-c', confPath, '-e', errorLogPath], {
      group: true,
      tmpDir: dir,
      output,
      cwd: dir,
    });
    const { child } = started;
    // The master writes its pid file only after ALL listen sockets are bound (nginx retries a
    // busy port 5 x 500 ms, then exits), so "pid file holds our child's pid" means the ports
    // are really ours and not some other process that happens to listen there.
    await waitFor(
      `nginx master to write its pid (${child.pid}) to ${pidPath}`,
      () => {
        if (!isRunning(child)) {
          throw new FatalWaitError(`nginx exited early (code ${child.exitCode}, signal ${child.signalCode})\n${details()}`);
        }
        return readIfExists(pidPath).trim() === String(child.pid);
      },
      { timeoutMs, details },
    );
    await waitListening(child);
  } catch (err) {
    if (started) {
      await terminate(started.child, [['SIGTERM', 2_000], ['SIGKILL', 2_000]], true).catch(() => {});
      tracked.delete(started.entry);
    }
    if (!KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const { child, entry } = started;
  let stopped = false;
  return {
    dir,
    confPath,
    pid: child.pid!,
    get ports() {
      return listens.map((l) => l.port);
    },
    errorLog,
    accessLog: () => finalAccessLog ?? readIfExists(accessLogPath),
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await terminate(child, [['SIGQUIT', 3_000], ['SIGTERM', 3_000], ['SIGKILL', 3_000]], true);
      } finally {
        finalErrorLog = readIfExists(errorLogPath);
        finalAccessLog = readIfExists(accessLogPath);
        tracked.delete(entry);
        if (!KEEP_TMP) rmSync(dir, { recursive: true, force: true });
      }
    },
    async reload(http?: string) {
      if (stopped || !isRunning(child)) throw new Error(`nginx is not running\n${details()}`);
      if (http !== undefined) {
        await writeValidatedConf({ ...opts, http }); // throws (nginx.conf untouched) if invalid
        listens = parseListenAddresses(http);
        opts = { ...opts, http };
      }
      const offset = Buffer.byteLength(readIfExists(errorLogPath));
      child.kill('SIGHUP');
      await waitFor(
        'nginx to start new worker processes after SIGHUP',
        () => {
          const fresh = Buffer.from(readIfExists(errorLogPath)).subarray(offset).toString();
          if (/\[emerg\]/.test(fresh)) throw new FatalWaitError(`nginx reload failed:\n${fresh}`);
          return /start worker process/.test(fresh);
        },
        { timeoutMs, details },
      );
      await sleep(200); // let old workers stop accepting
      await waitListening(child);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Counting HTTP upstream
// ---------------------------------------------------------------------------------------------

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface CountingUpstream {
  port: number;
  /** Number of requests received since start / last reset(). */
  readonly hits: number;
  /** Every request received since start / last reset(). */
  readonly requests: RecordedRequest[];
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A node:http server on 127.0.0.1:<free port> that counts every request and answers
 * 200 `{"ok":true,"path":"<url>"}` — the upstream that unpaid requests must never reach.
 */
export async function startCountingUpstream(): Promise<CountingUpstream> {
  let requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '';
      requests.push({ method: req.method ?? '', url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const body = JSON.stringify({ ok: true, path: url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('counting upstream: unexpected address');
  let stopped = false;
  return {
    port: addr.port,
    get hits() {
      return requests.length;
    },
    get requests() {
      return requests;
    },
    reset() {
      requests = [];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections(); // nginx may hold keep-alive upstream connections
      await withTimeout(closed, DEFAULT_TIMEOUT_MS, 'counting upstream to close');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// gRPC upstream + client (test/integration/fixtures/content.proto)
// ---------------------------------------------------------------------------------------------

export const CONTENT_PROTO_PATH = fileURLToPath(new URL('./fixtures/content.proto', import.meta.url));

export interface ContentRequest {
  id: string;
}
export interface ContentResponse {
  id: string;
  body: string;
}

let contentServiceCtor: grpc.ServiceClientConstructor | undefined;
function contentService(): grpc.ServiceClientConstructor {
  if (!contentServiceCtor) {
    const def = protoLoader.loadSync(CONTENT_PROTO_PATH, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { content: { ContentService: grpc.ServiceClientConstructor } };
    contentServiceCtor = pkg.content.ContentService;
  }
  return contentServiceCtor;
}

export interface GrpcUpstream {
  port: number;
  /** Number of GetContent calls received. */
  readonly calls: number;
  /** The `authorization` metadata value of each call, in order (undefined if absent). */
  readonly authorizations: Array<string | undefined>;
  /** Full metadata of each call, as plain objects. */
  readonly metadata: Array<Record<string, unknown>>;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A real @grpc/grpc-js server (insecure = h2c) on 127.0.0.1:<free port> implementing
 * content.ContentService/GetContent: answers `{ id, body: "content for <id>" }`, counts calls
 * and records the `authorization` metadata. Request id "fail" answers PERMISSION_DENIED
 * (handy for testing error pass-through).
 */
export async function startGrpcUpstream(): Promise<GrpcUpstream> {
  let authorizations: Array<string | undefined> = [];
  let metadata: Array<Record<string, unknown>> = [];
  const server = new grpc.Server();
  server.addService(contentService().service, {
    GetContent: (
      call: grpc.ServerUnaryCall<ContentRequest, ContentResponse>,
      callback: grpc.sendUnaryData<ContentResponse>,
    ) => {
      const auth = call.metadata.get('authorization')[0];
      authorizations.push(auth === undefined ? undefined : String(auth));
      metadata.push(call.metadata.getMap());
      if (call.request.id === 'fail') {
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'fail requested' });
        return;
      }
      callback(null, { id: call.request.id, body: `content for ${call.request.id}` });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let stopped = false;
  return {
    port,
    get calls() {
      return authorizations.length;
    },
    get authorizations() {
      return authorizations;
    },
    get metadata() {
      return metadata;
    },
    reset() {
      authorizations = [];
      metadata = [];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await withTimeout(
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
        2_000,
        'grpc server tryShutdown',
      ).catch(() => server.forceShutdown());
    },
  };
}

/** Error a grpcClient call rejects with (a grpc-js ServiceError). */
export type GrpcError = grpc.ServiceError;

export interface ContentClient {
  /**
   * Unary GetContent. Resolves the response, or rejects with the grpc-js ServiceError
   * (`code`, `details`, `metadata`). `metadata` may be a plain object or a grpc.Metadata.
   */
  getContent(
    req: ContentRequest,
    metadata?: Record<string, string> | grpc.Metadata,
    opts?: { timeoutMs?: number },
  ): Promise<ContentResponse>;
  close(): void;
  /** Alias of close(), so it can be passed to Cleanup.use(). */
  stop(): void;
}

/** An insecure (h2c) ContentService client for 127.0.0.1:<port> — the grpc upstream itself or nginx's http2 listen. */
export function grpcClient(port: number, host = '127.0.0.1'): ContentClient {
  const Ctor = contentService();
  const client = new Ctor(`${host}:${port}`, grpc.credentials.createInsecure());
  const close = (): void => client.close();
  return {
    getContent(req, md, opts) {
      let metadata: grpc.Metadata;
      if (md instanceof grpc.Metadata) metadata = md;
      else {
        metadata = new grpc.Metadata();
        for (const [k, v] of Object.entries(md ?? {})) metadata.set(k, v);
      }
      const deadline = new Date(Date.now() + (opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS));
      return new Promise<ContentResponse>((resolve, reject) => {
        const fn = client.GetContent as unknown as (
          req: ContentRequest,
          md: grpc.Metadata,
          options: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res?: ContentResponse) => void,
        ) => grpc.ClientUnaryCall;
        fn.call(client, req, metadata, { deadline }, (err, res) => (err ? reject(err) : resolve(res as ContentResponse)));
      });
    },
    close,
    stop: close,
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and HTTP/2 (h2c) clients
// ---------------------------------------------------------------------------------------------

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Default 10 s. */
  timeoutMs?: number;
}

export interface SimpleResponse<H> {
  status: number;
  headers: H;
  body: string;
}

/**
 * One HTTP/1.1 request with a fresh non-keep-alive agent (the connection is closed after,
 * so nothing leaks between requests). Rejects on network errors or timeout; any status resolves.
 */
export function http1(url: string, opts: RequestOptions = {}): Promise<SimpleResponse<http.IncomingHttpHeaders>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const agent = new http.Agent({ keepAlive: false, maxSockets: 1 });
  return new Promise<SimpleResponse<http.IncomingHttpHeaders>>((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    if (opts.body !== undefined && headers['content-length'] === undefined) {
      headers['content-length'] = Buffer.byteLength(opts.body);
    }
    const req = http.request(url, { method: opts.method ?? 'GET', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`http1 ${opts.method ?? 'GET'} ${url}: timed out after ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end(opts.body);
  }).finally(() => agent.destroy());
}

/**
 * One HTTP/2 request over cleartext with prior knowledge (h2c), e.g.
 * `http2('http://127.0.0.1:8443', '/x')`. The session is closed afterwards.
 * Response headers include pseudo-headers such as `:status`.
 */
export function http2Request(
  origin: string,
  path: string,
  opts: RequestOptions = {},
): Promise<SimpleResponse<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const method = opts.method ?? 'GET';
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin);
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`http2 ${method} ${origin}${path}: timed out after ${timeoutMs}ms`)), timeoutMs);
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      reject(err);
    }
    session.on('error', fail);
    const req = session.request({ ':method': method, ':path': path, ...opts.headers }, { endStream: opts.body === undefined });
    let headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      headers = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', fail);
    req.on('end', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.close();
      resolve({ status: Number(headers[':status'] ?? 0), headers, body: Buffer.concat(chunks).toString() });
    });
    if (opts.body !== undefined) req.end(opts.body);
  });
}

/** Alias with the brief's name: `http2(origin, path, opts)`. */
export { http2Request as http2 };
