// `l402d start` checks its Lightning backend (bounded, what doctor checks): a wrong LND macaroon or a closed
// port is logged loudly at start (the gate keeps running by default), and require_backend / --require-backend
// refuses to start with exit 2. The log stays JSON only, also for a backend addressed by IP over TLS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLndPeer, type LndPeer } from '../peers/lnd-peer.js';
import { Cleanup, freePort } from './harness.js';
import { l402dArgs } from './gate-process.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const cleanup = new Cleanup();
let peer: LndPeer;
let dir: string;

before(async () => {
  peer = cleanup.use(await startLndPeer({ alias: 'start-peer' }), 'lnd peer');
  dir = mkdtempSync(join(tmpdir(), 'l402-start-check-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }), 'rm dir');
});
after(() => cleanup.run());

let n = 0;
function config(lightning: Record<string, string>, extra = ''): string {
  const path = join(dir, `l402-${n++}.yaml`);
  const lines = Object.entries(lightning).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`);
  writeFileSync(path, `listen: 127.0.0.1:0\nroot_key: ${TEST_ROOT_KEY}\ndata_dir: ${JSON.stringify(join(dir, 'data'))}\nstore:\n  type: memory\n${extra}lightning:\n${lines.join('\n')}\nroutes:\n  - match: /premium\n    amount_msat: 1000\n`);
  return path;
}

interface Outcome {
  /** Exit code, or undefined when it was still running after logging `l402d started` (then stopped). */
  code: number | null | undefined;
  stdout: string;
  stderr: string;
}

/** Runs `l402d start` until it logs `l402d started` (then stops it with SIGTERM) or exits; bounded. */
function start(args: string[]): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, l402dArgs('start', ...args), { cwd: REPO, env: { ...process.env, L402_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let started = false;
    const bound = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`l402d start neither started nor exited within 30 s\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!started && stdout.includes('"l402d started"')) {
        started = true;
        // Give a late warning (emitted on the next tick) the chance to show up before stopping.
        setTimeout(() => child.kill('SIGTERM'), 300);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(bound);
      resolve({ code: started ? undefined : code, stdout, stderr });
    });
  });
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        assert.fail(`a log line is not JSON: ${l}`);
      }
    });
}

function lnd(extra: Record<string, string> = {}): Record<string, string> {
  return { type: 'lnd', transport: 'grpc', address: peer.grpcAddress, tls_cert_path: peer.certPath, macaroon_path: peer.macaroonPath, ...extra };
}

test('a working LND backend addressed by IP over TLS (gRPC and REST): started, no backend error, only JSON lines on stdout and stderr', async () => {
  assert.match(peer.grpcAddress, /^127\.0\.0\.1:\d+$/, 'the peer is addressed by IP');
  for (const transport of ['grpc', 'rest']) {
    const r = await start(['--config', config(lnd({ transport, rest_address: peer.restAddress }))]);
    assert.equal(r.code, undefined, `started (${transport}): ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /DEP0123|ServerName|DeprecationWarning/, 'no Node deprecation warning');
    const lines = [...jsonLines(r.stdout), ...jsonLines(r.stderr)];
    assert.ok(lines.some((l) => l.msg === 'l402d started'));
    assert.ok(!lines.some((l) => l.event === 'backend_check'), `no backend error (${transport}): ${r.stdout}`);
  }
});

test('wrong LND macaroon: loud error naming the backend and the problem, no secret; still running; --require-backend exits 2', async () => {
  const wrong = randomBytes(64);
  const wrongPath = join(dir, 'wrong.macaroon');
  writeFileSync(wrongPath, wrong);
  peer.knobs.authFailure = 'lnd';
  const cfg = config(lnd({ macaroon_path: wrongPath }));
  const r = await start(['--config', cfg]);
  assert.equal(r.code, undefined, `keeps running by default: ${r.stderr}`);
  const lines = [...jsonLines(r.stdout), ...jsonLines(r.stderr)];
  const err = lines.find((l) => l.event === 'backend_check');
  assert.ok(err, `a backend_check line: ${r.stdout}`);
  assert.equal(err.level, 50, 'pino error level');
  assert.equal(err.backend, 'lnd');
  assert.match(String(err.msg), /LIGHTNING BACKEND NOT USABLE AT START/);
  assert.match(String(err.msg), /rejected the macaroon/);
  assert.ok(String(err.msg).includes(wrongPath), 'names the macaroon file');
  assert.ok(String(err.msg).includes(peer.grpcAddress), 'names the backend address');
  assert.ok(lines.findIndex((l) => l.event === 'backend_check') < lines.findIndex((l) => l.msg === 'l402d started'), 'said before l402d started');
  for (const secret of [wrong.toString('hex'), peer.macaroon.toString('hex'), TEST_ROOT_KEY]) {
    assert.ok(!(r.stdout + r.stderr).toLowerCase().includes(secret.slice(0, 16).toLowerCase()), 'no secret in the log');
  }

  const refused = await start(['--config', cfg, '--require-backend']);
  assert.equal(refused.code, 2, `refuses: ${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, /require_backend: refusing to start: lightning backend lnd .*rejected the macaroon/);
  assert.ok(!refused.stdout.includes('l402d started'));
  assert.ok(!(refused.stdout + refused.stderr).toLowerCase().includes(wrong.toString('hex').slice(0, 16)));
  peer.knobs.authFailure = 'unauthenticated';
});

test('nothing listening at the backend address: loud error at start, bounded; require_backend: true exits 2 with the reason', async () => {
  const port = await freePort();
  const closed = `127.0.0.1:${port}`;
  const r = await start(['--config', config(lnd({ address: closed }))]);
  assert.equal(r.code, undefined, `keeps running by default: ${r.stderr}`);
  const lines = [...jsonLines(r.stdout), ...jsonLines(r.stderr)];
  const err = lines.find((l) => l.event === 'backend_check');
  assert.ok(err, `a backend_check line: ${r.stdout}`);
  assert.match(String(err.msg), new RegExp(`lnd gRPC ${closed.replace(/\./g, '\\.')} is unavailable`));

  const t0 = Date.now();
  const refused = await start(['--config', config(lnd({ address: closed }), 'require_backend: true\n')]);
  assert.equal(refused.code, 2, `refuses: ${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, /require_backend: refusing to start: lightning backend lnd .*unavailable/);
  assert.ok(Date.now() - t0 < 25_000, 'answered within the bound (3 s check, with slack for tsx start-up)');
});

test('require_backend with several workers: the supervisor refuses before forking', async () => {
  const port = await freePort();
  const cfg = config(lnd({ address: `127.0.0.1:${port}` }), `require_backend: true\nworkers: 2\n`).replace(/$/, '');
  // Workers need a shared store.
  const { readFileSync } = await import('node:fs');
  writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('store:\n  type: memory\n', `store:\n  type: sqlite\n  path: ${JSON.stringify(join(dir, 'w.db'))}\n`));
  const refused = await start(['--config', cfg]);
  assert.equal(refused.code, 2, `refuses: ${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, /require_backend: refusing to start/);
  assert.ok(!refused.stdout.includes('supervisor started'));
});
