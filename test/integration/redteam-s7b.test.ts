// Red team, session 7b: the decision's memories (verified macaroons with their kept caveat verdicts and
// matched preimages, remembered Authorization parses, the nginx target memo) never let a request through that
// the uncached path refuses. A reusable credential is used often enough through real nginx that every memory
// holds an entry for it, then presented where it must not open (another path's capability, another method a
// holder's copy excludes, another route), and after a reload that changes what the route needs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, waitFor, type CountingUpstream } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { storeKeys } from '../../src/policy/store-keys.js';
import { getEncodedToken } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { sleep } from '../../src/util/timeout.js';
import { startAnswerDropper } from '../support/answer-dropper.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let upstream: CountingUpstream;
let wallet: DevWallet;
let origin = '';
let gate: Awaited<ReturnType<typeof startGate>>;
let configText: (v: 1 | 2) => string;
let n = 0;
/** A fresh query per request: nginx's auth cache never answers for l402d here. */
const u = () => `?r=${++n}`;

before(async () => {
  if (!nginxBin) return;
  const dataDir = mkdtempSync(join(tmpdir(), 'l402-s7b-'));
  cleanup.add(() => rmSync(dataDir, { recursive: true, force: true }), 'rm data dir');
  const gatePort = await freePort();
  // v2 (the reload): the route also sells `admin`, which /t/admin/ now needs (credentials sold before lack it), and holders' unknown caveats are refused.
  configText = (v) => `listen: 127.0.0.1:${gatePort}\ndata_dir: ${dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }
${v === 2 ? 'l402: { unknown_caveats: reject }\n' : ''}routes:
  - id: t
    match: /t/
    amount_msat: 1000
    access: timed
    macaroon_timeout: 600
    capabilities: [read, write${v === 2 ? ', admin' : ''}]
    capability_rules:
      - { capability: read }
      - { capability: write, methods: [POST] }
${v === 2 ? '      - { capability: admin, path_prefix: /t/admin/ }\n' : ''}  - { id: other, match: /o/, amount_msat: 1000, access: timed, macaroon_timeout: 600 }
`;
  const cfg = parseConfig(configText(1), { env: {} });
  const sink = new PassThrough();
  sink.resume();
  gate = await startGate(cfg, { log: createLogger('warn', sink) });
  cleanup.add(() => gate.close(), 'l402d');
  wallet = DevWallet.open(dataDir);
  cleanup.add(() => wallet.close(), 'wallet');
  upstream = cleanup.use(await startCountingUpstream(), 'upstream');
  const dir = join(dataDir, 'nginx-l402');
  writeSnippets(cfg, dir);
  const port = await freePort();
  await cleanup.use(
    await startNginx({
      http: `
    include ${dir}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${dir}/server.conf;
        location / { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }
    }`,
    }),
    'nginx',
  );
  origin = `http://127.0.0.1:${port}`;
});
after(() => cleanup.run());

async function buy(path: string): Promise<{ macaroon: string; preimage: string }> {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const c = JSON.parse(r.body) as { macaroon: string; invoice: string };
  return { macaroon: c.macaroon, preimage: wallet.pay(c.invoice).toString('hex') };
}
const send = (path: string, auth: string, method = 'GET') => http1(origin + path + u(), { method, headers: { authorization: auth, accept: 'application/json' } });
const narrowed = (macaroon: string, ...caveats: string[]) => encodeMacaroonBase64(caveats.reduce((m, c) => attenuate(m, c), decodeMacaroonBase64(macaroon)));

