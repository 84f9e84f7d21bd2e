// Single-use claims hold across two l402d processes sharing Redis, survive an l402d restart with SQLite,
// and fail closed (503) while Redis is down, recovering without a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startRedis, waitFor } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { startGateProcess, twoGatesBehindNginx } from './gate-process.js';
import { Redis } from 'ioredis';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { ngxL402Credential } from '../peers/ngx-l402-credentials.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-shared-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function pay(origin: string, wallet: DevWallet, path = '/premium'): Promise<string> {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  return `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
}

test('two l402d processes sharing Redis behind one nginx: a credential passes exactly once', { skip: !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false }, async () => {
  const redis = cleanup.use(await startRedis());
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  // Both processes share the dev wallet dir (the "Lightning node") and Redis (the claim store).
  const { origin } = await twoGatesBehindNginx(cleanup, {
    dir,
    yamlFor: (_i, port) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: warn }\n${ROUTES_YAML}`,
    paths: ['/premium', '/forever'],
    upstreamPort: up.port,
    env: { ROOT_KEY: TEST_ROOT_KEY },
  });
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());

  for (let round = 0; round < 3; round++) {
    up.reset();
    const auth = await pay(origin, wallet);
    const results = await Promise.all(Array.from({ length: 40 }, () => http1(origin + '/premium', { headers: { authorization: auth } })));
    const codes = results.map((r) => r.status);
    assert.equal(codes.filter((c) => c === 200).length, 1, `exactly one pass: ${codes.join(',')}`);
    assert.equal(codes.filter((c) => c === 401).length, 39);
    assert.equal(up.hits, 1);
  }

  // Redis down: single-use answers 503 (fail closed) quickly; reusable credentials still verify.
  const forever = await pay(origin, wallet, '/forever');
  const single = await pay(origin, wallet);
  await redis.kill();
  up.reset();
  const t0 = Date.now();
  const down = await http1(origin + '/premium', { headers: { authorization: single, accept: 'application/json' } });
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(down.status, 503);
  assert.equal(down.headers['retry-after'], '5');
  assert.equal(JSON.parse(down.body).reason, 'store_unavailable');
  assert.equal((await http1(origin + '/forever', { headers: { authorization: forever } })).status, 200);
  assert.equal(up.hits, 1);
  // Redis back: no l402d restart needed, and the credential that met the outage was not consumed.
  await redis.restart();
  await waitFor('l402d reconnects to redis', async () => (await http1(origin + '/premium', { headers: { authorization: single } })).status === 200, { timeoutMs: 10_000, intervalMs: 200 });
  assert.equal((await http1(origin + '/premium', { headers: { authorization: single } })).status, 401);
});

// Moving from ngx_l402 with its Redis: credentials it sold keep working (as it sold them: path and method
// bound), each passes once across processes, and those it already spent in that Redis stay spent.
test('ngx_l402 credentials through nginx and two l402d sharing ngx_l402\'s Redis: honoured once, spent ones stay spent', { skip: !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false }, async () => {
  const redis = cleanup.use(await startRedis());
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const NGX_ROOT_KEY = 'the ROOT_KEY ngx_l402 ran with: 8d1c0a';
  const { origin } = await twoGatesBehindNginx(cleanup, {
    dir,
    yamlFor: (_i, port) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nngx_l402_root_key: \${NGX_ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: warn }\n${ROUTES_YAML}`,
    paths: ['/premium', '/forever'],
    upstreamPort: up.port,
    env: { ROOT_KEY: TEST_ROOT_KEY, NGX_ROOT_KEY },
  });
  const r = new Redis(redis.url);
  cleanup.add(() => r.quit());
  const c = ngxL402Credential(NGX_ROOT_KEY, '/premium');
  const results = await Promise.all(Array.from({ length: 20 }, () => http1(origin + '/premium', { headers: { authorization: c.authorization } })));
  assert.deepEqual(results.map((x) => x.status).sort(), [200, ...Array(19).fill(401)]);
  assert.equal(up.hits, 1);
  assert.notEqual(await r.get(`l402:preimage:${c.paymentHash.toString('hex')}`), null, "claimed in ngx_l402's key");
  // Spent while ngx_l402 still ran.
  const spent = ngxL402Credential(NGX_ROOT_KEY, '/premium');
  await r.set(`l402:preimage:${spent.paymentHash.toString('hex')}`, 'used', 'EX', 86_400);
  const refused = await http1(origin + '/premium', { headers: { authorization: spent.authorization, accept: 'application/json' } });
  assert.equal(refused.status, 401, refused.body);
  assert.equal(JSON.parse(refused.body).reason, 'already_used');
  // Bound to the path and method it was sold for; l402d's own challenge in the 401 lets the client buy anew.
  const wrong = await http1(origin + '/forever', { headers: { authorization: ngxL402Credential(NGX_ROOT_KEY, '/premium').authorization, accept: 'application/json' } });
  assert.equal(wrong.status, 401);
  assert.match(String(wrong.headers['www-authenticate']), /^L402 macaroon="/);
  // Reusable where the route is (indefinite access, as ngx_l402's l402_indefinite_access).
  const forever = ngxL402Credential(NGX_ROOT_KEY, '/forever');
  for (let i = 0; i < 3; i++) assert.equal((await http1(origin + '/forever', { headers: { authorization: forever.authorization } })).status, 200);
  assert.equal(up.hits, 4);
});

test('SQLite: a used credential stays used across an l402d restart', async () => {
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const file = join(dir, 'l402.yaml');
  writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nlog: { level: warn }\n${ROUTES_YAML}`);
  const origin = `http://127.0.0.1:${port}`;
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  let g = await startGateProcess(file, port);
  const auth = await pay(origin, wallet);
  assert.equal((await http1(origin + '/premium', { headers: { authorization: auth } })).status, 200);
  await g.kill();
  g = cleanup.use(await startGateProcess(file, port));
  const replay = await http1(origin + '/premium', { headers: { authorization: auth, accept: 'application/json' } });
  assert.equal(replay.status, 401);
  assert.equal(JSON.parse(replay.body).reason, 'already_used');
  assert.equal(up.hits, 1);
});
