// Standalone mode's free paths (free_paths, Aperture's authwhitelistpaths): listed paths are proxied without
// payment; anything unlisted is still refused, and a free path is never a way to a priced one (dot segments,
// "//", encoded slashes, ";" params, case, a trailing slash), in the config's checks and on the wire.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, startCountingUpstream } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { sendTo } from './standalone-fixture.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { FreePaths } from '../../src/policy/free-paths.js';
import { restartKeysChanged, startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const ROUTES = `routes:
  - { match: /premium, amount_msat: 1000 }
  - { match: = /exact-priced, amount_msat: 1000 }
  - { match: "~ ^/re/", amount_msat: 1000 }
  - { match: /public/paid/, amount_msat: 1000 }
`;

async function start(freePaths: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'l402-free-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const upstream = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upstream.port}\nlog: { level: error }\nlightning: { type: dev }\nfree_paths: ${JSON.stringify(freePaths)}\n${ROUTES}`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('error') });
  cleanup.add(() => gate.close());
  return { port, upstream };
}

/** One request with the target written byte for byte (no client-side normalisation). */
function raw(port: number, target: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n`));
    let buf = '';
    s.on('data', (b: Buffer) => (buf += b.toString('latin1')));
    s.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0)));
    s.on('error', reject);
  });
}

test('free paths are proxied without payment, credentials stripped; unlisted paths and priced ones are not free', async () => {
  const { port, upstream } = await start(['= /health', '/public/', '= /status/']);
  upstream.reset();
  const h = await sendTo(port, 'GET', '/health?probe=1', { authorization: 'L402 AAAA:' + '00'.repeat(32), 'x-cashu': 'cashuBxyz', 'x-l402-route': 'forged', 'grpc-metadata-macaroon': 'abcd' });
  assert.equal(h.status, 200, h.body);
  const got = upstream.requests.at(-1)!;
  assert.equal(got.url, '/health?probe=1');
  for (const name of ['authorization', 'x-cashu', 'x-l402-route', 'grpc-metadata-macaroon']) assert.equal(got.headers[name], undefined, name);
  assert.equal((await sendTo(port, 'GET', '/health', { authorization: 'Bearer app' })).status, 200);
  assert.equal(upstream.requests.at(-1)!.headers.authorization, 'Bearer app', "the app's own Authorization passes");
  assert.equal((await sendTo(port, 'POST', '/public/form', { 'content-length': '0' })).status, 200);
  assert.equal((await sendTo(port, 'GET', '/public/caf%C3%A9')).status, 200);
  assert.equal(upstream.requests.at(-1)!.url, '/public/caf%C3%A9');
  assert.equal((await sendTo(port, 'GET', '/status/')).status, 200);
  const free = upstream.hits;

  const refused: Array<[string, number]> = [
    ['/other', 403], ['/health/x', 403], ['/healthy', 403], ['/Health', 403], ['/status', 403],
    // A priced route inside a free prefix stays priced, in every case and spelling.
    ['/public/paid/x', 402], ['/public/PAID/x', 403], ['/PUBLIC/paid/x', 403],
    // Dot segments, raw or encoded, resolve before anything is free: the priced path is priced.
    ['/public/../premium', 402], ['/public/%2e%2e/premium', 402], ['/public/./../premium', 402],
    // Ambiguous targets are never free.
    ['/public/..;x/premium', 403], ['/public/.%3B/x', 403], ['/public/a;b', 403], ['/public/a%3Bb', 403],
    ['/public//premium', 403], ['/public%2Fpaid/x', 402], ['/public/%2F..%2Fpremium', 402], ['/public/a%5Cb', 400],
    ['/public/a%00b', 403], ['/public/%zz', 403],
  ];
  for (const [target, status] of refused) assert.equal(await raw(port, target), status, target);
  assert.equal(await raw(port, '/public/x#/../../premium'), 403, 'a raw "#"');
  assert.equal(upstream.hits, free, 'nothing refused reached the upstream');
});

test('a free prefix "/" never opens a priced route in another case or with a trailing slash', async () => {
  const { port, upstream } = await start(['/']);
  upstream.reset();
  assert.equal(await raw(port, '/'), 200);
  assert.equal(await raw(port, '/index.html'), 200);
  const free = upstream.hits;
  for (const target of ['/premium', '/PREMIUM', '/Premium/x', '/prem%C4%B1um', '/public/pa%C3%8Dd/'.replace('%C3%8D', '%C4%B0'), '/exact-pr%C4%B1ced', '/exact-priced', '/EXACT-PRICED', '/exact-priced/', '/Exact-Priced//', '/re/x', '/RE/x', '/public/paid/', '/Public/Paid/x', '/public/paid']) {
    const s = await raw(port, target);
    assert.ok(s === 402 || s === 403, `${target}: ${s}`);
  }
  assert.equal(upstream.hits, free);
});

test('free_paths config: standalone only, unambiguous literal paths only', () => {
  const base = `lightning: { type: dev }\n${ROUTES}`;
  assert.throws(() => parseConfig(`free_paths: ["/health"]\n${base}`, { env: {} }), (e: Error) => e instanceof ConfigError && /free_paths: only in standalone mode/.test(e.message));
  for (const bad of ['health', '/a/../b', '/a/./b', '/a//b', '/a;b', '/a%2Fb', '/a b', '/a?b', '/a#b', '~ ^/x', '/a\\b', '= ']) {
    assert.throws(() => parseConfig(`upstream: http://127.0.0.1:1\nfree_paths: [${JSON.stringify(bad)}]\n${base}`, { env: {} }), /free_paths\[0\]/, bad);
  }
  const f = new FreePaths(['= /a', '/b/'], [{ match: '/b/priced' }]);
  assert.equal(f.isFree('/a', '/a'), true);
  assert.equal(f.isFree('/b/x', '/b/x'), true);
  assert.equal(f.isFree('/b/PRICED', '/b/PRICED'), false);
  assert.equal(f.isFree('/b/x/../priced', '/b/priced'), false);
  assert.equal(f.isFree('/b/x/..', '/b/'), false, 'a dot segment is ambiguous even when it lands on a free path');
});

test('free_paths and l402.unknown_caveats are reloaded without a restart', () => {
  const cfg = (extra: string) => parseConfig(`upstream: http://127.0.0.1:1\nlightning: { type: dev }\n${extra}${ROUTES}`, { env: {} });
  assert.deepEqual(restartKeysChanged(cfg(''), cfg('free_paths: ["/public/"]\nl402: { unknown_caveats: reject }\n')), []);
  assert.deepEqual(restartKeysChanged(cfg(''), cfg('service: other\n')), ['service'], 'the check itself still sees changes');
});
