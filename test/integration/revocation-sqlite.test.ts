// `l402d token revoke` with two real l402d processes sharing one SQLite file (one host) behind nginx with its
// auth cache on: the same bounds as on Redis (revocation.test.ts).
import { test, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, requireTool, startCountingUpstream } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { twoGatesBehindNginx } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { CACHE_SECS, revokeAndCheck } from './revocation-fixture.js';

const nginxBin = requireTool('nginx');
const cleanup = new Cleanup();
after(() => cleanup.run());

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-revoke-sqlite-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('revoke on SQLite: two l402d sharing one database file behind nginx', { skip: !nginxBin ? 'nginx not installed' : false, timeout: 240_000 }, async () => {
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const env = { ROOT_KEY: TEST_ROOT_KEY };
  const yaml = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: sqlite, path: ${join(dir, 'shared.db')} }\nnginx_cache: { max_secs: ${CACHE_SECS} }\nlog: { level: warn }\n${ROUTES_YAML}`;
  const { origin } = await twoGatesBehindNginx(cleanup, { dir, yamlFor: (_i, port) => yaml(port), paths: ['/premium', '/forever'], upstreamPort: up.port, env });
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const store = new SqliteStore(join(dir, 'shared.db'));
  cleanup.add(() => store.close());
  for (const form of ['payment hash', 'macaroon'] as const) await revokeAndCheck({ origin, config: join(dir, 'gate-1.yaml'), env, wallet, up, form, ledger: store.ledger(), first: form === 'payment hash' });
});
