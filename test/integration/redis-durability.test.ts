// Spent marks live in Redis: a Redis that does not persist (a restart forgets them) or that evicts keys under
// memory pressure lets a spent credential pass again. Against real redis-server: l402d's start log and
// `l402d doctor` say so (naming the setting and the fix), stay quiet on a Redis that persists with
// noeviction, say "could not be checked" where CONFIG is disabled, and store.require_persistence refuses to start.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Cleanup, freePort, requireTool, startRedis, waitFor } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { doctor } from '../../src/cli/doctor.js';
import { createLogger } from '../../src/util/log.js';

const redisBin = requireTool('redis-server');
const skip = !redisBin ? 'redis-server not installed' : false;

const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (c: Buffer) => done(c.toString().includes('+PONG')));
  });
}

/** redis-server with the given settings on a free loopback port; returns its URL. */
async function redisWith(args: string[]): Promise<string> {
  const dir = tmp('l402-redis-dur-');
  const port = await freePort();
  const child = spawn(redisBin!, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--logfile', '', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  cleanup.add(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
  }, `redis ${args.join(' ')}`);
  await waitFor('redis to answer PING', async () => {
    if (child.exitCode !== null) throw new Error(`redis exited: ${out.slice(-500)}`);
    return ping(port);
  });
  return `redis://127.0.0.1:${port}`;
}

function config(url: string, extra = '') {
  const dir = tmp('l402-dur-gate-');
  const yaml = `listen: 127.0.0.1:0\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${url}"${extra} }\nlog: { level: info }\n${ROUTES_YAML}`;
  return { cfg: parseConfig(yaml, { env: {} }), yaml, dir };
}

/** Starts l402d; returns its log lines (the gate is closed again). */
async function startLog(url: string, extra = ''): Promise<string> {
  const lines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => lines.push(b.toString()));
  const gate = await startGate(config(url, extra).cfg, { log: createLogger('info', sink) });
  await gate.close();
  return lines.join('');
}

const GOOD = ['--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction'];

test('a Redis without persistence: the start log and doctor say so (setting and fix); require_persistence refuses to start', { skip }, async () => {
  const redis = cleanup.use(await startRedis()); // --save '' --appendonly no
  const log = await startLog(redis.url);
  assert.match(log, /SPENT CREDENTIALS AT RISK: redis does not persist \(appendonly no, save \\?"\\?"\).*fix: appendonly yes/);
  assert.match(log, /"level":"?(error|50)/);
  const checks = await doctor(config(redis.url).cfg, 'test');
  const bad = checks.filter((c) => c.what === 'redis durability' && !c.ok);
  assert.equal(bad.length, 1, JSON.stringify(checks));
  assert.match(bad[0]!.detail, /does not persist.*appendonly yes/);

  await assert.rejects(startLog(redis.url, ', require_persistence: true'), (e: Error) => e instanceof ConfigError && /require_persistence: refusing to start: .*does not persist/.test(e.message));
  // The CLI: doctor fails (exit 1) and names the problem.
  const { yaml, dir } = config(redis.url);
  writeFileSync(join(dir, 'l402.yaml'), yaml);
  const r = spawnSync(process.execPath, l402dArgs('doctor', '--config', join(dir, 'l402.yaml')), { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /redis durability.*does not persist/);
  // `l402d start` refuses (exit 2, the reason on stderr), also with several workers: the supervisor checks
  // before forking, so no worker is started and replaced in a loop.
  for (const workers of [1, 2]) {
    const file = join(dir, `strict-${workers}.yaml`);
    writeFileSync(file, `workers: ${workers}
${config(redis.url, ', require_persistence: true').yaml}`);
    const s = spawnSync(process.execPath, l402dArgs('start', '--config', file), { encoding: 'utf8', timeout: 30_000 });
    assert.equal(s.status, 2, `workers ${workers}: ${s.stdout}${s.stderr}`);
    assert.match(s.stderr, /store\.require_persistence: refusing to start: .*does not persist/);
  }
});

test('a Redis that evicts (maxmemory-policy allkeys-lru): warned at start and by doctor; refused with require_persistence', { skip }, async () => {
  const url = await redisWith(['--appendonly', 'yes', '--save', '', '--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
  const log = await startLog(url);
  assert.match(log, /maxmemory-policy is allkeys-lru.*fix: maxmemory-policy noeviction/);
  assert.doesNotMatch(log, /does not persist/);
  const bad = (await doctor(config(url).cfg, 'test')).filter((c) => c.what === 'redis durability' && !c.ok);
  assert.equal(bad.length, 1);
  assert.match(bad[0]!.detail, /allkeys-lru/);
  await assert.rejects(startLog(url, ', require_persistence: true'), /maxmemory-policy is allkeys-lru/);
});

test('a Redis with persistence (AOF or RDB) and noeviction: no warning, doctor passes, require_persistence starts', { skip }, async () => {
  for (const args of [GOOD, ['--appendonly', 'no', '--save', '900 1', '--maxmemory-policy', 'noeviction']]) {
    const url = await redisWith(args);
    const log = await startLog(url);
    assert.doesNotMatch(log, /redis_durability/, args.join(' '));
    const checks = (await doctor(config(url).cfg, 'test')).filter((c) => c.what === 'redis durability');
    assert.deepEqual(checks.map((c) => c.ok), [true], JSON.stringify(checks));
    const started = await startLog(url, ', require_persistence: true');
    assert.match(started, /l402d started/);
  }
});

test('CONFIG disabled (managed services): what INFO shows is checked, the rest is said to be unchecked; require_persistence refuses', { skip }, async () => {
  const url = await redisWith(['--appendonly', 'no', '--save', '900 1', '--maxmemory-policy', 'noeviction', '--rename-command', 'CONFIG', '']);
  const log = await startLog(url);
  assert.match(log, /persistence could not be checked \(CONFIG unavailable: .*AOF is off, RDB snapshots unknown/);
  assert.doesNotMatch(log, /SPENT CREDENTIALS AT RISK/);
  const checks = (await doctor(config(url).cfg, 'test')).filter((c) => c.what === 'redis durability');
  assert.ok(checks.length >= 1 && checks.every((c) => c.ok), JSON.stringify(checks));
  assert.ok(checks.some((c) => /could not be checked/.test(c.detail)));
  await assert.rejects(startLog(url, ', require_persistence: true'), /refusing to start: .*could not be checked/);

  // AOF on is visible through INFO even without CONFIG: nothing to say about persistence.
  const aof = await redisWith(['--appendonly', 'yes', '--maxmemory-policy', 'allkeys-lru', '--maxmemory', '64mb', '--rename-command', 'CONFIG', '']);
  const l2 = await startLog(aof);
  assert.doesNotMatch(l2, /persistence could not be checked/);
  assert.match(l2, /maxmemory-policy is allkeys-lru/);
});
