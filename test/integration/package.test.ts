// The package as an operator installs it: `npm pack` builds and ships only what runs, a global install
// works from any directory, and the systemd unit passes `systemd-analyze verify` with its hardening intact.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireTool } from './harness.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-pkg-'));
  dirs.push(d);
  return d;
}
function run(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: { ...process.env, L402_CONFIG: '', ...opts.env }, encoding: 'utf8', timeout: opts.timeoutMs, maxBuffer: 64 << 20 });
  const what = `${cmd} ${args.join(' ')} (in ${opts.cwd})`;
  if (r.error) throw new Error(`${what}: ${r.error.message}\n${r.stderr ?? ''}`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, what };
}

test('npm pack builds dist/ and ships only what runs; installed globally, l402d works from any directory', () => {
  // Pack a copy of the checkout (tracked and untracked-but-not-ignored files, no dist/): the tarball must be
  // built by the pack itself, and packing must not touch the checkout the other tests run from.
  const src = join(tmp(), 'src');
  const listed = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO, timeoutMs: 30_000 });
  assert.equal(listed.code, 0, listed.stderr);
  for (const f of listed.stdout.split('\0').filter(Boolean)) {
    try {
      mkdirSync(dirname(join(src, f)), { recursive: true });
      cpSync(join(REPO, f), join(src, f));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // deleted but not yet committed
    }
  }
  symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'));

  const out = tmp();
  const pack = run('npm', ['pack', '--pack-destination', out, '--no-audit', '--no-fund'], { cwd: src, timeoutMs: 100_000 });
  assert.equal(pack.code, 0, `${pack.what}\n${pack.stdout}\n${pack.stderr}`);
  const tgz = join(out, `${PKG.name}-${PKG.version}.tgz`);
  const list = run('tar', ['tzf', tgz], { cwd: out, timeoutMs: 30_000 });
  assert.equal(list.code, 0, list.stderr);
  const files = list.stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));

  for (const need of ['package.json', 'README.md', 'LICENSE', 'bin/l402d.js', 'dist/cli/main.js', 'dist/server/http-server.js', 'packaging/l402d.service', 'nginx/nginx.conf', 'nginx/l402/protect.conf', 'docs/install.md']) {
    assert.ok(files.includes(need), `the tarball lacks ${need}`);
  }
  const stray = files.filter((f) => /^(src|test|bench|scripts|\.ci|node_modules|data|test-artifacts)\//.test(f) || /\.(ts|map|log|db|key)$/.test(f) || /(^|\/)\.(git|env)/.test(f));
  assert.deepEqual(stray, [], 'the tarball ships files that do not run');
  // Only what runs and what an operator reads: the compiled code, the CLI, nginx snippets, the unit, the docs.
  const outside = files.filter((f) => !/^(dist|bin|nginx|packaging|docs)\//.test(f) && !['package.json', 'README.md', 'LICENSE'].includes(f));
  assert.deepEqual(outside, [], 'the tarball ships files outside what runs');
  assert.ok(files.every((f) => !f.startsWith('dist/') || f.endsWith('.js') || f.endsWith('.proto') || f.endsWith('.json')), 'dist/ ships only compiled code and its data');
  assert.match(readFileSync(join(src, 'LICENSE'), 'utf8'), /MIT License[\s\S]*Copyright \(c\) 2026 the l402-nginx authors/);

  // Global install into a temporary prefix, dependencies from npm's cache where it has them. Install scripts
  // are skipped to stay within the test's time: better-sqlite3's compiles SQLite (minutes without a prebuilt
  // binary); its addon is taken from the checkout instead (same pinned version, built for this Node).
  const prefix = join(tmp(), 'prefix');
  const inst = run('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tgz], { cwd: out, timeoutMs: 90_000 });
  assert.equal(inst.code, 0, `${inst.what}\n${inst.stdout}\n${inst.stderr}`);
  const installed = join(prefix, 'lib', 'node_modules', PKG.name);
  // Likewise secp256k1's (libsecp256k1, which l402d loads with no JavaScript fallback) when the checkout
  // built it; otherwise the package's own prebuilt addon for this platform serves, as in the checkout.
  const secpAddon = 'node_modules/secp256k1/build/Release/addon.node';
  for (const addon of ['node_modules/better-sqlite3/build/Release/better_sqlite3.node', ...(existsSync(join(REPO, secpAddon)) ? [secpAddon] : [])]) {
    mkdirSync(dirname(join(installed, addon)), { recursive: true });
    cpSync(join(REPO, addon), join(installed, addon));
  }
  const l402d = join(prefix, 'bin', 'l402d');

  // From a directory that is neither the checkout nor the install.
  const elsewhere = tmp();
  const version = run(l402d, ['--version'], { cwd: elsewhere, timeoutMs: 30_000 });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), PKG.version);
  const help = run(l402d, ['--help'], { cwd: elsewhere, timeoutMs: 30_000 });
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /-V, --version/);
  assert.match(help.stdout, /nginx-conf/);
  const conf = run(l402d, ['nginx-conf'], { cwd: elsewhere, timeoutMs: 30_000 });
  assert.equal(conf.code, 0, conf.stderr);
  for (const name of ['upstream.conf', 'server.conf', 'protect.conf']) {
    assert.equal(conf.stdout.includes(`# ---- ${name} ----\n${readFileSync(join(REPO, 'nginx/l402', name), 'utf8')}`), true, `nginx-conf prints the shipped ${name}`);
  }

  // doctor against a small config: loads the config, the SQLite store (native addon built for this Node) and the dev wallet.
  writeFileSync(join(elsewhere, 'l402.yaml'), 'listen: 127.0.0.1:1\ndata_dir: ./state\nlightning: { type: dev }\nroutes:\n  - match: /premium\n    amount_msat: 10000\n');
  const doctor = run(l402d, ['doctor', '--config', 'l402.yaml'], { cwd: elsewhere, timeoutMs: 60_000 });
  assert.match(doctor.stdout, /^ok {3}store: sqlite/m, `${doctor.stdout}\n${doctor.stderr}`);
  assert.match(doctor.stdout, /^ok {3}config: /m, doctor.stdout);
  // The dev wallet is reported as a failure (never real money); nothing else may fail.
  assert.match(doctor.stdout, /^FAIL lightning: dev: DEVELOPMENT WALLET/m, doctor.stdout);
  assert.doesNotMatch(doctor.stdout, /^FAIL (?!l402d:|lightning: dev:)/m, doctor.stdout);
  assert.doesNotMatch(doctor.stderr, /ERR_MODULE_NOT_FOUND|Cannot find/);
});

