// Dynamic prices from Redis (the shared control plane), set with `l402d price`, through nginx.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Cleanup, http1, requireTool, startRedis } from './harness.js';
import { ROUTES_YAML, startStack } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';

const skip = requireTool('nginx') && requireTool('redis-server') ? false : 'nginx or redis-server not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

test('route and path prices from Redis, bad values ignored, ngx_l402 bare-URI keys as an option', { skip }, async () => {
  const redis = cleanup.use(await startRedis());
  const s = await startStack(cleanup, { extraYaml: `store: { type: redis, url: ${redis.url} }\npricing: { cache_ms: 0, legacy_keys: true }\n` });
  const file = join(s.dataDir, 'cli.yaml');
  writeFileSync(file, `data_dir: ${s.dataDir}\nstore: { type: redis, url: ${redis.url} }\n${ROUTES_YAML}`);
  const cli = (...args: string[]) => spawnSync(process.execPath, l402dArgs('price', ...args, '--config', file), { encoding: 'utf8', timeout: 20_000 });
  const amount = async (path: string) => JSON.parse((await http1(s.origin + path, { headers: { accept: 'application/json' } })).body).amount_msat as number;

  assert.equal(await amount('/timed/a'), 5000);
  const set = cli('set', '25000', '--route', '/timed/');
  assert.equal(set.status, 0, set.stderr);
  assert.equal(await amount('/timed/a'), 25000);
  assert.equal(cli('set', '30000', '--path', '/timed/b').status, 0);
  assert.equal(await amount('/timed/b'), 30000, 'path price wins');
  assert.equal(await amount('/timed/a'), 25000);
  assert.match(cli('get', '--route', '/timed/').stdout, /price:route:\/timed\/ = 25000/);
  assert.equal(cli('del', '--route', '/timed/').status, 0);
  assert.equal(await amount('/timed/a'), 5000);
  // Mistakes on the command line are exit 2 with one line.
  assert.equal(cli('set', 'abc', '--route', '/timed/').status, 2);
  assert.equal(cli('set', '5', '--route', '/nope').status, 2);
  assert.equal(cli('get').status, 2);

  const r = new Redis(redis.url);
  cleanup.add(() => r.disconnect());
  await r.set('l402:price:route:/forever', 'not-a-number');
  assert.equal(await amount('/forever'), 2000, 'bad value: static price');
  assert.ok(s.logs.some((l) => l.includes('"bad_price"')));
  await r.set('/forever', '4200');
  assert.equal(await amount('/forever'), 4200, 'legacy bare-URI key');
  // The paid credential for a dynamic price works like any other.
  const bought = await s.buy('/timed/b');
  assert.equal((await http1(s.origin + '/timed/b', { headers: { authorization: bought.auth } })).status, 200);
});

test('a path priced on its own is sold separately on a reusable route: the cheap route credential does not open it', { skip }, async () => {
  const s = await startStack(cleanup, { extraYaml: `pricing: { cache_ms: 0 }\n` });
  s.upstream.reset();
  await s.gate.gate.parts.store.set('price:path:/timed/gold', '900000');
  const cheap = await s.buy('/timed/cheap');
  const get = (path: string, auth: string) => http1(s.origin + path, { headers: { authorization: auth, accept: 'application/json' } });
  assert.equal((await get('/timed/cheap', cheap.auth)).status, 200);
  assert.equal((await get('/timed/other', cheap.auth)).status, 200, 'the route-wide credential covers the route');
  const gold = await get('/timed/gold', cheap.auth);
  assert.equal(gold.status, 401, gold.body);
  assert.equal(s.upstream.hits, 2);
  // Bought at its own price, the path's credential opens that path only.
  const bought = await s.buy('/timed/gold');
  assert.equal((await get('/timed/gold', bought.auth)).status, 200);
  assert.equal((await get('/timed/gold', bought.auth)).status, 200, 'reusable');
  assert.equal((await get('/timed/cheap', bought.auth)).status, 401, 'bound to its path');
  assert.equal(s.upstream.hits, 4);
});
