// Replay storm with one Cashu token: two l402d processes sharing Redis, behind nginx with two workers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getEncodedToken } from '@cashu/cashu-ts';
import { Cleanup, http1, requireTool, startCountingUpstream, startRedis } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { twoGatesBehindNginx } from './gate-process.js';
import { CashuMintPeer } from '../peers/cashu-mint.js';

const skip = requireTool('nginx') && requireTool('redis-server') ? false : 'nginx or redis-server not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

test('one Cashu token, 40 concurrent requests over 2 l402d processes and 2 nginx workers: exactly one pass', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-cashu-storm-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  const redis = cleanup.use(await startRedis());
  const up = cleanup.use(await startCountingUpstream());
  // Separate data dirs (each process its own Cashu wallet file); the claims meet in Redis.
  const { origin } = await twoGatesBehindNginx(cleanup, {
    dir,
    yamlFor: (i, port) =>
      `listen: 127.0.0.1:${port}\ndata_dir: ${join(dir, `d${i}`)}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: warn }\ncashu: { mode: standard, mints: ["${mint.url}"] }\n${ROUTES_YAML}`,
    paths: ['/premium'],
    upstreamPort: up.port,
  });
  for (let round = 0; round < 2; round++) {
    up.reset();
    const { wallet, proofs } = await mint.fundedWallet(18);
    const { send } = await wallet.ops.send(10, proofs).run();
    const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
    const rs = await Promise.all(Array.from({ length: 40 }, () => http1(`${origin}/premium`, { headers: { 'x-cashu': token } })));
    const codes = rs.map((r) => r.status);
    assert.equal(codes.filter((c) => c === 200).length, 1, codes.join(','));
    assert.ok(codes.every((c) => c === 200 || c === 400), codes.join(','));
    assert.equal(up.hits, 1);
  }
});
