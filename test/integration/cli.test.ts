// The l402d command line as an operator uses it: help, config errors, nginx-conf, dev pay.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { l402dArgs } from './gate-process.js';
import { requireTool } from './harness.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
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
  // tsx by its resolved URL, so a command can run in any directory.
  const r = spawnSync(process.execPath, l402dArgs(...args).map((a) => (a === 'tsx' ? import.meta.resolve('tsx') : a)), { cwd: opts.cwd ?? REPO, env: { ...process.env, L402_CONFIG: '', ...opts.env }, encoding: 'utf8', timeout: 30_000 });
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

test('doctor creates nothing (no data dir, root key, store or dev wallet) and says when it checks the embedded defaults', () => {
  const cwd = tmp();
  const r = l402d(['doctor'], { cwd });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^ok +config: \(embedded defaults\): no --config and no \$L402_CONFIG: the embedded development defaults \(data dir .*\/data, sqlite .*l402\.db\)/m);
  assert.match(r.stdout, /^ok +root key: no root_key: l402d start generates a development key at .*root\.key \(not created by doctor\)/m);
  assert.match(r.stdout, /^ok +data dir: .* does not exist yet: l402d start creates it/m);
  assert.match(r.stdout, /^ok +store: sqlite .*l402\.db does not exist yet/m);
  assert.match(r.stdout, /^FAIL lightning: dev: DEVELOPMENT WALLET/m);
  assert.deepEqual(readdirSync(cwd), [], 'doctor wrote into the current directory');
  // With a config too: a data_dir that does not exist stays so.
  const d = tmp();
  writeFileSync(join(d, 'c.yaml'), `listen: 127.0.0.1:1\ndata_dir: ${d}/state\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const c = l402d(['doctor', '--config', join(d, 'c.yaml')], { cwd });
  assert.match(c.stdout, /^ok +store: sqlite .*\/state\/l402\.db does not exist yet/m, c.stdout + c.stderr);
  assert.ok(!existsSync(join(d, 'state')), 'doctor created the data dir');
  assert.deepEqual(readdirSync(cwd), []);
});

test('price: refused without a config, names its store, refuses a path no route covers or that nginx would not match, shows the static price', () => {
  const cwd = tmp();
  const refused = l402d(['price', 'set', '5', '--route', '/p'], { cwd });
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /give the running gate's config \(--config FILE or \$L402_CONFIG\)/);
  assert.deepEqual(readdirSync(cwd), [], 'price wrote a store into the current directory');
  const d = tmp();
  const file = join(d, 'c.yaml');
  writeFileSync(file, `data_dir: ${d}\nlightning: { type: dev }\nroutes:\n  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 60 }\n  - { match: = /exact, amount_msat: 100 }\n`);
  const price = (...args: string[]) => l402d(['price', ...args, '--config', file], { cwd });
  for (const path of ['/nope', '/exact/', '/timed']) {
    const r = price('set', '7', '--path', path);
    assert.equal(r.code, 2, path);
    assert.match(r.stderr, /no route in the config covers this path/);
  }
  for (const path of ['/timed//a', '/timed/./a', '/timed/b/../a', '/timed/%61', 'timed/a', '/timed/a?x=1']) {
    const r = price('set', '7', '--path', path);
    assert.equal(r.code, 2, path);
    assert.match(r.stderr, /--path .*(normalised path "\/timed\/a"|starting with \/)/, path);
  }
  // Non-ASCII: the gate prices the decoded UTF-8 path, so that is the spelling to give.
  assert.equal(price('set', '900', '--path', '/timed/café').code, 0);
  assert.match(price('set', '900', '--path', '/timed/caf%C3%A9').stderr, /normalised path "\/timed\/café"/);
  assert.equal(price('set', '900', '--path', '/timed/%FF').code, 2);
  const set = price('set', '700', '--path', '/timed/a');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stderr, new RegExp(`^store: sqlite ${d}/l402\\.db$`, 'm'));
  const got = price('get', '--path', '/timed/a');
  assert.match(got.stdout, /^price:path:\/timed\/a = 700$/m);
  assert.match(got.stdout, /^static: route \/timed\/ amount_msat 5000$/m);
  assert.match(got.stdout, /^charged: 700 msat/m);
  assert.doesNotMatch(set.stderr, /warning/);
  // A path a pinned route also covers: the path price reaches that route's locations too, and set says so.
  const pinnedFile = join(d, 'pinned.yaml');
  writeFileSync(pinnedFile, `data_dir: ${d}\nlightning: { type: dev }\nroutes:\n  - { id: dear, match: /api/, amount_msat: 5000 }\n  - { id: cheap, match: = /api/x, amount_msat: 1, pinned: true }\n`);
  const pinnedSet = l402d(['price', 'set', '9', '--path', '/api/x', '--config', pinnedFile], { cwd });
  assert.equal(pinnedSet.code, 0, pinnedSet.stderr);
  assert.match(pinnedSet.stderr, /warning: price:path also prices \/api\/x in a location that pins another route covering it \(cheap\)/);
  const route = price('get', '--route', '/timed/');
  assert.match(route.stdout, /^price:route:\/timed\/ = \(not set\)$/m);
  assert.match(route.stdout, /^static: route \/timed\/ amount_msat 5000$/m);
  assert.match(route.stdout, /^charged: 5000 msat \(static\)$/m);
  // A memory store lives inside l402d: nothing to set from here.
  writeFileSync(join(d, 'm.yaml'), `store: { type: memory }\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const mem = l402d(['price', 'set', '5', '--route', '/p', '--config', join(d, 'm.yaml')], { cwd });
  assert.equal(mem.code, 2);
  assert.match(mem.stderr, /store\.type is memory/);
  assert.deepEqual(readdirSync(cwd), []);
});

