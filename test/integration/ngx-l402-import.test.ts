// `l402d import-ngx-l402` end to end: an operator's ngx_l402 deployment (nginx.conf with globbed includes, a
// shared snippet, its env file) is imported; l402d starts from the generated yaml; real nginx runs the
// changed copy the import wrote; a client pays through it (dev wallet), and credentials ngx_l402 sold pass.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cleanup, canConnect, freePort, http1, requireTool, startCountingUpstream, waitFor } from './harness.js';
import { l402dArgs, startGateProcess } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { ngxL402Credential } from '../peers/ngx-l402-credentials.js';
import { parseEnvFile } from '../../src/cli/ngx-l402-import/env-file.js';
import { parseTokens, tokenize } from '../../src/cli/ngx-l402-import/nginx-parse.js';

const nginxBin = requireTool('nginx');
const cleanup = new Cleanup();
after(() => cleanup.run());
const run = promisify(execFile);
const FIXTURE = new URL('./fixtures/ngx-l402/e2e/', import.meta.url).pathname;

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-import-'));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Every file under `dir`, with its text (to show the originals were not touched). */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(p, readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

async function l402d(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, l402dArgs(...args), { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

test('import an ngx_l402 deployment, start l402d and nginx from what it wrote, pay through it; ngx_l402 credentials keep working', { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
  const dir = tmp();
  const conf = join(dir, 'etc-nginx');
  const out = join(dir, 'out');
  const up = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const gatePort = await freePort();
  // The operator's files, with this test's prefix and ports filled in.
  cpSync(FIXTURE, conf, { recursive: true });
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  for (const f of ['nginx.conf', 'conf.d/api.conf']) {
    const p = join(conf, f);
    writeFileSync(
      p,
      readFileSync(p, 'utf8')
        .replaceAll('__DIR__', dir)
        .replaceAll('__USER__', isRoot ? 'user root root;' : '')
        .replaceAll('__PORT__', String(port))
        .replaceAll('__UPSTREAM__', String(up.port)),
    );
  }
  const before = snapshot(conf);
  const envFile = join(conf, 'ngx_l402.env');
  const env = Object.fromEntries([...parseEnvFile(readFileSync(envFile, 'utf8'), envFile)].map(([k, v]) => [k, v.value]));

  const metricsPort = await freePort();
  const imp = await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', out, '--listen', `127.0.0.1:${gatePort}`, '--metrics-listen', `127.0.0.1:${metricsPort}`]);
  // Incomplete, and says why: the LND paths are fine, but the import reports what it changed.
  assert.equal(imp.code, 0, imp.stdout + imp.stderr);
  assert.doesNotMatch(imp.stdout + imp.stderr, new RegExp(env.ROOT_KEY!), 'the root key is never printed');
  assert.match(imp.stdout, /routes: 3 \(\/premium, \/forever, ~ \^\/api\/v\[0-9\]\+\/report\$\)/);
  assert.match(imp.stdout, /satisfy any: removed/);
  assert.deepEqual(snapshot(conf), before, 'the originals are untouched');

  const yamlPath = join(out, 'l402.yaml');
  const yaml = readFileSync(yamlPath, 'utf8');
  assert.match(yaml, /^ngx_l402_root_key: "\$\{ROOT_KEY\}"$/m);
  assert.doesNotMatch(yaml, new RegExp(env.ROOT_KEY!));
  assert.match(yaml, /^lightning: \{ type: "lnd", address: "127.0.0.1:10009"/m);
  const plan = readFileSync(join(out, 'nginx-changes.txt'), 'utf8');
  assert.match(plan, new RegExp(`${join(conf, 'snippets/paid.conf').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\n\\s+line 2: remove \`l402 on;\``));
  assert.match(plan, /line 2: remove `load_module modules\/libngx_l402_lib.so;`/);
  // Lightning: the development wallet stands in for the operator's lnd (no real node in this test).
  writeFileSync(yamlPath, yaml.replace(/^lightning: .*$/m, 'lightning: { type: dev }'));

  const gate = cleanup.use(await startGateProcess(yamlPath, gatePort, env));
  cleanup.add(() => gate.stop());
  // nginx runs the changed copy, as the operator would after copying it over the originals.
  const copy = join(out, 'nginx');
  const nginxArgs = ['-p', `${copy}/`, '-c', join(copy, 'nginx.conf'), '-e', join(dir, 'error.log')];
  await run(nginxBin!, ['-t', ...nginxArgs]).catch((e: { stderr?: string }) => assert.fail(`nginx -t on the changed copy: ${e.stderr}`));
  const nginx = spawn(nginxBin!, nginxArgs, { stdio: 'ignore', detached: true });
  cleanup.add(async () => {
    try {
      process.kill(-nginx.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
    await new Promise((r) => (nginx.exitCode !== null ? r(null) : nginx.once('exit', r)));
  });
  await waitFor('nginx to accept', () => canConnect(port), { details: () => readFileSync(join(dir, 'error.log'), 'utf8') });
  const origin = `http://127.0.0.1:${port}`;
  const wallet = DevWallet.open(join(out, 'data'));
  cleanup.add(() => wallet.close());

  // Free location: untouched.
  assert.equal((await http1(origin + '/free')).status, 200);
  up.reset();
  // Pay through nginx.
  const challenge = await http1(origin + '/premium', { headers: { accept: 'application/json' } });
  assert.equal(challenge.status, 402, challenge.body);
  assert.equal(up.hits, 0, 'an unpaid request never reaches the upstream');
  const c = JSON.parse(challenge.body) as { macaroon: string; invoice: string; amount_msat?: number };
  const auth = `L402 ${c.macaroon}:${wallet.pay(c.invoice).toString('hex')}`;
  assert.equal((await http1(origin + '/premium', { headers: { authorization: auth } })).status, 200);
  assert.equal((await http1(origin + '/premium', { headers: { authorization: auth } })).status, 401, 'single-use, as ngx_l402');
  assert.equal(up.hits, 1);
  // The regex location, priced as written.
  const report = await http1(origin + '/api/v2/report', { headers: { accept: 'application/json' } });
  assert.equal(report.status, 402, report.body);
  assert.match(report.body, /3000/);

  // Credentials ngx_l402 sold before the switch.
  const sold = ngxL402Credential(env.ROOT_KEY!, '/premium');
  assert.equal((await http1(origin + '/premium', { headers: { authorization: sold.authorization } })).status, 200);
  assert.equal((await http1(origin + '/premium', { headers: { authorization: sold.authorization } })).status, 401);
  const forever = ngxL402Credential(env.ROOT_KEY!, '/forever');
  for (let i = 0; i < 2; i++) assert.equal((await http1(origin + '/forever', { headers: { authorization: forever.authorization } })).status, 200, 'indefinite, as l402_indefinite_access');
  const forged = ngxL402Credential('another key of 32 characters....', '/premium');
  assert.equal((await http1(origin + '/premium', { headers: { authorization: forged.authorization } })).status, 401);
  // ngx_l402's metrics location (a regex one) now shows l402d's metrics.
  const stats = await http1(origin + '/stats');
  assert.equal(stats.status, 200, stats.body);
  assert.match(stats.body, /^l402_/m);
  // The manifest ngx_l402 published at the same address.
  const manifest = await http1(origin + '/.well-known/l402-services');
  assert.equal(manifest.status, 200, manifest.body);
  assert.match(manifest.body, /Reports API/);
});

test('import-ngx-l402 refuses to overwrite, and names a missing include', async () => {
  const dir = tmp();
  // Named nginx/, so that --out DIR would write DIR/nginx/nginx.conf over it.
  const conf = join(dir, 'nginx');
  cpSync(FIXTURE, conf, { recursive: true });
  const out = join(dir, 'out');
  const envFile = join(conf, 'ngx_l402.env');
  chmodSync(join(conf, 'snippets', 'paid.conf'), 0o600);
  assert.equal((await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', out])).code, 0);
  // A copy keeps its original's mode (a config may hold credentials); the yaml is private.
  assert.equal(statSync(join(out, 'nginx', 'snippets', 'paid.conf')).mode & 0o777, 0o600);
  assert.equal(statSync(join(out, 'l402.yaml')).mode & 0o777, 0o600);
  const again = await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', out]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /refusing to overwrite/);
  assert.equal((await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', out, '--force'])).code, 0);
  // An output directory that would write over a file read is refused, even with --force.
  const original = readFileSync(join(conf, 'nginx.conf'), 'utf8');
  const over = await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', dir, '--force']);
  assert.equal(over.code, 2);
  assert.match(over.stderr, /is one of the files read/);
  assert.equal(readFileSync(join(conf, 'nginx.conf'), 'utf8'), original);
  writeFileSync(join(conf, 'conf.d', 'api.conf'), readFileSync(join(conf, 'conf.d', 'api.conf'), 'utf8').replace('include snippets/paid.conf;', 'include snippets/missing.conf;'));
  const missing = await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', join(dir, 'out2')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /api\.conf:\d+: cannot open .*snippets\/missing\.conf/);
  const help = await l402d(['import-ngx-l402', '--help']);
  assert.equal(help.code, 0);
  for (const o of ['--env <file>', '--out <dir>', '--listen <addr>', '--force']) assert.ok(help.stdout.includes(o), `--help names ${o}`);
});

test("the tokenizer accepts and refuses what nginx -t accepts and refuses", { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
  // Each case sits in a server block.
  const cases = [
    `add_header X-T "a;b";`,
    `add_header X-T 'a{b}';`,
    `add_header X-T a\\;b;`,
    `add_header X-T a"b";`,
    `add_header X-T "a\\"b";`,
    `add_header X-T 'it\\'s';`,
    `add_header X-T a#b;`,
    `add_header X-T "a"b;`,
    `add_header X-T "a"}`,
    `add_header X-T "open;`,
    `add_header X-T a b c d;`,
    `location ~ "^/x{2}$" { return 204; }`,
    `location ~ ^/x{2}$ { return 204; }`,
    `add_header X-T a;}`,
    `# only a comment { ; }`,
    `add_header X-T "multi\nline";`,
    `add_header X-T \${x};`,
  ];
  const port = await freePort();
  const dir = tmp();
  for (const c of cases) {
    const text = `events {}\nhttp {\n  server {\n    listen 127.0.0.1:${port};\n    ${c}\n  }\n}\n`;
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, `pid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\n${text}`);
    const nginxOk = await run(nginxBin!, ['-t', '-q', '-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log')]).then(
      () => true,
      (e: { stderr?: string }) => (/unexpected|unknown directive|invalid number of arguments|pcre|expecting/.test(e.stderr ?? '') ? false : e.stderr ?? 'other'),
    );
    let oursOk = true;
    try {
      parseTokens(tokenize(text, 'nginx.conf'), { path: 'nginx.conf', text });
    } catch {
      oursOk = false;
    }
    // A syntax error for nginx is one for us; a config nginx -t accepts we read too. (`${x}` is an unknown
    // variable to nginx, not a syntax error, and `a b c d` too many arguments: both are nginx's, not grammar.)
    if (nginxOk === true) assert.equal(oursOk, true, `nginx accepts, we refuse: ${c}`);
    else if (nginxOk === false && !/a b c d|\$\{x\}|\^\/x\{2\}\$ \{/.test(c)) assert.equal(oursOk, false, `nginx refuses, we accept: ${c}`);
  }
});