test('the systemd unit passes systemd-analyze verify and keeps its hardening', (t) => {
  const analyze = requireTool('systemd-analyze');
  if (!analyze) return t.skip('systemd-analyze not installed (apt-get install systemd)');
  const unit = readFileSync(join(REPO, 'packaging/l402d.service'), 'utf8');
  const directives = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) directives.set(m[1]!, [...(directives.get(m[1]!) ?? []), m[2]!]);
  }
  const one = (k: string) => directives.get(k)?.at(-1);
  assert.match(one('ExecStart') ?? '', /^\/\S*\/l402d start --config \/etc\/l402\/l402\.yaml$/);
  assert.ok(one('DynamicUser') === 'yes' || (one('User') ?? 'root') !== 'root', 'runs as its own user');
  assert.equal(one('StateDirectory'), 'l402');
  assert.equal(one('ConfigurationDirectory'), 'l402');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('ProtectHome'), 'yes');
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.equal(one('CapabilityBoundingSet'), '');
  assert.equal(one('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6');
  assert.ok(directives.get('SystemCallFilter')?.includes('@system-service'));
  assert.equal(one('Restart'), 'on-failure');
  assert.match(one('EnvironmentFile') ?? '', /^-?\/etc\/l402\//);
  // l402d re-reads its config on SIGHUP (test/integration/reload.test.ts): `systemctl reload l402d` sends it.
  assert.match(readFileSync(join(REPO, 'src/cli/workers.ts'), 'utf8'), /process\.on\('SIGHUP'/, 'l402d handles SIGHUP');
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');

  // verify checks that ExecStart exists: point it at a real executable, keep everything else as shipped.
  const d = tmp();
  const path = join(d, 'l402d.service');
  writeFileSync(path, unit.replace(/^ExecStart=\S+/m, `ExecStart=${join(REPO, 'bin/l402d.js')}`));
  const r = run(analyze, ['verify', path], { cwd: d, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  // verify exits 0 on an unknown key or a bad value ("ignoring"): any message is a failure.
  const messages = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() && !/Failed to (connect to|initialize) .*bus|No such file or directory.*\/run\/systemd/i.test(l));
  assert.deepEqual(messages, []);
  // systemd's own exposure score (0 = locked down, 10 = unprotected) stays "OK" (below 2.5; 1.7 when written).
  const sec = run(analyze, ['security', '--offline=true', '--threshold=25', '--no-pager', path], { cwd: d, timeoutMs: 60_000 });
  assert.equal(sec.code, 0, `${sec.stdout}\n${sec.stderr}`);
  assert.match(sec.stdout, /Overall exposure level for l402d\.service: (0|1|2\.[0-4])\.?\d* /);
});
