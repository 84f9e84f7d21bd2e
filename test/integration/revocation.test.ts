// `l402d token revoke` by token id, payment hash and macaroon: two real l402d processes sharing Redis (and,
// on one host, SQLite) behind one nginx with its auth cache on. Every process refuses the credential within a
// second of the command, and nginx's cached "paid" answer outlives it by at most nginx_cache.max_secs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cleanup, http1, requireTool, startCountingUpstream, startRedis, waitFor } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { l402dArgs, twoGatesBehindNginx } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev-wallet.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
after(() => cleanup.run());

/** nginx reuses a "paid" answer at most this long (the config under test). */
const CACHE_SECS = 4;
/** Every l402d process refuses a revoked credential this soon after the command returns. */
const REVOKE_BOUND_MS = 1000;

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-revoke-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Runs the l402d command line (async: the gates keep serving meanwhile). */
function l402d(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, l402dArgs(...args), { env: { ...process.env, L402_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function buy(origin: string, wallet: DevWallet, path: string) {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const id = decodeIdentifier(decodeMacaroonBase64(b.macaroon).identifier)!;
  return { auth: `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`, macaroon: b.macaroon, tokenId: id.tokenId.toString('hex'), paymentHash: id.paymentHash.toString('hex') };
}

function get(origin: string, path: string, auth: string) {
  return http1(origin + path, { headers: { authorization: auth, accept: 'application/json' } });
}

async function revokeAndCheck(o: { origin: string; config: string; env: NodeJS.ProcessEnv; wallet: DevWallet; up: { hits: number }; form: 'token id' | 'payment hash' | 'macaroon' }) {
  const { origin, wallet } = o;
  const c = await buy(origin, wallet, '/forever');
  const bystander = await buy(origin, wallet, '/forever');
  // Used through both processes (nginx spreads requests), and kept in nginx's auth cache under this key.
  for (let i = 0; i < 4; i++) assert.equal((await get(origin, '/forever', c.auth)).status, 200);
  assert.equal((await get(origin, '/forever', bystander.auth)).status, 200);
  // The sale is recorded once, whichever process saw it first.
  await waitFor('the sale in token list', async () => {
    const r = await l402d(['token', 'list', '--json', '--config', o.config], o.env);
    return r.code === 0 && (JSON.parse(r.stdout) as Array<{ id: string }>).some((s) => s.id === c.tokenId);
  }, { timeoutMs: 15_000, intervalMs: 200 });
  const arg = o.form === 'token id' ? c.tokenId : o.form === 'payment hash' ? c.paymentHash : c.macaroon;
  // The cached key is used all along, so nginx holds a fresh "paid" answer for it when the revocation lands.
  const cached: Array<{ sent: number; status: number }> = [];
  let stop = false;
  const hammer = (async () => {
    while (!stop) {
      const sent = Date.now();
      cached.push({ sent, status: (await get(origin, '/forever', c.auth)).status });
      await sleep(50);
    }
  })();
  const r = await l402d(['token', 'revoke', arg, '--config', o.config], o.env);
  const revokedAt = Date.now();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^revoked: ${c.tokenId} \\(route /forever, first used `));
  assert.match(r.stdout, new RegExp(`cached answer for up to nginx_cache.max_secs \\(${CACHE_SECS} s\\)`));
  assert.ok(!r.stdout.includes(c.macaroon) && !r.stderr.includes(c.macaroon), 'the macaroon is not echoed');
  // Past the processes' bound: requests nginx has not cached (another URI of the route) reach l402d, and
  // every process refuses them (several requests, spread over both processes and nginx's two workers).
  await sleep(Math.max(0, revokedAt + REVOKE_BOUND_MS + 50 - Date.now()));
  for (let i = 0; i < 8; i++) {
    const x = await get(origin, `/forever?fresh=${o.form.replace(' ', '-')}-${i}`, c.auth);
    assert.equal(x.status, 401, `${o.form}, fresh key ${i}: ${x.status} ${x.body}`);
    const body = JSON.parse(x.body) as { reason: string; type: string; detail: string; macaroon?: string };
    assert.equal(body.reason, 'revoked');
    assert.equal(body.type, 'urn:l402:problem:revoked');
    assert.match(body.detail, /revoked/);
    // A fresh challenge comes with it: the client can buy again.
    assert.match(String(x.headers['www-authenticate']), /^L402 macaroon="/);
  }
  // Past nginx's bound too: the answer it cached before the revocation is gone.
  await sleep(Math.max(0, revokedAt + CACHE_SECS * 1000 + 300 - Date.now()));
  stop = true;
  await hammer;
  const hits = o.up.hits;
  assert.ok(cached.some((x) => x.sent < revokedAt && x.status === 200), 'the credential was in use up to the revocation');
  const late = cached.filter((x) => x.sent > revokedAt + CACHE_SECS * 1000 && x.status !== 401);
  assert.deepEqual(late, [], `${o.form}: nginx served the revoked credential longer than nginx_cache.max_secs`);
  for (let i = 0; i < 4; i++) assert.equal((await get(origin, '/forever', c.auth)).status, 401, `${o.form}: nginx's cached answer outlived nginx_cache.max_secs`);
  assert.equal(o.up.hits, hits, 'nothing reached the upstream with the revoked credential');
  // Nobody else is affected.
  assert.equal((await get(origin, '/forever', bystander.auth)).status, 200);
  assert.equal((await get(origin, `/forever?other=${o.form.replace(' ', '-')}`, bystander.auth)).status, 200);
  const show = await l402d(['token', 'show', c.paymentHash, '--json', '--config', o.config], o.env);
  assert.equal(show.code, 0, show.stderr);
  const shown = JSON.parse(show.stdout) as { sale: { id: string; route: string; amountMsat: number }; revoked: { value: string } | null };
  assert.equal(shown.sale.id, c.tokenId);
  assert.equal(shown.sale.amountMsat, 2000);
  assert.equal(shown.revoked?.value, c.tokenId);
  const again = await l402d(['token', 'revoke', c.tokenId, '--config', o.config], o.env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^already revoked: /);
}

test('revoke by token id, payment hash and macaroon: two l402d on Redis behind nginx with its auth cache', { skip: !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false }, async () => {
  const redis = cleanup.use(await startRedis());
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const env = { ROOT_KEY: TEST_ROOT_KEY };
  const yaml = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nnginx_cache: { max_secs: ${CACHE_SECS} }\nlog: { level: warn }\n${ROUTES_YAML}`;
  const { origin } = await twoGatesBehindNginx(cleanup, { dir, yamlFor: (_i, port) => yaml(port), paths: ['/premium', '/forever'], upstreamPort: up.port, env });
  const config = join(dir, 'gate-0.yaml');
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  for (const form of ['token id', 'payment hash', 'macaroon'] as const) await revokeAndCheck({ origin, config, env, wallet, up, form });

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

test('revoke on SQLite: two l402d sharing one database file behind nginx', { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
  const dir = tmp();
  const up = cleanup.use(await startCountingUpstream());
  const env = { ROOT_KEY: TEST_ROOT_KEY };
  const yaml = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: sqlite, path: ${join(dir, 'shared.db')} }\nnginx_cache: { max_secs: ${CACHE_SECS} }\nlog: { level: warn }\n${ROUTES_YAML}`;
  const { origin } = await twoGatesBehindNginx(cleanup, { dir, yamlFor: (_i, port) => yaml(port), paths: ['/premium', '/forever'], upstreamPort: up.port, env });
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  for (const form of ['token id', 'macaroon'] as const) await revokeAndCheck({ origin, config: join(dir, 'gate-1.yaml'), env, wallet, up, form });
});

test('token commands refuse without the gate\'s config, on a memory store, for Cashu payments and foreign macaroons', async () => {
  const dir = tmp();
  const none = await l402d(['token', 'list']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /token list: give the running gate's config/);
  const mem = join(dir, 'mem.yaml');
  writeFileSync(mem, `data_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: memory }\n${ROUTES_YAML}`);
  const m = await l402d(['token', 'revoke', 'a'.repeat(64), '--config', mem]);
  assert.equal(m.code, 2);
  assert.match(m.stderr, /store.type is memory/);
  const cfg = join(dir, 'l402.yaml');
  writeFileSync(cfg, `data_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\n${ROUTES_YAML}`);
  const cashu = await l402d(['token', 'revoke', 'cashu:0123abcd', '--config', cfg]);
  assert.equal(cashu.code, 2);
  assert.match(cashu.stderr, /Cashu payment pays for one request/);
  // A macaroon another root key signed is refused (a typo would otherwise revoke nothing, silently).
  const otherDir = tmp();
  const other = join(otherDir, 'other.yaml');
  writeFileSync(other, `data_dir: ${otherDir}\nroot_key: ${'9e'.repeat(8)}${TEST_ROOT_KEY.slice(16)}\n${ROUTES_YAML}`);
  const { mintLocalCredential } = await import('./gate-fixture.js');
  const { parseConfig } = await import('../../src/policy/config.js');
  const route = parseConfig(ROUTES_YAML, { env: {} }).routes.find((x) => x.match === '/forever')!;
  const foreign = await mintLocalCredential(route, '/forever');
  const f = await l402d(['token', 'revoke', foreign.macaroon, '--config', other]);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /not signed by this config's root_key/);
  assert.ok(!f.stderr.includes(foreign.macaroon));
  const garbage = await l402d(['token', 'show', 'not-a-credential', '--config', cfg]);
  assert.equal(garbage.code, 2);
  assert.match(garbage.stderr, /the macaroon does not decode/);
  const notBase64 = await l402d(['token', 'show', '???', '--config', cfg]);
  assert.equal(notBase64.code, 2);
  assert.match(notBase64.stderr, /give a token id or payment hash/);
});
