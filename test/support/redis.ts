// A real redis-server on a free loopback port, in its own temp dir.
import { type ChildProcess } from 'node:child_process';
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { DEFAULT_TIMEOUT_MS, FatalWaitError, tail, waitFor } from './waits.js';
import { KEEP_TMP, OutputBuffer, type Tracked, freePort, isRunning, requireTool, spawnTracked, terminate, tracked, waitExit } from './processes.js';

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