test('kept verdicts answer only their own input: another method, path capability, route or a holder\'s narrower copy is checked afresh; a reload re-decides', { skip }, async () => {
  const c = await buy('/t/a');
  const auth = `L402 ${c.macaroon}:${c.preimage}`;
  // A holder's copy limited to GET and to /t/a, and one with a condition l402d does not know (skipped, v1).
  const getOnly = `L402 ${narrowed(c.macaroon, 'method=GET', 'path=/t/a')}:${c.preimage}`;
  const unknown = `L402 ${narrowed(c.macaroon, 'color=blue')}:${c.preimage}`;
  // Warm every memory: signature, kept verdict and matched preimage for each (credential, input).
  for (let i = 0; i < 3; i++) {
    for (const a of [auth, getOnly, unknown]) assert.equal((await send('/t/a', a)).status, 200);
    assert.equal((await send('/t/a', auth, 'POST')).status, 200);
    assert.equal((await send('/t/admin/x', auth)).status, 200);
  }
  // The narrower copy, remembered for GET /t/a, opens neither POST nor another path.
  for (const [path, method, reason] of [['/t/a', 'POST', 'wrong_method'], ['/t/b', 'GET', 'wrong_path']] as const) {
    const r = await send(path, getOnly, method);
    assert.equal(r.status, 401, `${method} ${path}: ${r.body}`);
    assert.match(r.body, new RegExp(reason));
  }
  // Another route, and a preimage that is not the one remembered.
  assert.match((await send('/o/a', auth)).body, /wrong_route/);
  const wrongPre = await send('/t/a', `L402 ${c.macaroon}:${'00'.repeat(32)}`);
  assert.equal(wrongPre.status, 401);
  assert.match(wrongPre.body, /wrong_preimage/);
  // The config changes under the kept verdicts: the new needs apply at once.
  gate.reload(parseConfig(configText(2), { env: {} }), 'test');
  const admin = await send('/t/admin/x', auth);
  assert.equal(admin.status, 401, admin.body);
  assert.match(admin.body, /missing_capability/);
  const strict = await send('/t/a', unknown);
  assert.equal(strict.status, 401, strict.body);
  assert.match(strict.body, /unknown_caveat/);
  // What the new config still allows stays open.
  assert.equal((await send('/t/a', auth)).status, 200);
});


