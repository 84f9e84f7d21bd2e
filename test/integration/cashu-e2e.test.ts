// Cashu P2PK end to end, as an operator runs it: l402d as its own process behind real nginx (HTTP/1.1 and
// h2c), tokens from real cashu-ts wallets. Every refusal the rail knows is a 400 with a fresh X-Cashu and
// never reaches the upstream; a kill -9 and restart keeps the spent set and the wallet; `l402d cashu
// status` shows the balance and `l402d cashu redeem` melts it to the operator's Lightning node, whose
// invoice the mint pays; `l402d doctor` checks the mint. No output carries a secret.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRandomSecretKey, decodePaymentRequest, getEncodedToken, getPubKeyFromPrivKey, type P2PKOptions } from '@cashu/cashu-ts';
import { Cleanup, freePort, http1, http2, requireTool, startCountingUpstream, startNginx, type CountingUpstream } from './harness.js';
import { nginxServers, TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { l402dArgs, startGateProcess, type GateProcess } from './gate-process.js';
import lightBolt11 from 'light-bolt11-decoder';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { loadConfigFile } from '../../src/config/config.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { hashToCurve } from '../../src/rails/cashu/secp256k1.js';
import { WalletDb } from '../../src/rails/cashu/wallet-db.js';

const skip = requireTool('nginx') ? false : 'nginx not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const nowSecs = () => Math.floor(Date.now() / 1000);
const gateKey = hex(createRandomSecretKey());
const gatePub = hex(getPubKeyFromPrivKey(Buffer.from(gateKey, 'hex')));

interface Env {
  dir: string;
  dataDir: string;
  configPath: string;
  port: number;
  mint: CashuMintPeer;
  other: CashuMintPeer;
  upstream: CountingUpstream;
  origin: string;
  h2: string;
  gate: GateProcess;
}
let env: Env | undefined;

async function setup(): Promise<Env> {
  if (env) return env;
  const dir = mkdtempSync(join(tmpdir(), 'l402-cashu-e2e-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  // The mint pays melt invoices by settling them in the operator's node: the dev wallet l402d uses.
  const operatorNode = DevWallet.open(dataDir);
  cleanup.add(() => operatorNode.close());
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint'), payees: [operatorNode], feeReserve: () => 2, feePaid: 1 });
  cleanup.add(() => mint.close());
  const other = await CashuMintPeer.start({ dataDir: join(dir, 'other-mint') });
  cleanup.add(() => other.close());
  const upstream = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const configPath = join(dir, 'l402.yaml');
  writeFileSync(
    configPath,
    `listen: 127.0.0.1:${port}
data_dir: ${dataDir}
root_key: ${TEST_ROOT_KEY}
log: { level: info }
cashu:
  mode: p2pk
  mints: ["${mint.url}"]
  p2pk:
    private_key: \${GATE_P2PK_KEY}
    min_locktime_secs: 3600
  redeem: { min_balance_sat: 1, fee_reserve_percent: 0, min_fee_reserve_sat: 2 }
lightning: { type: dev }
routes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /ecash-only, amount_msat: 2500, rails: [cashu] }
`,
  );
  const gate = cleanup.use(await startGateProcess(configPath, port, { GATE_P2PK_KEY: gateKey }));
  const snippets = join(dir, 'snippets');
  writeSnippets(loadConfigFile(configPath, { GATE_P2PK_KEY: gateKey }), snippets);
  const [web, h2Port] = [await freePort(), await freePort()];
  const grpcUnused = await freePort();
  cleanup.use(
    await startNginx({
      http: nginxServers(web, h2Port, upstream.port, grpcUnused, snippets).replace(
        'location /premium {',
        `location /ecash-only { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }\n        location /premium {`,
      ),
    }),
  );
  env = { dir, dataDir, configPath, port, mint, other, upstream, origin: `http://127.0.0.1:${web}`, h2: `http://127.0.0.1:${h2Port}`, gate };
  return env;
}

/** A token of `amount` sat from a fresh cashu-ts wallet, locked as the 402's request asks unless told otherwise. */
async function token(mint: CashuMintPeer, amount: number, lock: Partial<P2PKOptions> | null = {}) {
  const { wallet, proofs } = await mint.fundedWallet(amount + 16);
  const b = wallet.ops.send(amount, proofs);
  if (lock) b.asP2PK({ pubkey: gatePub, ...lock });
  const { send } = await b.run();
  return { token: getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send }), send };
}

/** Runs the CLI without blocking this process (the mint peer it talks to lives here). */
function l402d(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, l402dArgs(...args), { env: { ...process.env, L402_CONFIG: '', GATE_P2PK_KEY: gateKey }, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

const get = (e: Env, path: string, headers: Record<string, string> = {}) => http1(e.origin + path, { headers: { accept: 'application/json', ...headers } });

test('the 402 asks for a P2PK-locked token (HTTP/1.1 and h2c); a token paying it exactly passes once', { skip }, async () => {
  const e = await setup();
  e.upstream.reset();
  const challenge = await get(e, '/ecash-only');
  assert.equal(challenge.status, 402);
  assert.equal(challenge.headers['www-authenticate'], undefined, 'a Cashu-only route offers no Lightning invoice');
  const pr = decodePaymentRequest(String(challenge.headers['x-cashu']));
  assert.equal(Number(pr.amount), 3, '2500 msat is asked as 3 sat, never 2');
  assert.deepEqual(pr.mints, [e.mint.url]);
  assert.equal(pr.nut10?.kind, 'P2PK');
  assert.equal(pr.nut10?.data, gatePub);
  const h2Challenge = await http2(e.h2, '/premium', { headers: { accept: 'application/json' } });
  assert.equal(h2Challenge.status, 402);
  assert.equal(decodePaymentRequest(String(h2Challenge.headers['x-cashu'])).nut10?.data, gatePub);

  const paid = await token(e.mint, 3, { pubkey: pr.nut10!.data });
  const ok = await get(e, '/ecash-only', { 'x-cashu': paid.token });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(e.upstream.hits, 1);
  const again = await get(e, '/ecash-only', { 'x-cashu': paid.token });
  assert.equal(again.status, 400);
  assert.match(JSON.parse(again.body).detail, /already spent/);
  // Over HTTP/2 too, and with ngx_l402's Authorization: Cashu.
  const viaH2 = await http2(e.h2, '/premium', { headers: { 'x-cashu': (await token(e.mint, 10)).token } });
  assert.equal(viaH2.status, 200, viaH2.body);
  assert.equal((await get(e, '/premium', { authorization: `Cashu ${(await token(e.mint, 10)).token}` })).status, 200);
  assert.equal(e.upstream.hits, 3);
});

test('every kind of bad token is a 400 with the reason and a fresh X-Cashu, and never reaches the upstream', { skip }, async () => {
  const e = await setup();
  e.upstream.reset();
  const someone = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
  const sender = hex(getPubKeyFromPrivKey(createRandomSecretKey()));
  const good = await token(e.mint, 10);
  const tampered = good.send.map((p, i) => (i === 0 ? { ...p, C: hashToCurve('forged' + p.secret).hex } : p));
  const cases: Array<[string, string, RegExp]> = [
    ['underpayment', (await token(e.mint, 9)).token, /worth 9 sat; the price is 10 sat/],
    ['wrong unit', getEncodedToken({ mint: e.mint.url, unit: 'usd', proofs: good.send }), /unit is usd; this gate takes sat/],
    ['wrong mint', (await token(e.other, 10)).token, /is not accepted here/],
    ['forged signature', getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: tampered }), /DLEQ proof does not verify/],
    ['no DLEQ', getEncodedToken({ mint: e.mint.url, unit: 'sat', proofs: good.send }, { removeDleq: true }), /no DLEQ proof/],
    ['not locked', (await token(e.mint, 10, null)).token, /not locked to this gate/],
    ['locked to another key', (await token(e.mint, 10, { pubkey: someone })).token, /locked to another key/],
    ['extra signer', (await token(e.mint, 10, { pubkey: [gatePub, someone], requiredSignatures: 1 })).token, /additional signers/],
    ['SIG_ALL', (await token(e.mint, 10, { sigFlag: 'SIG_ALL' })).token, /SIG_INPUTS/],
    ['refund key, locktime passed', (await token(e.mint, 10, { locktime: nowSecs() - 5, refundKeys: [sender] })).token, /refund keys can spend/],
    ['no refund key, locktime passed', (await token(e.mint, 10, { locktime: nowSecs() - 5 })).token, /anyone can spend/],
    ['refund key, locktime too soon', (await token(e.mint, 10, { locktime: nowSecs() + 600, refundKeys: [sender] })).token, /too soon/],
    ['garbage', 'cashuBthisisnotatoken', /cannot be decoded/],
  ];
  for (const [name, t, why] of cases) {
    const r = await get(e, '/premium', { 'x-cashu': t });
    assert.equal(r.status, 400, `${name}: ${r.status} ${r.body}`);
    assert.ok(r.headers['x-cashu'], `${name}: fresh X-Cashu`);
    const body = JSON.parse(r.body);
    assert.equal(body.reason, 'cashu_rejected', name);
    assert.match(body.detail, why, name);
  }
  assert.equal(e.upstream.hits, 0, 'no refused token reached the upstream');
  // None of the refusals burnt the genuine proofs they reused; a far locktime with a refund key is fine.
  assert.equal((await get(e, '/premium', { 'x-cashu': good.token })).status, 200);
  const far = await token(e.mint, 10, { locktime: nowSecs() + 7 * 86400, refundKeys: [sender] });
  assert.equal((await get(e, '/premium', { 'x-cashu': far.token })).status, 200);
  assert.equal(e.upstream.hits, 2);
});

test('concurrent double spend through nginx: exactly one of six passes', { skip }, async () => {
  const e = await setup();
  e.upstream.reset();
  const { token: t } = await token(e.mint, 10);
  const rs = await Promise.all(Array.from({ length: 6 }, () => get(e, '/premium', { 'x-cashu': t })));
  assert.deepEqual(rs.map((r) => r.status).sort(), [200, 400, 400, 400, 400, 400]);
  assert.equal(e.upstream.hits, 1);
});

test('kill -9 and restart: spent tokens stay spent, the wallet keeps its proofs, new tokens pass', { skip }, async () => {
  const e = await setup();
  e.upstream.reset();
  const before = await token(e.mint, 10);
  assert.equal((await get(e, '/premium', { 'x-cashu': before.token })).status, 200);
  const balance = async () => JSON.parse((await l402d('cashu', 'status', '--json', '--config', e.configPath)).stdout) as { balances: Array<{ state: string; amount: number }> };
  const held = (await balance()).balances.filter((b) => b.state === 'unspent').reduce((s, b) => s + b.amount, 0);
  assert.ok(held >= 10, `the wallet holds what was paid so far (${held} sat)`);
  await e.gate.kill();
  e.gate = cleanup.use(await startGateProcess(e.configPath, e.port, { GATE_P2PK_KEY: gateKey }));
  const replay = await get(e, '/premium', { 'x-cashu': before.token });
  assert.equal(replay.status, 400, replay.body);
  assert.match(JSON.parse(replay.body).detail, /already spent/);
  assert.equal((await get(e, '/premium', { 'x-cashu': (await token(e.mint, 10)).token })).status, 200);
  assert.equal(e.upstream.hits, 2);
  assert.equal((await balance()).balances.filter((b) => b.state === 'unspent').reduce((s, b) => s + b.amount, 0), held + 10);
});

test('l402d cashu redeem melts the balance to the operator node; status shows the melt; doctor checks the mint; no secrets printed', { skip }, async () => {
  const e = await setup();
  const before = JSON.parse((await l402d('cashu', 'status', '--json', '--config', e.configPath)).stdout) as { balances: Array<{ state: string; amount: number }> };
  const held = before.balances.filter((b) => b.state === 'unspent').reduce((s, b) => s + b.amount, 0);
  assert.ok(held > 0);

  const r = await l402d('cashu', 'redeem', '--config', e.configPath);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  // reserve max(0%, 2 sat) → invoice for held − 2; the mint keeps its fee (1) and returns the rest as change.
  assert.match(r.stdout, new RegExp(`paid\\s+${e.mint.url.replace(/[.:/]/g, '\\$&')}\\s+operator, paid out ${held - 2} sat, from \\d+ proofs worth ${held} sat`), r.stderr);
  const melt = e.mint.meltQuotes.values().next().value!;
  assert.equal(melt.state, 'PAID');
  const operatorNode = DevWallet.open(e.dataDir);
  try {
    const hash = lightBolt11.decode(melt.request).sections.find((x) => x.name === 'payment_hash');
    const inv = await operatorNode.lookupInvoice(Buffer.from(String(hash && 'value' in hash ? hash.value : ''), 'hex'));
    assert.equal(inv.state, 'settled', 'the operator node received the payout');
  } finally {
    operatorNode.close();
  }

  const status = await l402d('cashu', 'status', '--config', e.configPath);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /seed fingerprint [0-9a-f]{8}/);
  assert.match(status.stdout, /operator {2}spent {2}\d+ sat/);
  assert.match(status.stdout, /melts \(newest first\):\n {2}\S+ {2}paid/);
  const after = JSON.parse((await l402d('cashu', 'status', '--json', '--config', e.configPath)).stdout) as { balances: Array<{ state: string; amount: number }>; melts: Array<Record<string, unknown>> };
  assert.equal(after.melts.length, 1);
  assert.equal(after.melts[0]!.state, 'paid');
  for (const k of ['invoice', 'quote', 'preimage']) assert.ok(!(k in after.melts[0]!), `status hides the melt's ${k}`);
  // The change (reserve 2 − fee 1) is back in the wallet, unspent.
  assert.equal(after.balances.filter((b) => b.state === 'unspent').reduce((s, b) => s + b.amount, 0), 1);
  // Nothing left worth melting: a second run says so and exits 0.
  const idle = await l402d('cashu', 'redeem', '--config', e.configPath);
  assert.equal(idle.code, 0, idle.stderr);
  assert.match(idle.stdout, /^no melt: /);

  const doctor = await l402d('doctor', '--config', e.configPath);
  assert.match(doctor.stdout, /ok {3}cashu wallet: cashu p2pk mode/);
  assert.match(doctor.stdout, new RegExp(`ok {3}cashu mints: cashu p2pk: ${e.mint.url.replace(/[.:/]/g, '\\$&')}`));

  const mnemonic = readFileSync(join(e.dataDir, 'cashu', 'wallet.mnemonic'), 'utf8').trim();
  const printed = [r.stdout, r.stderr, status.stdout, JSON.stringify(after), doctor.stdout, doctor.stderr, e.gate.output()].join('\n');
  for (const secret of [gateKey, mnemonic, mnemonic.split(' ').slice(0, 4).join(' '), String(melt.payment_preimage)]) {
    assert.ok(!printed.includes(secret), 'a secret was printed');
  }
});

