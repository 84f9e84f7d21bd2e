// `l402d import-ngx-l402` end to end: an operator's ngx_l402 deployment (nginx.conf with globbed includes, a
// shared snippet, its env file) is imported; l402d starts from the generated yaml; real nginx runs the
// changed copy the import wrote; a client pays the node through it, and credentials ngx_l402 sold pass.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cleanup, canConnect, freePort, http1, requireTool, startCountingUpstream, startRedis, waitFor } from './harness.js';
import { Redis } from 'ioredis';
import { decodePaymentRequest, getEncodedToken } from '@cashu/cashu-ts';
import { CashuMintPeer } from '../peers/cashu-mint.js';
import { l402dArgs, startGateProcess, type GateProcess } from './gate-process.js';
import { startLndPeer } from '../peers/lnd-peer.js';
import { startClnPeer } from '../peers/cln-peer.js';
import { startNwcPeer } from '../peers/nwc-peer.js';
import { startEclairPeer } from '../peers/eclair-peer.js';
import { startLnurlPeer } from '../peers/lnurl-peer.js';
import lightBolt11 from 'light-bolt11-decoder';
import { startLncNode, startMailbox } from '../peers/lnc-peer.js';
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

/** Starts l402d from the yaml the import wrote (unchanged) and nginx from the changed copy of the operator's files. */
async function serve(dir: string, out: string, port: number, gatePort: number, env: NodeJS.ProcessEnv): Promise<{ origin: string; gate: GateProcess }> {
  const gate = cleanup.use(await startGateProcess(join(out, 'l402.yaml'), gatePort, env));
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
  await waitFor('nginx to accept', () => canConnect(port), { details: () => readFileSync(join(dir, 'error.log'), 'utf8') + gate.output() });
  return { origin: `http://127.0.0.1:${port}`, gate };
}

/** Sets (or adds) NAME=value lines of an env file. */
function setEnv(file: string, vars: Record<string, string>): void {
  let text = readFileSync(file, 'utf8');
  for (const [k, v] of Object.entries(vars)) {
    const line = `${k}=${v}`;
    text = new RegExp(`^${k}=.*$`, 'm').test(text) ? text.replace(new RegExp(`^${k}=.*$`, 'm'), line) : `${text}${line}\n`;
  }
  writeFileSync(file, text);
}

