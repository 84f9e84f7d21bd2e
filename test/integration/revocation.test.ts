// `l402d token revoke` by token id, payment hash and macaroon: two real l402d processes sharing Redis behind one
// nginx with its auth cache on. Every process refuses the credential within a second of the command, and
// nginx's cached "paid" answer outlives it by at most nginx_cache.max_secs. (SQLite: revocation-sqlite.test.ts.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../../src/util/timeout.js';
import { Cleanup, requireTool, startCountingUpstream, startRedis } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { twoGatesBehindNginx } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { buy, CACHE_SECS, get, l402d, REVOKE_BOUND_MS, revokeAndCheck } from './revocation-fixture.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-revoke-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('revoke by token id, payment hash and macaroon: two l402d on Redis behind nginx with its auth cache', { skip: !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false, timeout: 240_000 }, async () => {
  const redis = cleanup.use(await startRedis());
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const env = { ROOT_KEY: TEST_ROOT_KEY };
  const yaml = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nnginx_cache: { max_secs: ${CACHE_SECS} }\nlog: { level: warn }\n${ROUTES_YAML}`;
  const { origin } = await twoGatesBehindNginx(cleanup, { dir, yamlFor: (_i, port) => yaml(port), paths: ['/premium', '/forever'], upstreamPort: up.port, env });
  const config = join(dir, 'gate-0.yaml');
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const store = new RedisStore(redis.url, 'l402:', 1000);
  cleanup.add(() => store.close());
  for (const form of ['token id', 'payment hash', 'macaroon'] as const) await revokeAndCheck({ origin, config, env, wallet, up, form, ledger: store.ledger(), first: form === 'token id' });

  // A single-use credential revoked before its use: refused, and never recorded as a sale.
  const single = await buy(origin, wallet, '/premium');
  const r = await l402d(['token', 'revoke', single.paymentHash, '--config', config], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^revoked: [0-9a-f]{64} \(no sale recorded for it yet\)/);
  await sleep(REVOKE_BOUND_MS + 50);
  const refused = await get(origin, '/premium', single.auth);
  assert.equal(refused.status, 401);
  assert.equal(JSON.parse(refused.body).reason, 'revoked');
});