test("nginx's retry of a request whose ecash the first l402d took (a balance top-up, a Cashu payment; two l402d, one SQLite file, a real mint): served once; credited, drawn and sold once", { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-s7b-cashu-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }), 'rm cashu dir');
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close(), 'mint');
  const site = cleanup.use(await startCountingUpstream(), 'meter upstream');
  const ports = [await freePort(), await freePort()];
  const data = join(dir, 'l402');
  const text = (port: number) => `listen: 127.0.0.1:${port}\ndata_dir: ${data}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }
cashu: { mode: standard, mints: ["${mint.url}"] }
routes:
  - { match: /meter/, amount_msat: 2000, access: balance, balance_msat: 4000, rails: [lightning, cashu] }
  - { match: /pay/, amount_msat: 2000, rails: [lightning, cashu] }
`;
  const sink = new PassThrough();
  sink.resume();
  const gates = [];
  for (const port of ports) {
    const g = await startGate(parseConfig(text(port), { env: {} }), { log: createLogger('warn', sink) });
    cleanup.add(() => g.close(), `l402d ${port}`);
    gates.push(g);
  }
  const dropper = await startAnswerDropper(ports[0]!, { dropping: false });
  cleanup.add(() => dropper.stop(), 'dropper');
  const snippets = join(dir, 'snippets');
  writeSnippets(parseConfig(text(ports[1]!), { env: {} }), snippets);
  // The first l402d behind the dropper; max_fails=0 keeps nginx trying it (round robin), so about every other
  // request is decided there first and retried on the second.
  const conf = readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/server [^;]+;/, `server 127.0.0.1:${dropper.port} max_fails=0;\n    server 127.0.0.1:${ports[1]} max_fails=0;`);
  writeFileSync(join(snippets, 'upstream.conf'), conf);
  const ngPort = await freePort();
  cleanup.use(
    await startNginx({
      workers: 1,
      http: `include ${snippets}/upstream.conf;
      server { listen 127.0.0.1:${ngPort}; include ${snippets}/server.conf;
        location /meter/ { include ${snippets}/protect.conf; include ${snippets}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; }
        location /pay/ { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${site.port}; } }`,
    }),
    'nginx (two l402d)',
  );
  const meter = `http://127.0.0.1:${ngPort}/meter/x`;
  const offer = await http1(meter, { headers: { accept: 'application/json' } });
  assert.equal(offer.status, 402, offer.body);
  const c = JSON.parse(offer.body) as { macaroon: string; invoice: string };
  const payer = DevWallet.open(data);
  cleanup.add(() => payer.close(), 'wallet (two l402d)');
  const auth = `L402 ${c.macaroon}:${payer.pay(c.invoice).toString('hex')}`;
  const key = storeKeys.balance(decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!.tokenId);
  const token = async (sats: number) => {
    const { wallet: w, proofs } = await mint.fundedWallet(sats + 8);
    const { send: out } = await w.ops.send(sats, proofs).run();
    return getEncodedToken({ mint: mint.url, unit: 'sat', proofs: out });
  };
  const tokens = [];
  for (let i = 0; i < 4; i++) tokens.push(await token(10));
  dropper.dropping = true;
  const hits0 = site.hits;
  try {
    for (const t of tokens) {
      const r = await http1(meter, { headers: { authorization: auth, 'x-cashu': t, accept: 'application/json' } });
      assert.equal(r.status, 200, `a top-up request whose first answer was lost: ${r.body}`);
    }
  } finally {
    dropper.dropping = false;
  }
  assert.ok(dropper.drops >= 1, `the first l402d answered (and was cut off) for some requests: ${dropper.drops}`);
  assert.equal(site.hits - hits0, tokens.length, 'each request served once');
  // 4000 bought + 4 x 10 sats of ecash - 4 x 2000 drawn: every top-up credited once, every request drawn once.
  assert.equal(await gates[1]!.gate.parts.store.getBalance!(key), 4000 + 4 * 10_000 - 4 * 2000);
  // The same ecash sent again by a new request is a replay: refused, nothing added.
  const replay = await http1(meter, { headers: { authorization: auth, 'x-cashu': tokens[0]!, accept: 'application/json' } });
  assert.equal(replay.status, 400, replay.body);
  assert.equal(await gates[1]!.gate.parts.store.getBalance!(key), 4000 + 4 * 10_000 - 4 * 2000);

  // The same on a route that takes ecash per request (no balance): the retry is served, once; a replay is not.
  const pay = `http://127.0.0.1:${ngPort}/pay/x`;
  const cash = [];
  for (let i = 0; i < 4; i++) cash.push(await token(2));
  dropper.dropping = true;
  dropper.drops = 0;
  const hits1 = site.hits;
  try {
    for (const t of cash) {
      const r = await http1(pay, { headers: { 'x-cashu': t, accept: 'application/json' } });
      assert.equal(r.status, 200, `a Cashu payment whose first answer was lost: ${r.body}`);
    }
  } finally {
    dropper.dropping = false;
  }
  assert.ok(dropper.drops >= 1, `some first answers were cut off: ${dropper.drops}`);
  assert.equal(site.hits - hits1, cash.length, 'each paid request served once');
  const again = await http1(pay, { headers: { 'x-cashu': cash[0]!, accept: 'application/json' } });
  assert.equal(again.status, 400, again.body);
  // One sale per payment, though two l402d allowed each retried request (the sale is keyed by the token).
  const ledger = gates[1]!.gate.parts.store.ledger();
  const paySales = async () => (await ledger.recentSales(100)).filter((x) => x.route === '/pay/');
  await waitFor('the Cashu sales recorded', async () => (await paySales()).length >= cash.length, { timeoutMs: 10_000, intervalMs: 50 });
  await sleep(200);
  assert.equal((await paySales()).length, cash.length, 'no sale counted twice');
});
