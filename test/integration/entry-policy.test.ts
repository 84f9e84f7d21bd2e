// Every command that starts a gate installs the process policy (src/server/process-policy.ts) once: an unhandled
// rejection is logged (once, by kind, never its message) and the gate keeps serving; an uncaught exception is
// logged and ends the process with EXIT_UNCAUGHT, for a supervisor to start a fresh one. Real processes:
// `l402d start` and `l402d quickstart` (the README's `npm start`), each with a module preloaded that makes a
// rejection on its first SIGUSR2 and throws out of a callback on its second.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, waitFor } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';
import { EXIT_UNCAUGHT } from '../../src/server/process-policy.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const REJECTED = 'injected-rejection-secret-4d1f';
const THROWN = 'injected-exception-secret-9b2c';

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-entry-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function injector(dir: string): string {
  const file = join(dir, 'inject.mjs');
  writeFileSync(file, `let n = 0;
process.on('SIGUSR2', () => {
  n++;
  if (n === 1) Promise.reject(new Error(${JSON.stringify(REJECTED)}));
  else setImmediate(() => { throw new Error(${JSON.stringify(THROWN)}); });
});
`);
  return file;
}

interface Run {
  child: ChildProcess;
  out(): string;
  exit: Promise<number | null>;
}

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Run {
  const inject = injector(cwd);
  const argv = l402dArgs(...args).map((a) => (a === 'tsx' ? import.meta.resolve('tsx') : a));
  const child = spawn(process.execPath, ['--import', inject, ...argv], { cwd, env: { ...process.env, L402_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));
  cleanup.add(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exit;
    }
  });
  return { child, out: () => out, exit };
}

const count = (s: string, word: string) => s.split(word).length - 1;

/** The policy, seen from outside: a rejection logged once and served on; an exception logged, exit 70. */
async function checkPolicy(r: Run, healthUrl: string): Promise<void> {
  const healthy = async () => (await http1(healthUrl)).status === 200;
  await waitFor('the gate answering', async () => {
    if (r.child.exitCode !== null) throw new Error(`exited early (${r.child.exitCode}): ${r.out()}`);
    return healthy();
  }, { timeoutMs: 20_000, details: r.out });
  r.child.kill('SIGUSR2');
  await waitFor('the logged rejection', () => r.out().includes('unhandled_rejection') || r.child.exitCode !== null, { details: r.out });
  assert.equal(r.child.exitCode, null, `the process ended on an unhandled rejection: ${r.out()}`);
  assert.equal(await healthy(), true, r.out());
  assert.equal(count(r.out(), '"unhandled_rejection"'), 1, `logged once (the policy installed once): ${r.out()}`);
  r.child.kill('SIGUSR2');
  const code = await r.exit;
  assert.equal(code, EXIT_UNCAUGHT, r.out());
  assert.equal(count(r.out(), '"uncaught_exception"'), 1, r.out());
  assert.doesNotMatch(r.out(), new RegExp(`${REJECTED}|${THROWN}`), 'the errors\' messages are never logged');
}

test('l402d start (one process) installs the process policy', async () => {
  const dir = tmp();
  const port = await freePort();
  const file = join(dir, 'l402.yaml');
  writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nlog: { level: info }\nroutes: [{ match: /premium, amount_msat: 1000 }]\n`);
  await checkPolicy(run(['start', '--config', file], dir), `http://127.0.0.1:${port}/_l402/health`);
});

test('l402d quickstart without nginx (l402d as the reverse proxy) installs the process policy', async () => {
  const dir = tmp();
  const port = await freePort();
  const upstreamPort = await freePort();
  await checkPolicy(run(['quickstart', '--port', String(port), '--upstream-port', String(upstreamPort)], dir, { L402_NO_NGINX: '1' }), `http://127.0.0.1:${port}/_l402/health`);
});

// With nginx, the quick start's l402d listens on the embedded defaults' fixed 127.0.0.1:8402: run only when it is free.
const nginxSkip = !requireTool('nginx') ? 'nginx not installed' : false;
test('l402d quickstart with nginx installs the process policy, and its exit takes the nginx it started down with it', { skip: nginxSkip }, async (t) => {
  const probe = await http1('http://127.0.0.1:8402/_l402/health', { timeoutMs: 2000 }).then(() => true, () => false);
  if (probe) return t.skip('127.0.0.1:8402 is in use');
  const dir = tmp();
  // An nginx the quick start left behind (it shares this test's output pipes) is ended by its pid file.
  cleanup.add(() => {
    try {
      process.kill(Number(readFileSync(join(dir, 'data', 'nginx', 'nginx.pid'), 'utf8').trim()), 'SIGTERM');
    } catch {
      // none left
    }
  });
  const port = await freePort();
  const upstreamPort = await freePort();
  const r = run(['quickstart', '--port', String(port), '--upstream-port', String(upstreamPort)], dir);
  await waitFor('nginx in front', async () => {
    if (r.child.exitCode !== null) throw new Error(`exited early (${r.child.exitCode}): ${r.out()}`);
    return (await http1(`http://127.0.0.1:${port}/premium`, { headers: { accept: 'application/json' } }).then((x) => x.status, () => 0)) === 402;
  }, { timeoutMs: 20_000, details: r.out });
  await checkPolicy(r, 'http://127.0.0.1:8402/_l402/health');
  // nginx went with it: nothing answers on the demo's port.
  await waitFor('nginx gone', async () => http1(`http://127.0.0.1:${port}/`, { timeoutMs: 2000 }).then(() => false, () => true), { details: r.out });
});
