// import-ngx-l402 against ngx_l402's documented surface (release 1.2.7): every directive and every environment
// variable it documents is either carried into l402.yaml (and the yaml loads) or named in a finding, never
// dropped without a word. The lists are written out here from ngx_l402's docs (docs/config-env-vars.md,
// docs/dry-run.md, docs/manifest.md, docs/cashu.md, docs/lightning.md, and the research notes on its source),
// so a variable the importer forgets fails its row.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/cli/ngx-l402-import/nginx-parse.js';
import type { EnvEntry } from '../../src/cli/ngx-l402-import/env-file.js';
import { importNgxL402, type ImportResult } from '../../src/cli/ngx-l402-import/import.js';
import { buildOffer } from '../peers/cln-peer.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const KEY = 'Zq3vN8xK2pL7mR4tW9yB6cF1hJ5sD0gA';
const LND = { LN_CLIENT_TYPE: 'LND', MACAROON_FILE_PATH: '/etc/lnd/admin.macaroon', CERT_FILE_PATH: '/etc/lnd/tls.cert' };
const CASHU = { ...LND, CASHU_ECASH_SUPPORT: 'true', CASHU_WHITELISTED_MINTS: 'https://mint.example.com' };
const PHRASE = 'abandon ability able about above absent absorb abstract absurd abuse';

function run(location: string, vars: Record<string, string>, withKey = true): ImportResult {
  const d = mkdtempSync(join(tmpdir(), 'l402-imp-cov-'));
  dirs.push(d);
  writeFileSync(join(d, 'nginx.conf'), `events {}\nhttp {\n  server {\n    listen 80;\n    location /p {\n      ${location}\n    }\n    location /other { l402 on; l402_amount_msat_default 1000; }\n  }\n}\n`);
  const env = new Map<string, EnvEntry>(Object.entries(withKey ? { ROOT_KEY: KEY, ...vars } : vars).map(([k, v], i) => [k, { value: v, line: i + 1 }]));
  return importNgxL402({ tree: loadConfig(join(d, 'nginx.conf'), { prefix: d }), env, envSource: 'ngx.env' });
}

const PAID = 'l402 on; l402_amount_msat_default 1000;';
const mentions = (r: ImportResult, name: string) => r.findings.filter((f) => f.text.includes(name) || (f.where ?? '').includes(name));

interface EnvRow {
  /** The environment it is set in (the backend or feature it belongs to). */
  base: Record<string, string>;
  value: string;
  /** Carried over: the yaml says this (and loads). */
  yaml?: RegExp;
  /** Not carried over as a key: a finding names the variable and says this. */
  finding?: RegExp;
}

const offer = buildOffer({ chains: ['regtest'], description: 'x', issuerSecret: Buffer.alloc(32, 7) });