test('nginx-conf needs only the ${VAR}s its snippets carry; --help counts the files it writes', () => {
  const d = tmp();
  const file = join(d, 'c.yaml');
  writeFileSync(file, `root_key: \${UNSET_ROOT_KEY}\nlightning: { type: eclair, url: http://127.0.0.1:8080, password: "\${UNSET_ECLAIR_PASSWORD}" }\nmetrics: { listen: 127.0.0.1:9402, token: "\${UNSET_METRICS_TOKEN}" }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const ok = l402d(['nginx-conf', '--config', file, '--out', join(d, 'snip')]);
  assert.equal(ok.code, 0, ok.stderr);
  const written = readdirSync(join(d, 'snip')).sort();
  for (const name of written) assert.doesNotMatch(readFileSync(join(d, 'snip', name), 'utf8'), /[0-9a-f]{64}/, `${name} carries a placeholder`);
  // nginx_secret is written into server.conf: its variable must be set.
  writeFileSync(file, `nginx_secret: \${UNSET_NGINX_SECRET}\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  const need = l402d(['nginx-conf', '--config', file]);
  assert.equal(need.code, 2);
  assert.match(need.stderr, /environment variable UNSET_NGINX_SECRET is not set/);
  assert.equal(need.stdout, '');
  // A variable in a value that does not validate without it is still named.
  writeFileSync(file, `listen: \${UNSET_LISTEN}\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`);
  assert.match(l402d(['nginx-conf', '--config', file]).stderr, /environment variable UNSET_LISTEN is not set/);
  const help = l402d(['nginx-conf', '--help']).stdout.replace(/\s+/g, ' ');
  const words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
  assert.ok(help.includes(`write the ${words[written.length]} files`), help);
  for (const name of written) assert.ok(help.includes(name), `--help does not name ${name}`);
});

test('nginx-conf into a pipe closed early (l402d nginx-conf | head) exits quietly, no EPIPE crash', async () => {
  const child = spawn(process.execPath, l402dArgs('nginx-conf'), { cwd: REPO, env: { ...process.env, L402_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((ok) => child.on('exit', (c) => ok(c)));
  assert.doesNotMatch(err, /EPIPE|Unhandled/, err);
  assert.equal(code, 0, err);
});

test('dev pay without a wallet in the data dir (no --config, another directory) refuses and creates none', () => {
  const cwd = tmp();
  const r = l402d(['dev', 'pay', 'lnbcrt10n1anything'], { cwd });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no development wallet in .*\/data \(no --config and no \$L402_CONFIG: the embedded development defaults/);
  assert.deepEqual(readdirSync(cwd), []);
});

test('quickstart has --port and refuses a port already in use instead of running behind a dead nginx', async () => {
  const cwd = tmp();
  const busy = createServer();
  await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', () => ok()));
  const port = (busy.address() as { port: number }).port;
  try {
    const help = l402d(['quickstart', '--help']);
    assert.match(help.stdout, /--port <port>/);
    const r = l402d(['quickstart', '--port', String(port)], { cwd });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`port ${port} \\((nginx|l402d)\\) is already in use`));
    assert.match(l402d(['quickstart', '--port', 'http'], { cwd }).stderr, /--port: "http" is not a port/);
  } finally {
    busy.close();
  }
});
