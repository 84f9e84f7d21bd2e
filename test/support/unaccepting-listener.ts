// A real TCP listener that never accepts: an HTTP server in a child process with an accept queue of one,
// stopped (SIGSTOP) and its queue filled, so the kernel drops every further SYN, as a firewall DROP or a dead
// host does, with nothing leaving loopback. `resume()` lets it accept and answer again (200 "served").
import { spawn } from 'node:child_process';
import net from 'node:net';
import { withTimeout } from './waits.js';

export interface UnacceptingListener {
  port: number;
  /** Lets the server run again: it accepts its queue and every later connection. */
  resume(): void;
  stop(): Promise<void>;
}

const SERVER = `const s = require('node:http').createServer((q, r) => { q.resume(); r.end('served\\n'); });
s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'));`;

export async function startUnacceptingListener(): Promise<UnacceptingListener> {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const fillers: net.Socket[] = [];
  const stop = async (): Promise<void> => {
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    const port = await withTimeout(
      new Promise<number>((resolve, reject) => {
        child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
        child.once('exit', () => reject(new Error('listener exited')));
      }),
      10_000,
      'unaccepting listener start',
    );
    child.kill('SIGSTOP');
    // Fill the accept queue: connections complete until it is full (backlog + 1 on Linux); the first one whose
    // SYN goes unanswered shows it is full (its SYN stays pending, so the queue stays full).
    let full = false;
    for (let i = 0; i < 16 && !full; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
      full = !(await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 1_000);
        s.once('connect', () => (clearTimeout(t), resolve(true)));
      }));
    }
    if (!full) throw new Error('the listener kept accepting: its accept queue could not be filled');
    return { port, resume: () => void child.kill('SIGCONT'), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
