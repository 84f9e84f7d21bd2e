// Prepaid balances through real nginx: one payment buys balance_msat of credit, each request draws its price
// (X-L402-Balance-Msat says what is left), an empty balance answers 402 with a top-up for the same credential,
// nginx's auth cache never serves a balance request, an upstream 502 gives the draw back, and a storm of
// concurrent requests across two l402d processes on one real Redis never overdraws and never loses a draw.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startRedis, waitFor } from './harness.js';
import { l402d } from './revocation-fixture.js';
import { mintLocalCredential, startStack, TEST_ROOT_KEY } from './gate-fixture.js';
import { twoGatesBehindNginx } from './gate-process.js';
import { parseConfig } from '../../src/config/config.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { getEncodedToken } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const cleanup = new Cleanup();
after(() => cleanup.run());

const json = (s: string) => JSON.parse(s) as Record<string, unknown>;
const tokenIdOf = (macaroon: string) => decodeIdentifier(decodeMacaroonBase64(macaroon).identifier)!.tokenId;

test('pay once, draw down, 402 with what is left and a top-up that keeps the credential; never cached; an upstream 502 gives the draw back', { skip: !nginxBin && 'nginx not installed', timeout: 120_000 }, async () => {
  const site = cleanup.use(await startCountingUpstream());
  const dead = await freePort();
  const s = await startStack(cleanup, {
    // The auth cache on: a reusable credential's pass would be cached, a balance's never is.
    extraYaml: 'nginx_cache: { max_secs: 30 }\n',
    extraRoutes: `  - { match: /meter/, amount_msat: 2000, access: balance, balance_msat: 5000 }
  - { match: /flaky/, amount_msat: 2000, access: balance, balance_msat: 5000 }
`,
    extra: (dir) =>
      `location /meter/ { include ${dir}/protect.conf; include ${dir}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; }
       location /flaky/ { include ${dir}/protect.conf; include ${dir}/balance.conf; proxy_pass http://127.0.0.1:${dead}; proxy_connect_timeout 1s; }`,
  });
  const get = (path: string, auth?: string) => http1(s.origin + path, { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });

  const first = await get('/meter/x');
  assert.equal(first.status, 402, first.body);
  const offer = json(first.body);
  assert.equal(offer.amount_msat, 5000, 'the invoice buys the balance, not one request');
  const { auth, macaroon } = await s.buy('/meter/x');
  const left: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await get('/meter/x', auth);
    assert.equal(r.status, 200, r.body);
    left.push(String(r.headers['x-l402-balance-msat']));
  }
  assert.deepEqual(left, ['3000', '1000']);
  assert.equal(site.hits, 2, 'each paid request reached the upstream (none served from the auth cache)');

  // Empty: 402 with what is left, and a top-up invoice under the SAME macaroon.
  const empty = await get('/meter/x', auth);
  assert.equal(empty.status, 402, empty.body);
  assert.equal(empty.headers['x-l402-balance-msat'], '1000');
  const p = json(empty.body);
  assert.equal(p.reason, 'balance_empty');
  assert.equal(p.balance_msat, 1000);
  assert.equal(p.topup, true);
  assert.equal(p.macaroon, macaroon, 'the top-up keeps the credential');
  assert.equal(p.amount_msat, 5000);
  assert.match(String(empty.headers['www-authenticate']), new RegExp(`macaroon="${macaroon.replace(/[+/=]/g, '\\$&')}"`));
  assert.equal(site.hits, 2);
  const topupPreimage = s.wallet.pay(String(p.invoice)).toString('hex');
  const topped = `L402 ${macaroon}:${topupPreimage}`;
  const seen: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await get('/meter/x', topped);
    assert.equal(r.status, 200, r.body);
    seen.push(String(r.headers['x-l402-balance-msat']));
  }
  // 1000 + 5000 credited once, then drawn 2000 at a time.
  assert.deepEqual(seen, ['4000', '2000', '0']);
  assert.equal((await get('/meter/x', topped)).status, 402, 'the top-up was credited once');
  // The top-up's preimage belongs to this credential only: on another one it is a wrong preimage.
  const other = await s.buy('/meter/y');
  const stolen = await get('/meter/x', `L402 ${other.macaroon}:${topupPreimage}`);
  assert.equal(stolen.status, 401, stolen.body);
  assert.equal(json(stolen.body).reason, 'wrong_preimage');
  // A balance credential elsewhere, or another route's credential here: refused.
  const wrong = await get('/premium', other.auth);
  assert.equal(json(wrong.body).reason, 'wrong_route');
  const single = await s.buy('/premium');
  assert.equal(json((await get('/meter/x', single.auth)).body).reason, 'wrong_route');

  // The upstream is down: 502 saying the payment was not consumed, and the draw is back on the balance.
  const flaky = await s.buy('/flaky/x');
  const key = storeKeys.balance(tokenIdOf(flaky.macaroon));
  for (let i = 0; i < 3; i++) {
    const r = await get('/flaky/x', flaky.auth);
    assert.equal(r.status, 502, r.body);
    assert.equal(json(r.body).payment, 'not_consumed');
  }
  assert.equal(await s.gate.gate.parts.store.getBalance(key), 5000, 'every draw given back');
});