test('doctor on a config whose wallet does not exist yet checks the mint without creating the wallet', { skip }, async () => {
  const e = await setup();
  const dataDir = join(e.dir, 'fresh');
  const cfg = join(e.dir, 'fresh.yaml');
  writeFileSync(cfg, readFileSync(e.configPath, 'utf8').replace(`data_dir: ${e.dataDir}`, `data_dir: ${dataDir}`).replace(/listen: .*/, 'listen: 127.0.0.1:1'));
  const doctor = await l402d('doctor', '--config', cfg);
  assert.match(doctor.stdout, /ok {3}cashu wallet: not created yet at .*fresh\/cashu\/wallet\.db/);
  assert.match(doctor.stdout, /ok {3}cashu mints: /);
  assert.throws(() => readFileSync(join(dataDir, 'cashu', 'wallet.mnemonic')), /ENOENT/);
  const status = await l402d('cashu', 'status', '--config', cfg);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /no Cashu wallet yet/);
  // A wallet database without its mnemonic: doctor says so and does not generate a new seed beside it.
  const orphanDir = join(e.dir, 'orphan');
  const orphanCfg = join(e.dir, 'orphan.yaml');
  new WalletDb(join(orphanDir, 'cashu', 'wallet.db')).close();
  writeFileSync(orphanCfg, readFileSync(cfg, 'utf8').replace(`data_dir: ${dataDir}`, `data_dir: ${orphanDir}`));
  const orphan = await l402d('doctor', '--config', orphanCfg);
  assert.equal(orphan.code, 1);
  assert.match(orphan.stdout, /FAIL cashu wallet: .*wallet\.db exists but its mnemonic file .*wallet\.mnemonic is missing/);
  assert.throws(() => readFileSync(join(orphanDir, 'cashu', 'wallet.mnemonic')), /ENOENT/);
  // A mint that is down is a FAIL line that says what still works.
  const down = join(e.dir, 'down.yaml');
  writeFileSync(down, readFileSync(cfg, 'utf8').replace(e.mint.url, `http://127.0.0.1:${await freePort()}`));
  const bad = await l402d('doctor', '--config', down);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /FAIL cashu mints: .*unreachable/);
});
