// l402d as a real separate process (for restart, multi-process and CLI tests), run from source via tsx.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { http1, waitFor } from './harness.js';

export const MAIN_TS = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export function l402dArgs(...args: string[]): string[] {
  return ['--import', 'tsx', MAIN_TS, ...args];
}

export interface GateProcess {
  port: number;
  output(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

export async function startGateProcess(configPath: string, port: number, env: NodeJS.ProcessEnv = {}): Promise<GateProcess> {
  const child = spawn(process.execPath, l402dArgs('start', '--config', configPath), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor(
    `l402d on port ${port}`,
    async () => {
      if (child.exitCode !== null) return Promise.reject(new Error(`exited early`));
      return (await http1(`http://127.0.0.1:${port}/_l402/health`)).status === 200;
    },
    { timeoutMs: 15_000, details: () => out },
  );
  return {
    port,
    output: () => out,
    async stop() {
      child.kill('SIGTERM');
      await exited(child);
    },
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}
