// `workers: 2`: two l402d processes on one address; single-use claims still hold across them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, startCountingUpstream } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { startGateProcess } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('workers share the address and the claims; a memory store is refused', async () => {
  assert.throws(() => parseConfig(`workers: 2\nstore: { type: memory }\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`, { env: {} }), ConfigError);
  const dir = mkdtempSync(join(tmpdir(), 'l402-workers-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const file = join(dir, 'l402.yaml');
  writeFileSync(file, `listen: 127.0.0.1:${port}\nworkers: 2\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nlog: { level: warn }\n${ROUTES_YAML}`);
  const g = cleanup.use(await startGateProcess(file, port));
  const origin = `http://127.0.0.1:${port}`;
  const pids = new Set<string>();
  // The second worker may still be starting when the first answers (slow on a loaded machine): ask for up to 15 s.
  for (const until = Date.now() + 15_000; pids.size < 2 && Date.now() < until; ) {
    pids.add(JSON.parse((await http1(origin + '/_l402/health')).body).instance);
    if (pids.size < 2) await sleep(50);
  }
  assert.equal(pids.size, 2, 'two worker processes answer');
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const body = JSON.parse((await http1(origin + '/premium', { headers: { accept: 'application/json' } })).body);
  const auth = `L402 ${body.macaroon}:${wallet.pay(body.invoice).toString('hex')}`;
  const rs = await Promise.all(Array.from({ length: 30 }, () => http1(origin + '/premium', { headers: { authorization: auth } })));
  assert.equal(rs.filter((r) => r.status === 200).length, 1, rs.map((r) => r.status).join(','));
  assert.equal(up.hits, 1);
  await g.stop();
});