/** A 402 as JSON, a payment at the node, the paid request through nginx, once. */
async function payThrough(origin: string, path: string, settle: (bolt11: string) => Buffer, up: { hits: number; reset(): void }): Promise<{ invoice: string }> {
  up.reset();
  const challenge = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(challenge.status, 402, challenge.body);
  assert.equal(up.hits, 0, 'an unpaid request never reaches the upstream');
  const c = JSON.parse(challenge.body) as { macaroon: string; invoice: string; payment_hash: string };
  const preimage = settle(c.invoice);
  assert.equal(createHash('sha256').update(preimage).digest('hex'), c.payment_hash);
  const auth = `L402 ${c.macaroon}:${preimage.toString('hex')}`;
  const paid = await http1(origin + path, { headers: { authorization: auth } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal((await http1(origin + path, { headers: { authorization: auth } })).status, 401, 'single-use, as ngx_l402');
  assert.equal(up.hits, 1);
  return { invoice: c.invoice };
}

test('import an ngx_l402 deployment on lnd, start l402d (yaml unchanged) and nginx from what it wrote, pay at the node through it; ngx_l402 credentials keep working', { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
  const dir = tmp();
  const conf = join(dir, 'etc-nginx');
  const out = join(dir, 'out');
  const up = cleanup.use(await startCountingUpstream());
  // The operator's lnd: lnd's own gRPC over TLS with a macaroon.
  const lnd = cleanup.use(await startLndPeer(), 'lnd peer');
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
  const envFile = join(conf, 'ngx_l402.env');
  // ngx_l402's variables pointing at the node's address, certificate and macaroon.
  setEnv(envFile, { LND_ADDRESS: lnd.grpcAddress, MACAROON_FILE_PATH: lnd.macaroonPath, CERT_FILE_PATH: lnd.certPath });
  const before = snapshot(conf);
  const env = Object.fromEntries([...parseEnvFile(readFileSync(envFile, 'utf8'), envFile)].map(([k, v]) => [k, v.value]));

  const metricsPort = await freePort();
  const imp = await l402d(['import-ngx-l402', conf, '--env', envFile, '--out', out, '--listen', `127.0.0.1:${gatePort}`, '--metrics-listen', `127.0.0.1:${metricsPort}`]);
  assert.equal(imp.code, 0, imp.stdout + imp.stderr);
  assert.doesNotMatch(imp.stdout + imp.stderr, new RegExp(env.ROOT_KEY!), 'the root key is never printed');
  assert.match(imp.stdout, /routes: 6 \(\/premium, \/forever, \/auto, \/shadow, \/limited, ~ \^\/api\/v\[0-9\]\+\/report\$\)/);
  assert.match(imp.stdout, /satisfy any: removed/);
  assert.deepEqual(snapshot(conf), before, 'the originals are untouched');

  const yaml = readFileSync(join(out, 'l402.yaml'), 'utf8');
  assert.match(yaml, /^ngx_l402_root_key: "\$\{ROOT_KEY\}"$/m);
  assert.doesNotMatch(yaml, new RegExp(env.ROOT_KEY!));
  assert.ok(yaml.includes(`lightning: { type: "lnd", address: "${lnd.grpcAddress}", tls_cert_path: "${lnd.certPath}", macaroon_path: "${lnd.macaroonPath}" }`), yaml);
  const plan = readFileSync(join(out, 'nginx-changes.txt'), 'utf8');
  assert.match(plan, new RegExp(`${join(conf, 'snippets/paid.conf').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\n\\s+line 2: remove \`l402 on;\``));
  assert.match(plan, /line 2: remove `load_module modules\/libngx_l402_lib.so;`/);

  // l402d starts from the yaml exactly as written, with the environment ngx_l402 had.
  const { origin } = await serve(dir, out, port, gatePort, env);

  // Free location: untouched.
  assert.equal((await http1(origin + '/free')).status, 200);
  // Pay through nginx: the invoice is the node's, the node settles it.
  const { invoice } = await payThrough(origin, '/premium', (b) => lnd.settle(b), up);
  assert.ok([...lnd.issued.values()].some((i) => i.bolt11 === invoice && i.amountMsat === 10000), 'the invoice came from the node, for the price');
  assert.ok(lnd.calls.some((c) => c.transport === 'grpc' && c.method === 'AddInvoice'));
  // Auto-detect: the macaroon alone, and the node's lookup says whether it was paid.
  up.reset();
  const first = await http1(origin + '/auto', { headers: { accept: 'application/json' } });
  assert.equal(first.status, 402, first.body);
  const a = JSON.parse(first.body) as { macaroon: string; invoice: string };
  const poll = await http1(origin + '/auto', { headers: { accept: 'application/json', authorization: `L402 ${a.macaroon}` } });
  assert.equal(poll.status, 402, poll.body);
  lnd.settle(a.invoice);
  assert.equal((await http1(origin + '/auto', { headers: { authorization: `L402 ${a.macaroon}` } })).status, 200);
  assert.equal(up.hits, 1);
  assert.ok(lnd.calls.some((c) => c.method === 'LookupInvoice' || c.method === 'LookupInvoiceV2'), 'settlement looked up at the node');
  // Dry run: the upstream answers; what would have been charged is in the headers (dry-run.conf).
  up.reset();
  const shadow = await http1(origin + '/shadow');
  assert.equal(shadow.status, 200, shadow.body);
  assert.equal(shadow.headers['x-l402-dry-run'], '1');
  assert.equal(shadow.headers['x-l402-dry-run-price-msat'], '1500');
  assert.equal(up.hits, 1);
  // The invoice rate limit: two challenges a minute, then 429.
  for (let i = 0; i < 2; i++) assert.equal((await http1(origin + '/limited', { headers: { accept: 'application/json' } })).status, 402);
  const limited = await http1(origin + '/limited', { headers: { accept: 'application/json' } });
  assert.equal(limited.status, 429, limited.body);
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

/** An nginx.conf as ngx_l402's README writes one (one paid location; a tenant location where given). */
function docsConf(dir: string, port: number, upstream: number, tenant?: string, auto = false): string {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return [
    'load_module modules/libngx_l402_lib.so;',
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    isRoot ? 'user root root;' : '',
    'events { worker_connections 64; }',
    'http {',
    `    access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${dir}/${t}_temp;`),
    '    server {',
    `        listen 127.0.0.1:${port};`,
    `        location / { proxy_pass http://127.0.0.1:${upstream}; }`,
    '        location /protected {',
    '            l402 on;',
    '            l402_amount_msat_default 10000;',
    '            l402_macaroon_timeout 3600;',
    `            proxy_pass http://127.0.0.1:${upstream};`,
    '        }',
    ...(auto ? ['        location /auto {', '            l402 on;', '            l402_amount_msat_default 3000;', '            l402_auto_detect_payment on;', `            proxy_pass http://127.0.0.1:${upstream};`, '        }'] : []),
    ...(tenant ? ['        location /tenant1 {', '            l402 on;', '            l402_amount_msat_default 20000;', `            l402_lnurl_addr ${tenant};`, `            proxy_pass http://127.0.0.1:${upstream};`, '        }'] : []),
    '    }',
    '}',
    '',
  ].join('\n');
}

interface BackendCase {
  name: string;
  /** Starts the operator's node or service; returns ngx_l402's variables for it, how to pay, and what the yaml must say. */
  start(): Promise<{ vars: Record<string, string>; settle: (bolt11: string) => Buffer; lightning: RegExp; invoice: RegExp; tenant?: string; payee?: (bolt11: string) => string; adapt?: (yaml: string) => string; connectsLater?: boolean }>;
  /** The backend looks invoices up: a location with l402_auto_detect_payment is imported and polled too. */
  lookups: boolean;
}

const BACKENDS: BackendCase[] = [
  {
    name: 'CLN (unix-socket JSON-RPC)',
    lookups: true,
    async start() {
      const peer = await startClnPeer();
      cleanup.add(() => peer.stop(), 'cln peer');
      return { vars: { LN_CLIENT_TYPE: 'CLN', CLN_LIGHTNING_RPC_FILE_PATH: peer.socketPath }, settle: (b) => peer.settle(b), lightning: /^lightning: \{ type: "cln", transport: "rpc", rpc_path: "[^"]+lightning-rpc" \}$/m, invoice: /^lnbcrt100n1/ };
    },
  },
  {
    name: 'BOLT12 (an offer on CLN)',
    lookups: true,
    async start() {
      const peer = await startClnPeer();
      cleanup.add(() => peer.stop(), 'cln peer');
      const offer = peer.createOffer({ description: 'imported' });
      return { vars: { LN_CLIENT_TYPE: 'BOLT12', BOLT12_OFFER: offer, CLN_LIGHTNING_RPC_FILE_PATH: peer.socketPath }, settle: (b) => peer.settle(b), lightning: /^lightning: \{ type: "bolt12", transport: "rpc", offer: "lno1[^"]+", rpc_path: "[^"]+" \}$/m, invoice: /^lni1/ };
    },
  },
  {
    name: 'NWC (a NIP-47 wallet service behind a relay)',
    lookups: true,
    async start() {
      const peer = await startNwcPeer();
      cleanup.add(() => peer.close(), 'nwc peer');
      return { vars: { LN_CLIENT_TYPE: 'NWC', NWC_URI: peer.uri }, settle: (b) => peer.settle(b), lightning: /^lightning: \{ type: "nwc", uri: "\$\{NWC_URI\}" \}$/m, invoice: /^lnbcrt100n1/ };
    },
  },
  {
    name: 'Eclair (REST with the API password)',
    lookups: true,
    async start() {
      const password = randomBytes(16).toString('hex');
      const peer = await startEclairPeer({ password });
      cleanup.add(() => peer.stop(), 'eclair peer');
      return { vars: { LN_CLIENT_TYPE: 'ECLAIR', ECLAIR_ADDRESS: peer.url, ECLAIR_PASSWORD: password }, settle: (b) => peer.settle(b), lightning: /^lightning: \{ type: "eclair", url: "http:\/\/127\.0\.0\.1:\d+", password: "\$\{ECLAIR_PASSWORD\}" \}$/m, invoice: /^lnbcrt100n1/ };
    },
  },
  {
    name: 'LNC (LND plus a pairing phrase, through a mailbox)',
    lookups: true,
    async start() {
      const lnd = cleanup.use(await startLndPeer(), 'lnd peer');
      const mailbox = cleanup.use(await startMailbox(tmp()), 'mailbox');
      const node = cleanup.use(await startLncNode(mailbox, lnd), 'lnc node');
      return {
        vars: { LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: node.phrase, LNC_MAILBOX_SERVER: mailbox.address },
        settle: (b) => lnd.settle(b),
        lightning: new RegExp(`^lightning: \\{ type: "lnc", pairing_phrase: "\\$\\{LNC_PAIRING_PHRASE\\}", mailbox_server: "${mailbox.address}" \\}$`, 'm'),
        invoice: /^lnbcrt100n1/,
        // l402d pairs in the background after it starts (503 until then).
        connectsLater: true,
        // The one change: this test's mailbox has a certificate from a test CA.
        adapt: (yaml) => yaml.replace(/^(lightning: \{ type: "lnc", .*) \}$/m, `$1, mailbox_tls_ca_path: ${JSON.stringify(mailbox.caPath)} }`),
      };
    },
  },
  {
    name: 'LNURL (a Lightning Address, and a tenant address per location)',
    lookups: false,
    async start() {
      const peer = await startLnurlPeer();
      cleanup.add(() => peer.stop(), 'lnurl peer');
      return {
        vars: { LN_CLIENT_TYPE: 'LNURL', LNURL_ADDRESS: peer.address('shop') },
        settle: (b) => peer.settle(b),
        lightning: new RegExp(`^lightning: \\{ type: "lnurl", address: "${peer.address('shop')}" \\}$`, 'm'),
        invoice: /^lnbc/,
        tenant: peer.address('tenant1'),
        // Whose invoice it is: its description_hash commits to that user's metadata.
        payee: (bolt11) => {
          const sections = lightBolt11.decode(bolt11).sections as Array<{ name: string; value?: unknown }>;
          const h = sections.find((x) => x.name === 'description_hash')?.value;
          return ['shop', 'tenant1'].find((u) => createHash('sha256').update(peer.metadata(u)).digest('hex') === h) ?? 'nobody';
        },
        // The one change: this test's service runs on loopback under a test CA, which l402d refuses unless told
        // (its SSRF guard); a real Lightning Address is public and needs neither key.
        adapt: (yaml) => {
          const opts = `ca_cert_path: ${JSON.stringify(peer.caCertPath)}, allow_private: true`;
          return yaml.replace(/^(lightning: \{ type: "lnurl", .*) \}$/m, `$1, ${opts} }`) + `lnurl_options: { ${opts} }\n`;
        },
      };
    },
  },
];

for (const b of BACKENDS) {
  test(`import an ngx_l402 config on ${b.name}: start l402d from the yaml, pay at the node through nginx`, { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
    const dir = tmp();
    const conf = join(dir, 'etc-nginx');
    const out = join(dir, 'out');
    mkdirSync(conf);
    const up = cleanup.use(await startCountingUpstream());
    const node = await b.start();
    const port = await freePort();
    const gatePort = await freePort();
    writeFileSync(join(conf, 'nginx.conf'), docsConf(dir, port, up.port, node.tenant, b.lookups));
    const vars: Record<string, string> = { ROOT_KEY: 'Zq3vN8xK2pL7mR4tW9yB6cF1hJ5sD0gA', ...node.vars };
    const envFile = join(conf, 'ngx_l402.env');
    writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(''));
    const imp = await l402d(['import-ngx-l402', join(conf, 'nginx.conf'), '--env', envFile, '--out', out, '--listen', `127.0.0.1:${gatePort}`]);
    assert.equal(imp.code, 0, imp.stdout + imp.stderr);
    assert.match(imp.stdout, /import complete/);
    const yamlPath = join(out, 'l402.yaml');
    const yaml = readFileSync(yamlPath, 'utf8');
    assert.match(yaml, node.lightning);
    for (const secret of [vars.ROOT_KEY, vars.NWC_URI, vars.ECLAIR_PASSWORD, vars.LNC_PAIRING_PHRASE].filter((x): x is string => !!x)) {
      assert.ok(!yaml.includes(secret) && !imp.stdout.includes(secret) && !imp.stderr.includes(secret), 'no secret copied or printed');
    }
    if (node.tenant) assert.ok(yaml.includes(`lnurl_addr: "${node.tenant}"`), yaml);
    if (node.adapt) {
      const adapted = node.adapt(yaml);
      assert.notEqual(adapted, yaml, 'the test-only keys were added');
      writeFileSync(yamlPath, adapted);
    }
    const { origin, gate } = await serve(dir, out, port, gatePort, vars);
    if (node.connectsLater) {
      await waitFor('the backend to connect', async () => (await http1(origin + '/protected', { headers: { accept: 'application/json' } })).status === 402, { timeoutMs: 30_000, intervalMs: 200, details: () => gate.output() });
    }
    const { invoice } = await payThrough(origin, '/protected', node.settle, up);
    assert.match(invoice, node.invoice);
    if (node.tenant) {
      const t = await payThrough(origin, '/tenant1', node.settle, up);
      assert.match(t.invoice, /^lnbc/);
      assert.equal(node.payee!(invoice), 'shop', 'LNURL_ADDRESS is paid for /protected');
      assert.equal(node.payee!(t.invoice), 'tenant1', "the location's l402_lnurl_addr is paid for /tenant1");
    }
    if (b.lookups) {
      // Auto-detect: the macaroon alone, the backend's lookup says whether the node was paid.
      up.reset();
      const first = await http1(origin + '/auto', { headers: { accept: 'application/json' } });
      assert.equal(first.status, 402, first.body);
      const a = JSON.parse(first.body) as { macaroon: string; invoice: string };
      const pending = await http1(origin + '/auto', { headers: { accept: 'application/json', authorization: `L402 ${a.macaroon}` } });
      assert.equal(pending.status, 402, pending.body);
      assert.equal(JSON.parse(pending.body).reason, 'payment_pending');
      node.settle(a.invoice);
      const paid = await http1(origin + '/auto', { headers: { authorization: `L402 ${a.macaroon}` } });
      assert.equal(paid.status, 200, paid.body);
      assert.equal(up.hits, 1);
    }
    for (const secret of [vars.ROOT_KEY, vars.NWC_URI, vars.ECLAIR_PASSWORD, vars.LNC_PAIRING_PHRASE].filter((x): x is string => !!x)) {
      assert.ok(!gate.output().includes(secret), 'no secret in what l402d logged');
    }
  });
}

test("import a deployment that ran on Redis: l402d starts unchanged on ngx_l402's Redis, keeps its spent marks and bare-path prices, pays at the node", { skip: !nginxBin || !requireTool('redis-server') ? 'nginx or redis-server not installed' : false }, async () => {
  const dir = tmp();
  const conf = join(dir, 'etc-nginx');
  const out = join(dir, 'out');
  mkdirSync(conf);
  const up = cleanup.use(await startCountingUpstream());
  const lnd = cleanup.use(await startLndPeer(), 'lnd peer');
  const redis = cleanup.use(await startRedis());
  const port = await freePort();
  const gatePort = await freePort();
  writeFileSync(join(conf, 'nginx.conf'), docsConf(dir, port, up.port));
  const vars: Record<string, string> = {
    ROOT_KEY: 'Zq3vN8xK2pL7mR4tW9yB6cF1hJ5sD0gA', LN_CLIENT_TYPE: 'LND', LND_ADDRESS: lnd.grpcAddress, MACAROON_FILE_PATH: lnd.macaroonPath, CERT_FILE_PATH: lnd.certPath, REDIS_URL: redis.url,
  };
  const envFile = join(conf, 'ngx_l402.env');
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(''));
  const imp = await l402d(['import-ngx-l402', join(conf, 'nginx.conf'), '--env', envFile, '--out', out, '--listen', `127.0.0.1:${gatePort}`]);
  assert.equal(imp.code, 0, imp.stdout + imp.stderr);
  const yaml = readFileSync(join(out, 'l402.yaml'), 'utf8');
  assert.match(yaml, /^store: \{ type: redis, url: "\$\{REDIS_URL\}" \}$/m);
  assert.match(yaml, /^pricing: \{ legacy_keys: true \}/m);
  const r = new Redis(redis.url);
  cleanup.add(() => r.disconnect());
  // Before the switch: a credential ngx_l402 already accepted, and a price it read from its bare-path key.
  const spent = ngxL402Credential(vars.ROOT_KEY!, '/protected');
  await r.set(`l402:preimage:${spent.paymentHash.toString('hex')}`, '1', 'EX', 86_400);
  await r.set('/protected', '25000');
  const { origin } = await serve(dir, out, port, gatePort, vars);
  const refused = await http1(origin + '/protected', { headers: { authorization: spent.authorization, accept: 'application/json' } });
  assert.equal(refused.status, 401, refused.body);
  assert.equal(JSON.parse(refused.body).reason, 'already_used');
  const unused = ngxL402Credential(vars.ROOT_KEY!, '/protected');
  assert.equal((await http1(origin + '/protected', { headers: { authorization: unused.authorization } })).status, 200);
  assert.notEqual(await r.get(`l402:preimage:${unused.paymentHash.toString('hex')}`), null, 'spent for ngx_l402 too, while both run');
  const { invoice } = await payThrough(origin, '/protected', (b) => lnd.settle(b), up);
  assert.equal([...lnd.issued.values()].find((i) => i.bolt11 === invoice)?.amountMsat, 25000, "the price ngx_l402's Redis key set");
});

test('import a deployment that took Cashu: l402d starts unchanged with the mint whitelist, a token pays through nginx once (Authorization: Cashu, as ngx_l402 clients send it)', { skip: !nginxBin ? 'nginx not installed' : false }, async () => {
  const dir = tmp();
  const conf = join(dir, 'etc-nginx');
  const out = join(dir, 'out');
  mkdirSync(conf);
  const up = cleanup.use(await startCountingUpstream());
  const lnd = cleanup.use(await startLndPeer(), 'lnd peer');
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  const port = await freePort();
  const gatePort = await freePort();
  writeFileSync(join(conf, 'nginx.conf'), docsConf(dir, port, up.port));
  const vars: Record<string, string> = {
    ROOT_KEY: 'Zq3vN8xK2pL7mR4tW9yB6cF1hJ5sD0gA', LN_CLIENT_TYPE: 'LND', LND_ADDRESS: lnd.grpcAddress, MACAROON_FILE_PATH: lnd.macaroonPath, CERT_FILE_PATH: lnd.certPath,
    CASHU_ECASH_SUPPORT: 'true', CASHU_WHITELISTED_MINTS: mint.url, CASHU_WALLET_MNEMONIC_FILE: join(dir, 'cashu', 'wallet.mnemonic'),
  };
  const envFile = join(conf, 'ngx_l402.env');
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(''));
  const imp = await l402d(['import-ngx-l402', join(conf, 'nginx.conf'), '--env', envFile, '--out', out, '--listen', `127.0.0.1:${gatePort}`]);
  assert.equal(imp.code, 0, imp.stdout + imp.stderr);
  const yaml = readFileSync(join(out, 'l402.yaml'), 'utf8');
  assert.ok(yaml.includes(`cashu: { mnemonic_file: "${vars.CASHU_WALLET_MNEMONIC_FILE}", mints: ["${mint.url}"] }`), yaml);
  const { origin } = await serve(dir, out, port, gatePort, vars);
  up.reset();
  const challenge = await http1(origin + '/protected', { headers: { accept: 'application/json' } });
  assert.equal(challenge.status, 402, challenge.body);
  assert.deepEqual(decodePaymentRequest(String(challenge.headers['x-cashu'])).mints, [mint.url]);
  const { wallet, proofs } = await mint.fundedWallet(10 + 8);
  const { send } = await wallet.ops.send(10, proofs).run();
  const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  const paid = await http1(origin + '/protected', { headers: { authorization: `Cashu ${token}` } });
  assert.equal(paid.status, 200, paid.body);
  assert.equal((await http1(origin + '/protected', { headers: { authorization: `Cashu ${token}` } })).status, 400, 'a token pays once');
  assert.equal(up.hits, 1);
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