test('an internal redirect (try_files) from a cheap route of a plan to a dearer one pays the dearer price once, not the cheap one', { skip: !nginxBin && 'nginx not installed', timeout: 120_000 }, async () => {
  const site = cleanup.use(await startCountingUpstream());
  const docroot = mkdtempSync(join(tmpdir(), 'l402-redirect-root-'));
  cleanup.add(() => rmSync(docroot, { recursive: true, force: true }));
  const s = await startStack(cleanup, {
    extraRoutes: `  - { match: /cheap/, amount_msat: 1000, access: balance, balance_msat: 20000, plan: redir }
  - { match: /dear/, amount_msat: 5000, access: balance, balance_msat: 20000, plan: redir }
`,
    // No file matches, so try_files ends in an internal redirect to /dear/ after /cheap/'s auth_request passed:
    // nginx runs /dear/'s auth_request again with the same $request_id.
    extra: (dir) =>
      `location /cheap/ { include ${dir}/protect.conf; include ${dir}/balance.conf; root ${docroot}; try_files $uri /dear/from-cheap; }
       location /dear/ { include ${dir}/protect.conf; include ${dir}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; }`,
  });
  const get = (path: string, auth?: string) => http1(s.origin + path, { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  const { auth } = await s.buy('/cheap/x');
  const r = await get('/cheap/x', auth);
  assert.equal(r.status, 200, r.body);
  assert.equal(site.hits, 1, 'served by /dear/');
  assert.equal(r.headers['x-l402-balance-msat'], '15000', 'the dearer route price was drawn, once');
  const direct = await get('/dear/y', auth);
  assert.equal(direct.status, 200, direct.body);
  assert.equal(direct.headers['x-l402-balance-msat'], '10000');
  const cheap = await http1(s.origin + '/cheap/z', { headers: { accept: 'application/json', authorization: auth } });
  assert.equal(cheap.headers['x-l402-balance-msat'], '5000', 'every redirected request pays the dearer price');
  // 5000 left: one more redirected request fits; then the redirect finds too little and answers 402, and what
  // /cheap/ drew for it is given back.
  assert.equal((await get('/cheap/w', auth)).headers['x-l402-balance-msat'], '0');
  const empty = await get('/dear/v', auth);
  assert.equal(empty.status, 402, empty.body);
  assert.equal(site.hits, 4);
});

test('storm: concurrent requests on one balance across two l402d processes on one Redis never overdraw and never lose a draw', { skip: (!nginxBin || !redisBin) && 'nginx or redis-server not installed', timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-balance-storm-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const redis = cleanup.use(await startRedis());
  const site = cleanup.use(await startCountingUpstream());
  const routes = `lightning: { type: dev }
routes:
  - { match: /api/a, amount_msat: 3000, access: balance, balance_msat: 100000, plan: api }
  - { match: /api/b, amount_msat: 7000, access: balance, balance_msat: 100000, plan: api }
`;
  const { origin, gates } = await twoGatesBehindNginx(cleanup, {
    dir,
    yamlFor: (i, port) => `listen: 127.0.0.1:${port}\ndata_dir: ${join(dir, `d${i}`)}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\nlog: { level: info }\n${routes}`,
    paths: ['/api/'],
    upstreamPort: site.port,
  });
  const cfg = parseConfig(`root_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\n${routes}`, { env: {} });
  const cred = await mintLocalCredential(cfg.routes[0]!, '/api/a');
  const N = 80;
  const paths = Array.from({ length: N }, (_, i) => (i % 4 === 0 ? '/api/b' : '/api/a'));
  const results = await Promise.all(paths.map((p) => http1(origin + p, { headers: { accept: 'application/json', authorization: cred.auth } })));
  const statuses = results.map((r) => r.status);
  assert.ok(statuses.every((x) => x === 200 || x === 402), `only served or 402: ${statuses.join(',')}`);
  const drawn = results.reduce((a, r, i) => a + (r.status === 200 ? (paths[i] === '/api/b' ? 7000 : 3000) : 0), 0);
  const store = new RedisStore(redis.url, cfg.store.type === 'redis' ? cfg.store.prefix : 'l402:', 1000);
  cleanup.add(() => store.close());
  await store.ping();
  const rest = await store.getBalance(storeKeys.balance(tokenIdOf(cred.macaroon)));
  assert.equal(drawn + rest, 100000, `every draw accounted for: drawn ${drawn}, left ${rest}`);
  assert.ok(rest >= 0);
  assert.equal(site.hits, statuses.filter((x) => x === 200).length, 'the upstream saw exactly the paid requests');
  // Both processes decided some of them (the store, not one process, kept the count).
  for (const g of gates) assert.match(g.output(), /"outcome":"allow"|"outcome":"challenge"/);
  // Every refusal saw too little left for its request.
  for (const [i, r] of results.entries()) if (r.status === 402) assert.ok(Number(json(r.body).balance_msat) < (paths[i] === '/api/b' ? 7000 : 3000), r.body);
});

test('Cashu top-up through nginx: X-Cashu with the balance credential adds its value once (a real mint; double spends refused)', { skip: !nginxBin && 'nginx not installed', timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-balance-cashu-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  const site = cleanup.use(await startCountingUpstream());
  const s = await startStack(cleanup, {
    extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"] }\n`,
    extraRoutes: `  - { match: /meter/, amount_msat: 2000, access: balance, balance_msat: 4000, rails: [lightning, cashu] }\n`,
    extra: (d) => `location /meter/ { include ${d}/protect.conf; include ${d}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; }`,
  });
  const token = async (sats: number) => {
    const { wallet, proofs } = await mint.fundedWallet(sats + 8);
    const { send } = await wallet.ops.send(sats, proofs).run();
    return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  };
  const get = (headers: Record<string, string>) => http1(s.origin + '/meter/x', { headers: { accept: 'application/json', ...headers } });
  const { auth, macaroon } = await s.buy('/meter/x');
  const key = storeKeys.balance(tokenIdOf(macaroon));
  const t = await token(10);
  const r = await get({ authorization: auth, 'x-cashu': t });
  assert.equal(r.status, 200, r.body);
  // 4000 bought + 10 sats of ecash - 2000 drawn.
  assert.equal(r.headers['x-l402-balance-msat'], '12000');
  const again = await get({ authorization: auth, 'x-cashu': t });
  assert.equal(again.status, 400, again.body);
  assert.equal(json(again.body).reason, 'cashu_rejected');
  assert.equal(await s.gate.gate.parts.store.getBalance(key), 12000, 'the spent token added nothing');
  const plain = await get({ authorization: auth });
  assert.equal(plain.headers['x-l402-balance-msat'], '10000');
  // Ecash with another route's credential is not taken (the credential is refused first).
  const other = await s.buy('/premium');
  const spare = await token(10);
  const refused = await get({ authorization: other.auth, 'x-cashu': spare });
  assert.equal(refused.status, 401, refused.body);
  const ok = await get({ authorization: auth, 'x-cashu': spare });
  assert.equal(ok.status, 200, `the refused request did not spend the ecash: ${ok.body}`);
  assert.equal(ok.headers['x-l402-balance-msat'], '18000');
});

test('standalone mode: the balance header on each paid answer, a 402 top-up when empty, and an upstream connection error gives the draw back', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-balance-standalone-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const site = cleanup.use(await startCountingUpstream());
  const dead = await freePort();
  const make = async (upstreamPort: number) => {
    const port = await freePort();
    const cfg = parseConfig(
      `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upstreamPort}\nlog: { level: error }\nlightning: { type: dev }\nroutes:\n  - { match: /m/, amount_msat: 1500, access: balance, balance_msat: 3000 }\n`,
      { env: {} },
    );
    const gate = await startGate(cfg, { log: createLogger('error') });
    cleanup.add(() => gate.close());
    return { port, gate };
  };
  const up = await make(site.port);
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const get = (port: number, auth?: string) => http1(`http://127.0.0.1:${port}/m/x`, { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  const offer = json((await get(up.port)).body);
  const auth = `L402 ${String(offer.macaroon)}:${wallet.pay(String(offer.invoice)).toString('hex')}`;
  const one = await get(up.port, auth);
  assert.equal(one.status, 200, one.body);
  assert.equal(one.headers['x-l402-balance-msat'], '1500');
  assert.equal((await get(up.port, auth)).headers['x-l402-balance-msat'], '0');
  const empty = await get(up.port, auth);
  assert.equal(empty.status, 402);
  assert.equal(json(empty.body).macaroon, offer.macaroon);
  assert.equal(empty.headers['x-l402-balance-msat'], '0');
  // A second gate on the same store whose upstream is down: the draw goes back.
  const down = await make(dead);
  const t = json(empty.body);
  const topped = `L402 ${String(offer.macaroon)}:${wallet.pay(String(t.invoice)).toString('hex')}`;
  const failed = await get(down.port, topped);
  assert.equal(failed.status, 502, failed.body);
  assert.equal(json(failed.body).payment, 'not_consumed');
  assert.equal(await down.gate.gate.parts.store.getBalance(storeKeys.balance(tokenIdOf(String(offer.macaroon)))), 3000);
  assert.equal((await get(up.port, topped)).headers['x-l402-balance-msat'], '1500');
  // The sales ledger has the first payment and the top-up, both naming this credential; revoking by the
  // top-up's payment hash revokes the credential itself.
  const ledger = up.gate.gate.parts.store.ledger();
  await waitFor('the top-up recorded as a sale', async () => (await ledger.findSale(String(t.payment_hash))) !== undefined);
  const sale = (await ledger.findSale(String(t.payment_hash)))!;
  const tokenId = tokenIdOf(String(offer.macaroon)).toString('hex');
  assert.deepEqual([sale.id, sale.amountMsat, sale.access], [`${tokenId}:topup:${String(t.payment_hash)}`, 3000, 'balance']);
  const configFile = join(dir, 'l402.yaml');
  writeFileSync(configFile, `data_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nroutes:\n  - { match: /m/, amount_msat: 1500, access: balance, balance_msat: 3000 }\n`);
  const r = await l402d(['token', 'revoke', String(t.payment_hash), '--config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`revoked: ${tokenId} `));
  await waitFor('the revocation seen', async () => (await get(up.port, topped)).status === 401, { timeoutMs: 5000 });
  const before = await up.gate.gate.parts.store.getBalance(storeKeys.balance(tokenIdOf(String(offer.macaroon))));
  const refused = await get(up.port, topped);
  assert.equal(json(refused.body).reason, 'revoked');
  assert.equal(await up.gate.gate.parts.store.getBalance(storeKeys.balance(tokenIdOf(String(offer.macaroon)))), before, 'nothing drawn by a revoked credential');
});
