// The Redis store against a Sentinel-managed master and a 3-node Cluster, all real redis-server processes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, requireTool, startRedis, waitFor } from './harness.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { parseRedisTarget } from '../../src/store/redis-url.js';

const redisBin = requireTool('redis-server');
const cliBin = requireTool('redis-cli');
const skip = redisBin && cliBin ? false : 'redis-server or redis-cli not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-redis-topo-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function run(args: string[], cwd: string): ChildProcess {
  const p = spawn(redisBin!, args, { cwd, stdio: 'ignore' });
  cleanup.add(() => new Promise<void>((r) => (p.exitCode !== null ? r() : (p.once('exit', () => r()), p.kill('SIGKILL')))));
  return p;
}

function cli(port: number, ...args: string[]): string {
  return spawnSync(cliBin!, ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
}

async function exercise(store: RedisStore): Promise<void> {
  // A cluster just created may still be settling its slot map, a sentinel still finding its master: the
  // client retries until it is ready, which on a loaded machine can take longer than ping()'s 2 s start-up
  // bound (l402d keeps retrying too).
  await waitFor('the store to connect', () => store.ping().then(() => true, () => false), { timeoutMs: 20_000, intervalMs: 200 });
  for (let i = 0; i < 20; i++) {
    // Keys spread over cluster slots.
    assert.equal(await store.claimOnce(`claim:${i}`), true);
    assert.equal(await store.claimOnce(`claim:${i}`), false);
  }
  assert.equal((await store.incrWindow('rl:x', 60)).count, 1);
  assert.equal((await store.incrWindow('rl:x', 60)).count, 2);
  await store.set('price:route:/p', '123');
  assert.equal(await store.get('price:route:/p'), '123');
  await store.addCounters([['m', 2]]);
  assert.deepEqual(await store.readCounters(), [['m', 2]]);
}

test('URL forms and their errors (no password in messages)', () => {
  assert.deepEqual(parseRedisTarget('redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster'), {
    kind: 'sentinel', sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '10.0.0.2', port: 26379 }], name: 'mymaster', password: 's3cret', tls: false,
  });
  assert.equal(parseRedisTarget('rediss+cluster://a:7000,b:7001').kind, 'cluster');
  assert.equal(parseRedisTarget('redis://127.0.0.1:6379').kind, 'single');
  for (const bad of ['redis+sentinel://:s3cret@host:1', 'redis+cluster://:s3cret@nohostport']) {
    assert.throws(() => parseRedisTarget(bad), (e: Error) => !e.message.includes('s3cret'));
  }
});

test('Sentinel: the store finds the master through the sentinel', { skip }, async () => {
  const master = cleanup.use(await startRedis());
  const dir = tmp();
  const sport = await freePort();
  writeFileSync(join(dir, 'sentinel.conf'), `port ${sport}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds mymaster 5000\n`);
  run([join(dir, 'sentinel.conf'), '--sentinel'], dir);
  await waitFor('sentinel knows the master', () => cli(sport, 'SENTINEL', 'get-master-addr-by-name', 'mymaster').includes(String(master.port)), { timeoutMs: 10_000, intervalMs: 100 });
  const store = new RedisStore(`redis+sentinel://127.0.0.1:${sport}/mymaster`, 'l402:', 1000);
  cleanup.add(() => store.close());
  await exercise(store);
  // The master it found does not persist (--save '' --appendonly no): said, with the fix.
  const d = await store.durability();
  assert.equal(d.problems.length, 1, JSON.stringify(d));
  assert.match(d.problems[0]!, /does not persist.*appendonly yes/);
});

test('Cluster: every store operation works across slots', { skip }, async () => {
  const dir = tmp();
  const ports = [await freePort(), await freePort(), await freePort()];
  for (const p of ports) {
    run(['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${p}.conf`, '--save', '', '--appendonly', 'no', '--dir', dir], dir);
  }
  for (const p of ports) await waitFor(`node ${p}`, () => cli(p, 'PING').includes('PONG'), { timeoutMs: 10_000, intervalMs: 50 });
  const created = spawnSync(cliBin!, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(created.status, 0, created.stdout + created.stderr);
  await waitFor('cluster ok', () => ports.every((p) => cli(p, 'CLUSTER', 'INFO').includes('cluster_state:ok')), { timeoutMs: 15_000, intervalMs: 100 });
  const store = new RedisStore(`redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`, 'l402:', 1000);
  cleanup.add(() => store.close());
  await exercise(store);
  // Every master is checked (none persists here), each named.
  const d = await store.durability();
  assert.equal(d.problems.length, 3, JSON.stringify(d));
  for (const p of ports) assert.ok(d.problems.some((m) => m.includes(`127.0.0.1:${p}`) && /does not persist/.test(m)), `${p}: ${JSON.stringify(d)}`);
  assert.deepEqual(d.unchecked, []);
});