const ENV: Record<string, EnvRow> = {
  ROOT_KEY: { base: LND, value: KEY, yaml: /^ngx_l402_root_key: "\$\{ROOT_KEY\}"$/m },
  LN_CLIENT_TYPE: { base: { MACAROON_FILE_PATH: '/m', CERT_FILE_PATH: '/c' }, value: 'LND', yaml: /^lightning: \{ type: "lnd"/m },
  LNURL_ADDRESS: { base: { LN_CLIENT_TYPE: 'LNURL' }, value: 'pay@example.com', yaml: /type: "lnurl", address: "pay@example\.com"/ },
  LND_ADDRESS: { base: LND, value: 'node.example.com:10009', yaml: /address: "node\.example\.com:10009"/ },
  MACAROON_FILE_PATH: { base: LND, value: '/secrets/invoice.macaroon', yaml: /macaroon_path: "\/secrets\/invoice\.macaroon"/ },
  CERT_FILE_PATH: { base: LND, value: '/secrets/tls.cert', yaml: /tls_cert_path: "\/secrets\/tls\.cert"/ },
  SOCKS5_PROXY: { base: LND, value: 'socks5://127.0.0.1:9050', yaml: /socks5_proxy: "\$\{SOCKS5_PROXY\}"/ },
  LNC_PAIRING_PHRASE: { base: { LN_CLIENT_TYPE: 'LND' }, value: PHRASE, yaml: /type: "lnc", pairing_phrase: "\$\{LNC_PAIRING_PHRASE\}"/ },
  LNC_MAILBOX_SERVER: { base: { LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: PHRASE }, value: 'mailbox.example.com:443', yaml: /mailbox_server: "mailbox\.example\.com:443"/ },
  CLN_LIGHTNING_RPC_FILE_PATH: { base: { LN_CLIENT_TYPE: 'CLN' }, value: '/run/cln/lightning-rpc', yaml: /type: "cln", transport: "rpc", rpc_path: "\/run\/cln\/lightning-rpc"/ },
  BOLT12_OFFER: { base: { LN_CLIENT_TYPE: 'BOLT12', CLN_LIGHTNING_RPC_FILE_PATH: '/run/cln/rpc' }, value: offer, yaml: new RegExp(`type: "bolt12", transport: "rpc", offer: "${offer}"`) },
  NWC_URI: { base: { LN_CLIENT_TYPE: 'NWC' }, value: `nostr+walletconnect://${'ab'.repeat(32)}?relay=wss://relay.example.com&secret=${'cd'.repeat(32)}`, yaml: /type: "nwc", uri: "\$\{NWC_URI\}"/ },
  ECLAIR_ADDRESS: { base: { LN_CLIENT_TYPE: 'ECLAIR', ECLAIR_PASSWORD: 'hunter2hunter2' }, value: 'http://127.0.0.1:8080', yaml: /type: "eclair", url: "http:\/\/127\.0\.0\.1:8080"/ },
  ECLAIR_PASSWORD: { base: { LN_CLIENT_TYPE: 'ECLAIR', ECLAIR_ADDRESS: 'http://127.0.0.1:8080' }, value: 'hunter2hunter2', yaml: /password: "\$\{ECLAIR_PASSWORD\}"/ },
  REDIS_URL: { base: LND, value: 'redis://:pw@127.0.0.1:6379/0', yaml: /^store: \{ type: redis, url: "\$\{REDIS_URL\}" \}$/m },
  REDIS_POOL_SIZE: { base: LND, value: '8', finding: /not needed/ },
  L402_PREIMAGE_TTL_SECONDS: { base: LND, value: '3600', finding: /not needed/ },
  L402_CASHU_TOKEN_TTL_SECONDS: { base: CASHU, value: '7200', yaml: /replay_ttl_secs: "7200"/ },
  L402_PERF_LOG: { base: LND, value: 'true', finding: /not needed/ },
  RUST_LOG: { base: LND, value: 'debug', yaml: /^log: \{ level: debug \}$/m },
  CASHU_ECASH_SUPPORT: { base: { ...LND, CASHU_WHITELISTED_MINTS: 'https://mint.example.com' }, value: 'true', yaml: /^cashu: \{/m },
  CASHU_DB_PATH: { base: CASHU, value: '/var/lib/l402/cashu.db', finding: /cannot be reused/ },
  CASHU_WALLET_MNEMONIC: { base: CASHU, value: `${'abandon '.repeat(11)}about`, yaml: /mnemonic: "\$\{CASHU_WALLET_MNEMONIC\}"/ },
  // Earlier releases seeded the wallet from this (ngx_l402's docs/cashu.md still show it).
  CASHU_WALLET_SECRET: { base: CASHU, value: 'f3'.repeat(32), finding: /cannot be carried over.*redeem what ngx_l402's wallet holds/ },
  CASHU_WALLET_MNEMONIC_FILE: { base: CASHU, value: '/secrets/wallet.mnemonic', yaml: /mnemonic_file: "\/secrets\/wallet\.mnemonic"/ },
  CASHU_WHITELISTED_MINTS: { base: { ...LND, CASHU_ECASH_SUPPORT: 'true' }, value: 'https://a.example.com, https://b.example.com', yaml: /mints: \["https:\/\/a\.example\.com", "https:\/\/b\.example\.com"\]/ },
  CASHU_REDEEM_ON_LIGHTNING: { base: CASHU, value: 'true', yaml: /redeem: \{ enabled: true/ },
  CASHU_REDEMPTION_INTERVAL_SECS: { base: CASHU, value: '600', yaml: /interval_secs: "600"/ },
  CASHU_MELT_MIN_BALANCE_SATS: { base: CASHU, value: '50', yaml: /min_balance_sat: "50"/ },
  CASHU_MELT_FEE_RESERVE_PERCENT: { base: CASHU, value: '2.5', yaml: /fee_reserve_percent: "2\.5"/ },
  CASHU_MELT_MIN_FEE_RESERVE_SATS: { base: CASHU, value: '6', yaml: /min_fee_reserve_sat: "6"/ },
  CASHU_MAX_PROOFS_PER_MELT: { base: CASHU, value: '500', yaml: /max_proofs_per_melt: "500"/ },
  CASHU_P2PK_MODE: { base: { ...CASHU, CASHU_P2PK_PRIVATE_KEY: '11'.repeat(32) }, value: 'true', yaml: /mode: "p2pk"/ },
  CASHU_P2PK_PRIVATE_KEY: { base: { ...CASHU, CASHU_P2PK_MODE: 'true' }, value: '22'.repeat(32), yaml: /private_key: "\$\{CASHU_P2PK_PRIVATE_KEY\}"/ },
  CASHU_REQUIRE_DLEQ: { base: { ...CASHU, CASHU_P2PK_MODE: 'true', CASHU_P2PK_PRIVATE_KEY: '11'.repeat(32) }, value: 'false', yaml: /require_dleq: false/ },
  L402_SERVICE_NAME: { base: LND, value: 'Reports API', yaml: /^manifest: \{ .*name: "Reports API"/m },
  L402_SERVICE_DESCRIPTION: { base: LND, value: 'Paid reports', yaml: /^manifest: \{ .*description: "Paid reports"/m },
  L402_SERVICE_OPERATOR: { base: LND, value: 'Example Ltd', yaml: /^manifest: \{ .*operator: "Example Ltd"/m },
  L402_SERVICE_CONTACT: { base: LND, value: 'ops@example.com', yaml: /^manifest: \{ .*contact: "ops@example\.com"/m },
};

for (const [name, row] of Object.entries(ENV)) {
  test(`environment ${name}: ${row.yaml ? 'carried into l402.yaml, which loads' : 'named in a finding'}`, () => {
    const without = run(PAID, row.base, name !== 'ROOT_KEY');
    const r = run(PAID, { ...row.base, [name]: row.value });
    if (row.yaml) {
      assert.match(r.yaml, row.yaml);
      assert.doesNotMatch(without.yaml, row.yaml, 'the row tests this variable, not its base');
      assert.ok(r.config, `the yaml loads:\n${r.yaml}\n${r.findings.map((f) => f.text).join('\n')}`);
    } else {
      const f = mentions(r, name);
      assert.ok(f.length > 0, `${name} is named in a finding`);
      assert.ok(f.some((x) => row.finding!.test(x.text)), f.map((x) => x.text).join('\n'));
      assert.equal(mentions(without, name).length, 0);
    }
  });
}

test('a variable of another backend, or of Cashu while Cashu is off, is named, not dropped', () => {
  for (const [name, row] of Object.entries(ENV)) {
    if (name === 'ROOT_KEY' || name === 'LN_CLIENT_TYPE' || name === 'CASHU_ECASH_SUPPORT') continue;
    // The same variable in an environment it does not belong to: NWC without Cashu.
    const base = { LN_CLIENT_TYPE: 'NWC', NWC_URI: ENV.NWC_URI!.value };
    if (name === 'NWC_URI' || name.startsWith('L402_SERVICE_') || name === 'RUST_LOG' || name === 'REDIS_URL') continue;
    const r = run(PAID, { ...base, [name]: row.value });
    assert.ok(mentions(r, name).length > 0, `${name} set for NWC without Cashu is named in a finding`);
  }
});

interface DirectiveRow {
  location: string;
  yaml?: RegExp;
  /** An nginx edit that replaces it (content handlers). */
  edit?: RegExp;
}

const DIRECTIVES: Record<string, DirectiveRow> = {
  l402: { location: PAID, yaml: /- match: "\/p"/ },
  l402_amount_msat_default: { location: 'l402 on; l402_amount_msat_default 1234;', yaml: /amount_msat: 1234/ },
  l402_macaroon_timeout: { location: `${PAID} l402_macaroon_timeout 90;`, yaml: /macaroon_timeout: 90/ },
  l402_lnurl_addr: { location: `${PAID} l402_lnurl_addr tenant@example.com;`, yaml: /lnurl_addr: "tenant@example\.com"/ },
  l402_invoice_rate_limit: { location: `${PAID} l402_invoice_rate_limit 5r/m;`, yaml: /invoice_rate_limit: "5r\/m"/ },
  l402_auto_detect_payment: { location: `${PAID} l402_auto_detect_payment on;`, yaml: /auto_detect_payment: true/ },
  l402_dry_run: { location: `${PAID} l402_dry_run on;`, yaml: /dry_run: true/ },
  l402_indefinite_access: { location: `${PAID} l402_indefinite_access on;`, yaml: /access: indefinite/ },
  l402_metrics: { location: 'l402_metrics;', yaml: /^metrics: \{ listen: "127\.0\.0\.1:9402" \}$/m, edit: /proxy_pass http:\/\/127\.0\.0\.1:9402/ },
  l402_manifest: { location: 'l402_manifest;', yaml: /^manifest: \{ enabled: true/m, edit: /return 308 \/\.well-known\/l402-services;/ },
  l402_manifest_hide: { location: `${PAID} l402_manifest_hide;`, yaml: /manifest_hide: true/ },
};

for (const [name, row] of Object.entries(DIRECTIVES)) {
  test(`directive ${name}: carried over, and its line is taken out of nginx`, () => {
    const r = run(row.location, LND);
    assert.match(r.yaml, row.yaml!);
    assert.ok(r.config, `the yaml loads:\n${r.yaml}`);
    assert.ok(r.edits.some((e) => e.what.includes(`\`${name}`) || (row.edit && row.edit.test(e.text))), `an edit takes ${name} out:\n${r.edits.map((e) => e.what).join('\n')}`);
    if (row.edit) assert.ok(r.edits.some((e) => row.edit!.test(e.text)));
  });
}

test('an l402_* directive this import does not know (a later release, or a typo) is named and taken out, never dropped silently', () => {
  for (const line of ['l402_payment_html off;', 'l402_realm "api";', 'l402_info_endpoint;', `l402_amount_sat ${randomBytes(1)[0]! + 1};`]) {
    const r = run(`${PAID} ${line}`, LND);
    const name = line.split(/[ ;]/)[0]!;
    const f = r.findings.filter((x) => x.level === 'problem' && x.text.startsWith(name));
    assert.equal(f.length, 1, `${name}: ${r.findings.map((x) => x.text).join('\n')}`);
    assert.match(f[0]!.text, /not carried over/);
    assert.ok(r.edits.some((e) => e.what.includes(name)));
    assert.equal(r.complete, false);
    if (name === 'l402_payment_html') assert.match(f[0]!.text, /payment_page: false/);
  }
});

test('LNURL_ADDRESS with another backend: used by l402_lnurl_addr "" (not called ignored), else named as unused', () => {
  const used = run(`${PAID} l402_lnurl_addr "";`, { ...LND, LNURL_ADDRESS: 'shop@example.com' });
  assert.match(used.yaml, /lnurl_addr: "shop@example\.com"/);
  assert.equal(mentions(used, 'LNURL_ADDRESS').length, 0, used.findings.map((f) => f.text).join('\n'));
  assert.ok(used.config);
  const unused = run(PAID, { ...LND, LNURL_ADDRESS: 'shop@example.com' });
  assert.match(mentions(unused, 'LNURL_ADDRESS').map((f) => f.text).join('\n'), /not used by the lnd backend/);
});

test('CASHU_WALLET_SECRET: never copied, and no mnemonic file of ngx_l402 is assumed (that release kept none)', () => {
  const secret = 'f3'.repeat(32);
  const r = run(PAID, { ...CASHU, CASHU_WALLET_SECRET: secret });
  assert.equal(r.complete, false);
  assert.ok(r.config, 'the rest loads');
  assert.doesNotMatch(r.yaml, /mnemonic_file|f3f3f3/);
  for (const f of r.findings) assert.ok(!f.text.includes(secret));
});

test("RUST_LOG as ngx_l402's docs write it (module=level,default): the default level carried over, the module filter named", () => {
  const r = run(PAID, { ...LND, RUST_LOG: 'ngx_l402_lib=debug,warn' });
  assert.match(r.yaml, /^log: \{ level: warn \}$/m);
  assert.match(mentions(r, 'RUST_LOG').map((f) => f.text).join('\n'), /ngx_l402_lib=debug not carried over/);
  const odd = run(PAID, { ...LND, RUST_LOG: 'ngx_l402_lib=debug' });
  assert.doesNotMatch(odd.yaml, /^log:/m);
  assert.match(mentions(odd, 'RUST_LOG').map((f) => f.text).join('\n'), /not a plain level/);
});
