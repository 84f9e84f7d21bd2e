// The l402d command line as an operator uses it: help, config errors, nginx-conf, dev pay.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { l402dArgs } from './gate-process.js';
import { requireTool } from './harness.js';
import { DevWallet } from '../../src/rails/lightning/dev-wallet.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-cli-'));
  dirs.push(d);
  return d;
}
function l402d(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, l402dArgs(...args), { cwd: opts.cwd ?? REPO, env: { ...process.env, L402_CONFIG: '', ...opts.env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('every command has --help', () => {
  for (const args of [['--help'], ['start', '--help'], ['nginx-conf', '--help'], ['dev', 'pay', '--help'], ['quickstart', '--help'], ['cashu', 'status', '--help'], ['cashu', 'redeem', '--help'], ['doctor', '--help']]) {
    const r = l402d(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: l402d/);
  }
});

test('config errors exit non-zero and name the key and line', () => {
  const d = tmp();
  writeFileSync(join(d, 'bad.yaml'), `root_key: ${TEST_ROOT_KEY}\nroutes:\n  - match: /premium\n    amount_msat: -5\n`);
  const r = l402d(['start', '--config', join(d, 'bad.yaml')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.yaml:4: routes\[0\]\.amount_msat: /);
  const missing = l402d(['start', '--config', join(d, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read config file .*nope\.yaml: ENOENT/);
});

test('weak root keys are refused at start, without echoing the key', () => {
  const d = tmp();
  for (const key of ['short-key', 'a'.repeat(64), '0123456789abcdef'.repeat(4)]) {
    writeFileSync(join(d, 'weak.yaml'), `listen: 127.0.0.1:0\ndata_dir: ${d}\nroot_key: \${ROOT_KEY}\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
    const r = l402d(['start', '--config', join(d, 'weak.yaml')], { env: { ROOT_KEY: key } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /root_key: too (short|little entropy)/);
    assert.ok(!r.stderr.includes(key), 'key echoed');
  }
});

test('nginx-conf prints the snippets; the committed nginx/l402 files match the defaults', () => {
  const r = l402d(['nginx-conf']);
  assert.equal(r.code, 0, r.stderr);
  for (const name of ['upstream.conf', 'server.conf', 'protect.conf', 'dry-run.conf']) {
    assert.ok(r.stdout.includes(readFileSync(join(REPO, 'nginx/l402', name), 'utf8')), `nginx/l402/${name} is out of date: regenerate with l402d nginx-conf --out nginx/l402`);
  }
  const d = tmp();
  writeFileSync(join(d, 'c.yaml'), `listen: unix:/run/l402.sock\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const out = l402d(['nginx-conf', '--config', join(d, 'c.yaml'), '--out', join(d, 'snip')]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(readFileSync(join(d, 'snip', 'upstream.conf'), 'utf8'), /server unix:\/run\/l402\.sock;/);
});

test('the example nginx.conf is accepted by nginx -t', { skip: requireTool('nginx') ? false : 'nginx not installed' }, () => {
  const d = tmp();
  cpSync(join(REPO, 'nginx'), d, { recursive: true });
  const r = spawnSync(requireTool('nginx')!, ['-t', '-p', d, '-c', join(d, 'nginx.conf'), '-e', join(d, 'error.log'), '-g', `pid ${d}/nginx.pid;`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('dev pay prints the preimage alone, and refuses unknown, paid and malformed invoices', async () => {
  const d = tmp();
  writeFileSync(join(d, 'c.yaml'), `data_dir: ${d}\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const w = DevWallet.open(d);
  const inv = await w.createInvoice({ amountMsat: 1000, memo: 'cli', expirySecs: 600 });
  const other = DevWallet.open(tmp());
  const foreign = await other.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 600 });
  other.close();
  const ok = l402d(['dev', 'pay', inv.bolt11, '--config', join(d, 'c.yaml')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^[0-9a-f]{64}\n$/);
  assert.equal((await w.lookupInvoice(inv.paymentHash)).state, 'settled');
  w.close();
  for (const [bolt11, msg] of [[inv.bolt11, /already paid/], [foreign.bolt11, /unknown|not/i], ['lnbcrt1garbage', /./]] as const) {
    const r = l402d(['dev', 'pay', bolt11, '--config', join(d, 'c.yaml')]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, msg);
  }
});

test('doctor reports each check and exits non-zero with an actionable message', () => {
  const d = tmp();
  writeFileSync(join(d, 'ok.yaml'), `listen: 127.0.0.1:1\ndata_dir: ${d}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const ok = l402d(['doctor', '--config', join(d, 'ok.yaml')]);
  // The development wallet is loud: not real money, so doctor does not call it ok (exit 1).
  assert.equal(ok.code, 1, ok.stdout + ok.stderr);
  for (const what of ['config', 'root key', 'data dir', 'store', 'l402d']) assert.match(ok.stdout, new RegExp(`^ok +${what}: `, 'm'));
  assert.match(ok.stdout, /^FAIL lightning: dev: DEVELOPMENT WALLET, NOT REAL MONEY/m);
  assert.ok(!ok.stdout.includes(TEST_ROOT_KEY));
  writeFileSync(join(d, 'bad.yaml'), `data_dir: ${d}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "redis://127.0.0.1:1" }\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const bad = l402d(['doctor', '--config', join(d, 'bad.yaml')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^FAIL store: redis: cannot connect to redis: .*ECONNREFUSED.*is redis-server running/m);
});
