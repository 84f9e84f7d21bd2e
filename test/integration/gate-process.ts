// l402d as a real separate process (for restart, multi-process and CLI tests), run from source via tsx.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { http1, waitFor } from './harness.js';

export const MAIN_TS = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export function l402dArgs(...args: string[]): string[] {
  return ['--import', 'tsx', MAIN_TS, ...args];
}

export interface GateProcess {
  port: number;
  /** Sends a signal (e.g. SIGSTOP / SIGCONT: a stalled, not dead, l402d). */
  signal(sig: NodeJS.Signals): void;
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
    signal: (sig) => child.kill(sig),
    async stop() {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await exited(child);
    },
    async kill() {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}

/**
 * Two l402d processes (each from its own YAML, `yamlFor(i, port)`) behind one nginx with two workers that
 * spreads over both: the shape of a multi-process deployment sharing a store.
 */
export async function twoGatesBehindNginx(
  cleanup: import('./harness.js').Cleanup,
  o: { dir: string; yamlFor: (i: number, port: number) => string; paths: string[]; upstreamPort: number; env?: NodeJS.ProcessEnv },
): Promise<{ origin: string; gates: GateProcess[] }> {
  const { freePort, startNginx } = await import('./harness.js');
  const { writeSnippets } = await import('./gate-fixture.js');
  const { parseConfig } = await import('../../src/config/config.js');
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const ports = [await freePort(), await freePort()];
  const gates: GateProcess[] = [];
  for (const [i, port] of ports.entries()) {
    const file = join(o.dir, `gate-${i}.yaml`);
    writeFileSync(file, o.yamlFor(i, port));
    gates.push(cleanup.use(await startGateProcess(file, port, o.env)));
  }
  const snippets = join(o.dir, 'snippets');
  writeSnippets(parseConfig(`lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), snippets);
  const ng = await freePort();
  const locations = o.paths.map((p) => `location ${p} { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${o.upstreamPort}; }`).join('\n');
  cleanup.use(
    await startNginx({
      workers: 2,
      http: `${withUpstream(snippets, `server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; keepalive 16;`)}
      server { listen 127.0.0.1:${ng}; include ${snippets}/server.conf;
        ${locations} }`,
    }),
  );
  return { origin: `http://127.0.0.1:${ng}`, gates };
}

/** upstream.conf with its own `upstream l402d` servers (the auth cache zone and the credential map stay). */
export function withUpstream(snippets: string, servers: string): string {
  return readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/upstream l402d \{[^}]*\}/, `upstream l402d { ${servers} }`);
}
