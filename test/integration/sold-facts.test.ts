// What was sold comes only from what l402d minted, through real nginx and Redis: caveats a holder appends to
// a macaroon (the HMAC chain lets anyone append) only narrow. A path caveat does not buy a separately priced
// path, an expiry does not shorten the spent mark in Redis, and an expiry does not revive a credential on a
// route made timed after it was sold.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { Cleanup, http1, requireTool, startRedis } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY, startStack } from './gate-fixture.js';
import { l402dArgs } from './gate-process.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';

const skip = requireTool('nginx') && requireTool('redis-server') ? false : 'nginx or redis-server not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

/** The holder's own attenuation: the macaroon with these caveats appended (a valid HMAC chain). */
function append(macaroon: string, ...caveats: string[]): string {
  return encodeMacaroonBase64(caveats.reduce((m, c) => attenuate(m, c), decodeMacaroonBase64(macaroon)));
}
const paymentHash = (macaroon: string) => decodeIdentifier(decodeMacaroonBase64(macaroon).identifier)!.paymentHash.toString('hex');
const nowSecs = () => Math.floor(Date.now() / 1000);

test('appended caveats never widen what was sold: priced path, spent mark lifetime, a route made timed (nginx + Redis)', { skip }, async () => {
  const redis = cleanup.use(await startRedis());
  const storeYaml = `store: { type: redis, url: ${redis.url} }\npricing: { cache_ms: 0 }\n`;
  const extraRoutes = '  - { match: /premium-hourly, amount_msat: 1000, macaroon_timeout: 3600 }\n';
  const s = await startStack(cleanup, { extraYaml: storeYaml, extraRoutes });
  const r = new Redis(redis.url);
  cleanup.add(() => r.disconnect());
  const get = (path: string, auth: string) => http1(s.origin + path, { headers: { authorization: auth, accept: 'application/json' } });

  // Finding 1: /forever is indefinite at 2000 msat; /forever/report gets its own price with `l402d price`.
  const file = join(s.dataDir, 'cli.yaml');
  writeFileSync(file, `data_dir: ${s.dataDir}\nstore: { type: redis, url: ${redis.url} }\n${ROUTES_YAML}`);
  const set = spawnSync(process.execPath, l402dArgs('price', 'set', '50000', '--path', '/forever/report', '--config', file), { encoding: 'utf8', timeout: 30_000 });
  assert.equal(set.status, 0, set.stderr);
  const cheap = await s.buy('/forever/other');
  s.upstream.reset();
  assert.equal((await get('/forever/other', cheap.auth)).status, 200);
  assert.equal((await get('/forever/report', cheap.auth)).status, 401, 'the route credential does not open the priced path');
  const sha = createHash('sha256').update('/forever/report').digest('hex');
  for (const caveat of ['path=/forever/report', `path_sha256=${sha}`]) {
    const widened = `L402 ${append(cheap.macaroon, caveat)}:${cheap.preimage}`;
    for (let i = 0; i < 2; i++) {
      const res = await get('/forever/report', widened);
      assert.equal(res.status, 401, `${caveat}: ${res.body}`);
      assert.equal(JSON.parse(res.body).reason, 'wrong_path');
    }
  }
  assert.equal(s.upstream.hits, 1, 'nothing reached the upstream but the one paid request');
  const report = await s.buy('/forever/report');
  assert.equal(JSON.parse((await http1(s.origin + '/forever/report', { headers: { accept: 'application/json' } })).body).amount_msat, 50000);
  assert.equal((await get('/forever/report', report.auth)).status, 200, 'bought at its own price, it opens');

  // Finding 2: a single-use credential used once with an appended expiry two seconds away. The spent mark in
  // Redis keeps no TTL (none was minted), or at least the minted lifetime; the original stays refused.
  for (const [path, mintedSecs] of [['/premium', undefined], ['/premium-hourly', 3600]] as const) {
    const once = await s.buy(path);
    const short = `L402 ${append(once.macaroon, `l402_valid_until=${nowSecs() + 2}`)}:${once.preimage}`;
    assert.equal((await get(path, short)).status, 200, path);
    const key = `l402:claim:l402:${paymentHash(once.macaroon)}`;
    assert.equal(await r.exists(key), 1, `${key} written`);
    const ttl = await r.ttl(key);
    if (mintedSecs === undefined) assert.equal(ttl, -1, `${path}: the spent mark never expires`);
    else assert.ok(ttl >= mintedSecs - 5, `${path}: the spent mark lives as long as the minted expiry (ttl ${ttl})`);
    const replay = await get(path, once.auth);
    assert.equal(replay.status, 401, replay.body);
    assert.equal(JSON.parse(replay.body).reason, 'already_used');
  }

  // Finding 3: l402d restarted (same root key, same Redis) with /forever made timed. The credential sold while
  // it was indefinite carries no minted expiry: refused, also with a far-future expiry its holder appended.
  const indefinite = await s.buy('/forever/x');
  assert.equal((await get('/forever/x', indefinite.auth)).status, 200);
  const far = `L402 ${append(indefinite.macaroon, `l402_valid_until=${nowSecs() + 10 * 365 * 86_400}`)}:${indefinite.preimage}`;
  assert.equal((await get('/forever/x', far)).status, 200, 'still indefinite: the appended expiry only narrows');
  await s.gate.close();
  const timedRoutes = ROUTES_YAML.replace('{ match: /forever, amount_msat: 2000, access: indefinite }', '{ match: /forever, amount_msat: 2000, access: timed, macaroon_timeout: 600 }');
  assert.notEqual(timedRoutes, ROUTES_YAML);
  const cfg = parseConfig(`listen: ${s.cfg.listen}\ndata_dir: ${s.dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: debug }\n${storeYaml}${timedRoutes}${extraRoutes}`, { env: {} });
  const restarted = await startGate(cfg, { log: createLogger('debug', new PassThrough().resume()) });
  cleanup.add(() => restarted.close(), 'l402d restarted');
  // Another URI of the route: nginx may reuse a "paid" answer for nginx_cache.max_secs under the same key.
  for (const auth of [indefinite.auth, far, `L402 ${append(indefinite.macaroon, 'uses=1', `l402_valid_until=${nowSecs() + 3600}`)}:${indefinite.preimage}`]) {
    const res = await get('/forever/y', auth);
    assert.equal(res.status, 401, res.body);
    assert.equal(JSON.parse(res.body).reason, 'expired');
  }
  const fresh = await s.buy('/forever/x');
  assert.equal((await get('/forever/x', fresh.auth)).status, 200, 'sold on the timed route, with its minted expiry');
  assert.equal((await get('/forever/x', fresh.auth)).status, 200, 'reusable until then');
});
