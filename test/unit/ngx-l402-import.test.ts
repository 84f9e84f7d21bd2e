// import-ngx-l402: nginx's grammar as nginx reads it, includes, and the mapping of ngx_l402's directives and
// environment onto l402.yaml (checked by loading the yaml through the real config loader).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadConfig, NginxParseError, parseTokens, tokenize } from '../../src/cli/ngx-l402-import/nginx-parse.js';
import { parseEnvFile, type EnvEntry } from '../../src/cli/ngx-l402-import/env-file.js';
import { applyEdits, importNgxL402, type ImportResult } from '../../src/cli/ngx-l402-import/import.js';
import { runImport } from '../../src/cli/ngx-l402-import/command.js';
import { RouteTable } from '../../src/policy/routes.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function files(tree: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'l402-imp-unit-'));
  dirs.push(d);
  for (const [name, text] of Object.entries(tree)) {
    mkdirSync(dirname(join(d, name)), { recursive: true });
    writeFileSync(join(d, name), text);
  }
  return d;
}

const KEY = 'Zq3vN8xK2pL7mR4tW9yB6cF1hJ5sD0gA';
function envOf(vars: Record<string, string>): Map<string, EnvEntry> {
  return new Map(Object.entries(vars).map(([k, v], i) => [k, { value: v, line: i + 1 }]));
}

function imp(http: string, vars: Record<string, string> = { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'LND', MACAROON_FILE_PATH: '/m', CERT_FILE_PATH: '/c' }, extra: Record<string, string> = {}): ImportResult {
  const d = files({ 'nginx.conf': `events {}\nhttp {\n${http}\n}\n`, ...extra });
  return importNgxL402({ tree: loadConfig(join(d, 'nginx.conf'), { prefix: d }), env: envOf(vars), envSource: 'ngx.env' });
}
const words = (text: string) => tokenize(text).map((t) => t.text);
const problems = (r: ImportResult) => r.findings.filter((f) => f.level === 'problem').map((f) => `${f.where ?? ''} ${f.text}`);

test('tokenizer: quotes, escapes, comments, ${var}, blocks and semicolons as nginx reads them', () => {
  assert.deepEqual(words(`a "b c" 'd;e' f\\ g;`), ['a', 'b c', 'd;e', 'f\\ g', ';']);
  assert.deepEqual(words(`x "q\\"uote" 'it\\'s' "t\\tab" "back\\\\slash" "keep\\d";`), ['x', 'q"uote', "it's", 't\tab', 'back\\slash', 'keep\\d', ';']);
  assert.deepEqual(words(`set $a \${b}c; # a comment with ; and { }\nnext a#b;`), ['set', '$a', '${b}c', ';', 'next', 'a#b', ';']);
  assert.deepEqual(words(`location ~ "^/a{2}$" {return 200;}`), ['location', '~', '^/a{2}$', '{', 'return', '200', ';', '}']);
  // Unquoted, `{` ends the word (nginx needs such a regex quoted).
  assert.deepEqual(words(`location ~ ^/a{2}$ {`), ['location', '~', '^/a', '{', '2}$', '{']);
  assert.deepEqual(
    tokenize('a;\n\n  "multi\nline" b;').map((t) => t.line),
    [1, 1, 3, 4, 4],
  );
  assert.throws(() => tokenize('a "open;\n', 'f.conf'), /f\.conf:1: unexpected end of file in a double-quoted string/);
  assert.throws(() => tokenize('a "b"c;', 'f.conf'), /f\.conf:1: unexpected "c" after a quoted string/);
});

test('parser: blocks, offsets and the errors nginx -t gives', () => {
  const text = 'http {\n  server { listen 80; location /a { l402 on; } }\n}\n';
  const file = { path: 'n.conf', text };
  const [http] = parseTokens(tokenize(text, 'n.conf'), file);
  const server = http!.block![0]!;
  const loc = server.block![1]!;
  assert.deepEqual([loc.name, loc.args, loc.line], ['location', ['/a'], 2]);
  assert.equal(text.slice(loc.block![0]!.start, loc.block![0]!.end), 'l402 on;');
  assert.equal(text.slice(loc.start, loc.end), 'location /a { l402 on; }');
  const bad = (t: string) => () => parseTokens(tokenize(t, 'b.conf'), { path: 'b.conf', text: t });
  assert.throws(bad('a {\n b;\n'), /b\.conf:1: unexpected end of file, expecting "}"/);
  assert.throws(bad('a;\n}\n'), /b\.conf:2: unexpected "}"/);
  assert.throws(bad('a b }'), /unexpected "}"/);
  assert.throws(bad('a b'), /unexpected end of file, expecting ";"/);
  assert.throws(bad(';'), /unexpected ";"/);
});

test('includes: globs sorted against the prefix, a missing file named with the include line, cycles refused', () => {
  const d = files({
    'nginx.conf': 'http {\n  include conf.d/*.conf;\n  include extra/none-*.conf;\n}\n',
    'conf.d/b.conf': 'server { listen 2; }\n',
    'conf.d/a.conf': 'server { listen 1; }\n',
    'conf.d/.hidden.conf': 'this is not read;\n',
    'conf.d/c.txt': 'nor this;\n',
  });
  const tree = loadConfig(join(d, 'nginx.conf'), { prefix: d });
  const inc = tree[0]!.block![0]!;
  assert.deepEqual(inc.block!.map((s) => s.block![0]!.args[0]), ['1', '2']);
  assert.equal(inc.block![0]!.includedBy, inc);
  const m = files({ 'nginx.conf': 'http {\n\n  include sites/missing.conf;\n}\n' });
  assert.throws(() => loadConfig(join(m, 'nginx.conf'), { prefix: m }), (e: Error) => e instanceof NginxParseError && /nginx\.conf:3: cannot open .*sites\/missing\.conf/.test(e.message));
  const c = files({ 'nginx.conf': 'include a.conf;\n', 'a.conf': 'include b.conf;\n', 'b.conf': 'include a.conf;\n' });
  assert.throws(() => loadConfig(join(c, 'nginx.conf'), { prefix: c }), /include cycle: .*a\.conf -> .*b\.conf -> .*a\.conf/);
});

test("ngx_l402's example config: every documented location maps to its route, and the yaml loads", () => {
  const d = new URL('../integration/fixtures/ngx-l402/example/', import.meta.url).pathname;
  const env = parseEnvFile(readFileSync(join(d, '.env'), 'utf8'), '.env');
  const r = importNgxL402({ tree: loadConfig(join(d, 'nginx.conf'), { prefix: d }), env, envSource: '.env' });
  assert.deepEqual(problems(r), []);
  assert.equal(r.complete, true);
  const byMatch = Object.fromEntries(r.routes.map((x) => [x.match, x]));
  assert.deepEqual(Object.keys(byMatch), ['/protected', '/protected-timeout', '/protected-indefinite', '/shadow', '/rate-limited', '/protected-auto', '/tenant1', '/tenant2', '/content.ContentService/']);
  const c = r.config!;
  const route = (m: string) => c.routes.find((x) => x.match === m)!;
  assert.equal(route('/protected').amountMsat, 10000);
  assert.equal(route('/protected').access, 'per-request');
  assert.equal(route('/protected').macaroonTimeout, 0);
  assert.deepEqual([route('/protected-timeout').access, route('/protected-timeout').macaroonTimeout], ['per-request', 15]);
  assert.deepEqual([route('/protected-indefinite').access, route('/protected-indefinite').macaroonTimeout], ['indefinite', 60]);
  assert.equal(route('/shadow').dryRun, true);
  assert.deepEqual(route('/rate-limited').rateLimit, { max: 2, windowSecs: 60 });
  assert.equal(route('/protected-auto').autoDetect, true);
  assert.equal(route('/tenant1').lnurlAddr, 'hello@getalby.com');
  assert.deepEqual([route('/tenant2').lnurlAddr, route('/tenant2').manifestHide, route('/tenant2').amountMsat], ['test@walletofsatoshi.com', true, 20000]);
  assert.equal(c.lightning.type, 'lnd');
  assert.equal(c.store.type, 'redis');
  assert.equal(c.ngxL402RootKey?.toString(), env.get('ROOT_KEY')!.value);
  assert.deepEqual(c.metrics, { listen: '127.0.0.1:9402' });
  assert.equal(c.manifest.enabled, true);
  assert.equal(c.manifest.name, 'Example API');
  // Secrets are references, never values.
  assert.match(r.yaml, /url: "\$\{REDIS_URL\}"/);
  assert.doesNotMatch(r.yaml, /s3cretpass|f3c9a1e87b2d/);
  assert.deepEqual(r.envRefs, ['REDIS_URL', 'ROOT_KEY']);
  // The manifest location goes (server.conf has it), l402_metrics proxies to l402d's metrics.
  const file = r.edits[0]!.file;
  const changed = applyEdits(file, r.edits);
  assert.doesNotMatch(changed, /l402_|well-known|load_module/);
  assert.match(changed, /location = \/metrics \{\n\s+rewrite \^ \/metrics break; proxy_set_header Host \$proxy_host; proxy_pass http:\/\/127\.0\.0\.1:9402;\n\s+allow 127\.0\.0\.1;/);
  assert.match(changed, /location \/shadow \{\n\s+include l402\/protect\.conf;\n\s+include l402\/dry-run\.conf;/);
  assert.equal(changed.match(/include l402\/protect\.conf;/g)!.length, 9);
  assert.equal(changed.match(/include l402\/server\.conf;/g)!.length, 1);
  assert.match(changed, /^http \{\n\s+include l402\/upstream\.conf;/m);
});

test("inheritance as ngx_l402 merges: nested locations, OR'd flags, a child's 0 timeout, http/server auto-detect", () => {
  const r = imp(`
  l402_auto_detect_payment on;
  server {
    location /a {
      l402 on;
      l402_amount_msat_default 5000;
      l402_macaroon_timeout 30;
      location /a/b {
        l402 off;
        l402_macaroon_timeout 0;
      }
      location /a/c {
        l402_amount_msat_default 7000;
        l402_indefinite_access on;
      }
    }
    location /free { }
    location /last-wins { l402 on; l402 off; l402_amount_msat_default 1; }
    location /t { l402 on; l402_amount_msat_default 1; l402_macaroon_timeout 30; l402_macaroon_timeout 0; l402_indefinite_access on; l402_indefinite_access off; }
  }`);
  const got = Object.fromEntries(r.config!.routes.map((x) => [x.match, [x.amountMsat, x.macaroonTimeout, x.access, x.autoDetect]]));
  // Within a level the last value wins (so /last-wins is off, /t has no timeout and single use).
  assert.deepEqual(got, { '/a': [5000, 30, 'per-request', true], '/a/b': [5000, 30, 'per-request', true], '/a/c': [7000, 30, 'indefinite', true], '/t': [1, 0, 'per-request', true] });
  assert.ok(r.findings.some((f) => /l402 off inside a location that inherits l402 on/.test(f.text)));
  assert.ok(r.findings.some((f) => /\/a\/b is nested/.test(f.text)));
});

test('mistakes ngx_l402 tolerated or refused are listed with file:line, never dropped silently', () => {
  const r = imp(`
  server {
    l402 on;
    location /typo { l402 maybe; l402_amount_msat_default 100; }
    location /free-price { l402 on; l402_amount_msat_default 0; }
    location /dry { l402 on; l402_amount_msat_default 1; l402_dry_run yes; }
    location /unknown { l402 on; l402_amount_msat_default 1; l402_amount_sat 5; }
    location /rl { l402 on; l402_amount_msat_default 1; l402_invoice_rate_limit 5r/d; }
    location @named { l402 on; l402_amount_msat_default 1; }
    location /both { l402 on; l402_amount_msat_default 1; l402_lnurl_addr a@b.c; l402_auto_detect_payment on; }
    if ($http_x) { l402_dry_run on; }
    location /outer { l402 on; l402_amount_msat_default 100;
      location ~ \\.png$ { }
    }
  }`);
  const p = problems(r).join('\n');
  assert.match(p, /nginx\.conf:5 l402: not allowed in the server context/);
  assert.match(p, /nginx\.conf:6 l402 maybe: invalid value: ngx_l402 only logged it and left the location UNPROTECTED/);
  assert.match(p, /nginx\.conf:7 l402_amount_msat_default 0: not a positive integer/);
  assert.match(p, /nginx\.conf:7 location \/free-price: l402 on without a valid l402_amount_msat_default/);
  assert.match(p, /nginx\.conf:8 l402_dry_run yes: on or off only/);
  assert.match(p, /nginx\.conf:9 l402_amount_sat 5: not a directive of ngx_l402 1\.2\.7/);
  assert.match(p, /nginx\.conf:10 l402_invoice_rate_limit 5r\/d: expected/);
  assert.match(p, /nginx\.conf:11 named location @named/);
  assert.match(p, /nginx\.conf:12 location \/both: l402_auto_detect_payment with l402_lnurl_addr/);
  assert.match(p, /nginx\.conf:13 l402_dry_run on: inside "if", where ngx_l402 does not read it/);
  assert.match(p, /nginx\.conf:15 location ~ \\\.png\$ is a regex nested in another location/);
  assert.equal(r.complete, false);
  assert.deepEqual(r.config!.routes.map((x) => x.match), ['/dry', '/unknown', '/rl', '/both', '/outer']);
  // /typo stays unprotected (as under ngx_l402); what gets no route is closed, never opened.
  const changed = applyEdits(r.edits[0]!.file, r.edits);
  assert.match(changed, /location \/typo \{ \}/);
  assert.match(changed, /location \/free-price \{\n\s+return 403;  # l402d import-ngx-l402: not carried over, see nginx-changes\.txt \}/);
  assert.match(changed, /location @named \{\n\s+return 403;/);
  assert.match(changed, /location ~ \\\.png\$ \{\n\s+return 403;/);
  assert.doesNotMatch(changed, /l402_|l402 /);
});

test('the same location in two servers: one route when the settings agree, else a route of its own that the second pins', () => {
  const r = imp(`
  server { listen 1; location /p { l402 on; l402_amount_msat_default 10; } location /q { l402 on; l402_amount_msat_default 1; } }
  server { listen 2; location /p { l402 on; l402_amount_msat_default 10; } location /q { l402 on; l402_amount_msat_default 99; } }`);
  assert.deepEqual(r.config!.routes.map((x) => [x.match, x.amountMsat, x.id, x.pinned]), [['/p', 10, '/p', false], ['/q', 1, '/q', false], ['/q', 99, '/q-2', true]]);
  assert.doesNotMatch(problems(r).join('\n'), /\/q/);
  assert.match(r.findings.map((f) => f.text).join('\n'), /location \/q is also at .*nginx\.conf:4 with other settings: carried over as its own route \/q-2 \(pinned: true\)/);
  const changed = applyEdits(r.edits[0]!.file, r.edits);
  assert.match(changed, /listen 2; location \/p \{\n\s+include l402\/protect\.conf; \} location \/q \{\n\s+set \$l402_route_pin \/q-2;\n\s+include l402\/protect\.conf;/);
  assert.doesNotMatch(changed, /return 403/);
  // What l402d decides: server 1's /q by path (the pinned route is never found by path), server 2's by its pin.
  const table = new RouteTable(r.config!.routes);
  assert.equal(table.lookup('/q')!.amountMsat, 1);
  assert.equal(table.lookup('/q', '/q-2')!.amountMsat, 99);
});

test('a server that only served the manifest gets server.conf, which answers there now', () => {
  const r = imp(`
  server { listen 1; location /p { l402 on; l402_amount_msat_default 1; } }
  server { listen 2; location = /.well-known/l402-services { l402_manifest; } }`);
  const changed = applyEdits(r.edits[0]!.file, r.edits);
  assert.equal(changed.match(/include l402\/server\.conf;/g)!.length, 2);
  assert.doesNotMatch(changed, /well-known/);
});

test('inherited proxy_set_header lines that protect.conf would hide are named', () => {
  const r = imp(`
  proxy_set_header Host $host;
  server {
    proxy_set_header X-Real-IP $remote_addr;
    location /a { l402 on; l402_amount_msat_default 1; proxy_pass http://127.0.0.1:1; }
    location /b { l402 on; l402_amount_msat_default 1; proxy_set_header Host $host; proxy_pass http://127.0.0.1:1; }
  }`);
  const notes = r.findings.filter((f) => /no longer apply/.test(f.text));
  assert.equal(notes.length, 1);
  assert.match(notes[0]!.text, /location \/a: the proxy_set_header lines it inherited \(.*nginx\.conf:6, .*nginx\.conf:4\)/);
});

test('a path nginx serves from a protected location that l402d would price as another route: the location pins its own', () => {
  const r = imp(`
  server {
    location ^~ /img { l402 on; l402_amount_msat_default 1000; }
    location /img/big.jpg { }
    location ~ \\.jpg$ { l402 on; l402_amount_msat_default 9000; }
  }`);
  const all = r.findings.map((f) => f.text).join('\n');
  assert.match(all, /\/img\/big\.jpg: nginx serves it from location ~ \\\.jpg\$ here, but l402d would price it as route \^~ \/img .*pins its route \(`set \$l402_route_pin re:_\.jpg_;`\)/);
  assert.doesNotMatch(problems(r).join('\n'), /would price/);
  assert.equal(new RouteTable(r.config!.routes).lookup('/img/big.jpg', 're:_.jpg_')!.amountMsat, 9000);
  assert.match(applyEdits(r.edits[0]!.file, r.edits), /location ~ \\\.jpg\$ \{\n\s+set \$l402_route_pin re:_\.jpg_;\n\s+include l402\/protect\.conf;/);
  // Across servers: one route table for all, so another server's cheaper exact location would price this one's path.
  const x = imp(`
  server { listen 1; location /x { l402 on; l402_amount_msat_default 5000; } }
  server { listen 2; location = /x/free { l402 on; l402_amount_msat_default 1; } }`);
  assert.match(x.findings.map((f) => f.text).join('\n'), /\/x\/free: nginx serves it from location \/x here, but l402d would price it as route = \/x\/free .*set \$l402_route_pin \/x;/);
  const xt = new RouteTable(x.config!.routes);
  assert.equal(xt.lookup('/x/free', '/x')!.amountMsat, 5000, 'server 1 pins /x');
  assert.equal(xt.lookup('/x/free')!.amountMsat, 1, 'server 2, by path');
  assert.match(applyEdits(x.edits[0]!.file, x.edits), /listen 1; location \/x \{\n\s+set \$l402_route_pin \/x;\n\s+include l402\/protect\.conf;/);
  // The example config (one server) has no such path, and no pin.
  const one = imp('server { location /a { l402 on; l402_amount_msat_default 1; } location /a/b { l402 on; l402_amount_msat_default 2; } location / { } }');
  assert.doesNotMatch(one.findings.map((f) => f.text).join('\n'), /would price/);
  assert.doesNotMatch(applyEdits(one.edits[0]!.file, one.edits), /l402_route_pin/);
});

test('environment: each backend, secrets only as ${NAME}, weak or missing ROOT_KEY, unknown names', () => {
  const nwc = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'NWC', NWC_URI: 'nostr+walletconnect://' + 'ab'.repeat(32) + '?relay=wss://r.example&secret=' + 'cd'.repeat(32), LN_CLIENT_TPYE: 'LND', PATH: '/bin' });
  assert.match(nwc.yaml, /lightning: \{ type: "nwc", uri: "\$\{NWC_URI\}" \}/);
  assert.doesNotMatch(nwc.yaml, /cdcdcd/);
  assert.equal(nwc.config?.lightning.type, 'nwc');
  assert.match(problems(nwc).join('\n'), /ngx\.env:4 LN_CLIENT_TPYE: not a variable ngx_l402 reads/);
  assert.ok(nwc.findings.some((f) => f.level === 'note' && /PATH: not ngx_l402's/.test(f.text)));

  const eclair = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'eclair', ECLAIR_ADDRESS: 'http://127.0.0.1:8080', ECLAIR_PASSWORD: 'hunter2hunter2', LND_ADDRESS: 'x:1' });
  assert.match(eclair.yaml, /type: "eclair", url: "http:\/\/127\.0\.0\.1:8080", password: "\$\{ECLAIR_PASSWORD\}"/);
  // A URL with a password in it is a reference too.
  const userinfo = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'eclair', ECLAIR_ADDRESS: 'http://u:pw123456@127.0.0.1:8080', ECLAIR_PASSWORD: 'hunter2hunter2' });
  assert.match(userinfo.yaml, /url: "\$\{ECLAIR_ADDRESS\}"/);
  assert.doesNotMatch(userinfo.yaml, /pw123456/);
  assert.ok(eclair.findings.some((f) => /LND_ADDRESS: not used by the eclair backend/.test(f.text)));

  const lnurl = imp('server { location /p { l402 on; l402_amount_msat_default 1; l402_lnurl_addr ""; } }', { ROOT_KEY: KEY, LNURL_ADDRESS: 'pay@example.com' });
  assert.match(lnurl.yaml, /type: "lnurl", address: "pay@example.com"/);
  assert.equal(lnurl.config!.routes[0]!.lnurlAddr, 'pay@example.com');
  assert.match(lnurl.yaml, /store: \{ type: sqlite \}/);

  const weak = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: 'xy'.repeat(20), LN_CLIENT_TYPE: 'LND', MACAROON_FILE_PATH: '/m', CERT_FILE_PATH: '/c' });
  assert.match(weak.yaml, /ngx_l402_root_key: "\$\{ROOT_KEY\}"\nroot_key: "\$\{L402D_ROOT_KEY\}"/);
  assert.match(problems(weak).join('\n'), /too little entropy.*set L402D_ROOT_KEY/);
  assert.ok(weak.config, 'the rest still validates');

  const none = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { LN_CLIENT_TYPE: 'CLN', CLN_LIGHTNING_RPC_FILE_PATH: '/rpc' });
  assert.doesNotMatch(none.yaml, /ngx_l402_root_key/);
  assert.match(problems(none).join('\n'), /ROOT_KEY is not set/);

  const rel = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'LND' });
  assert.match(problems(rel).join('\n'), /MACAROON_FILE_PATH \(unset: admin\.macaroon\): relative/);

  const bad = imp('server { location /p { l402 on; l402_amount_msat_default 1; } }', { ROOT_KEY: KEY, LN_CLIENT_TYPE: 'LNDX' });
  assert.match(problems(bad).join('\n'), /LN_CLIENT_TYPE=LNDX: not a backend ngx_l402 knows/);
});

test('env file: export, quotes, comments; a broken line is named', () => {
  const e = parseEnvFile('# c\nexport A=1\nB="two words"\nC=\'x y\'\nD=plain # trailing\n\nE="q\\"d"\n', 'f.env');
  assert.deepEqual(Object.fromEntries([...e].map(([k, v]) => [k, [v.value, v.line]])), { A: ['1', 2], B: ['two words', 3], C: ['x y', 4], D: ['plain', 5], E: ['q"d', 7] });
  assert.throws(() => parseEnvFile('A=1\nnot a line\n', 'f.env'), /f\.env:2: not a NAME=value line/);
});

test("ngx_l402's multi-tenant, Cashu P2PK and LNC documentation: a sites file (no http {}), each env mapped, no secret copied", () => {
  const d = new URL('../integration/fixtures/ngx-l402/docs/', import.meta.url).pathname;
  const site = join(d, 'multi-tenant.conf');
  const run = (envName: string) => {
    const env = parseEnvFile(readFileSync(join(d, envName), 'utf8'), envName);
    return { env, r: importNgxL402({ tree: loadConfig(site, { prefix: d }), env, envSource: envName }) };
  };
  const { env, r } = run('cashu-p2pk.env');
  assert.deepEqual(problems(r), []);
  assert.equal(r.httpFound, false, 'upstream.conf is left to the http block that includes the file');
  const c = r.config!;
  assert.deepEqual(c.routes.map((x) => [x.match, x.amountMsat, x.lnurlAddr]), [
    ['/tenant1', 10000, 'hello@getalby.com'],
    ['/tenant2', 20000, 'test@walletofsatoshi.com'],
    ['/default-tenant', 5000, 'payments@example.com'],
  ]);
  assert.equal(c.lightning.type, 'lnurl');
  assert.ok(c.cashu, 'the Cashu rail');
  assert.match(r.yaml, /mode: "p2pk"/);
  assert.match(r.yaml, /private_key: "\$\{CASHU_P2PK_PRIVATE_KEY\}"/);
  assert.doesNotMatch(r.yaml, new RegExp(env.get('CASHU_P2PK_PRIVATE_KEY')!.value));
  assert.doesNotMatch(r.yaml, /db_path|cashu_tokens\.db"/, "ngx_l402's cdk database is not l402d's");
  assert.match(r.yaml, /mnemonic_file: "\/var\/lib\/nginx\/wallet\.mnemonic"/);
  assert.ok(r.findings.some((f) => /CASHU_DB_PATH: ngx_l402's cdk wallet database cannot be reused/.test(f.text)));
  // The server gets server.conf; no http block was read.
  assert.ok(r.edits.some((e) => e.text.includes('include l402/server.conf;')));
  assert.ok(!r.edits.some((e) => e.text.includes('upstream.conf')));

  const lnc = run('lnc.env');
  assert.match(lnc.r.yaml, /lightning: \{ type: "lnc", pairing_phrase: "\$\{LNC_PAIRING_PHRASE\}"/);
  assert.doesNotMatch(lnc.r.yaml, /abandon/);
  // `l402_lnurl_addr ""` means LNURL_ADDRESS, which this environment lacks: ngx_l402 refused to start.
  assert.match(problems(lnc.r).join('\n'), /multi-tenant\.conf:24 l402_lnurl_addr "": means LNURL_ADDRESS, which the environment does not set/);
});

test('runImport: a sites file with --prefix resolves its includes as nginx does, writes copies below the prefix, prints no secret', () => {
  const d = files({
    'sites-enabled/api': 'server {\n    listen 80;\n    location /p {\n        include snippets/paid.conf;\n        proxy_pass http://127.0.0.1:1;\n    }\n}\n',
    'snippets/paid.conf': 'l402 on;\nl402_amount_msat_default 1500;\n',
    'ngx.env': `ROOT_KEY=${KEY}\nLN_CLIENT_TYPE=NWC\nNWC_URI=nostr+walletconnect://${'ab'.repeat(32)}?relay=wss://relay.example&secret=${'ef'.repeat(32)}\n`,
  });
  const out = join(d, 'out');
  assert.throws(() => runImport(join(d, 'sites-enabled/api'), { env: join(d, 'ngx.env'), out }), /sites-enabled\/api:4: cannot open .*sites-enabled\/snippets\/paid\.conf/);
  const r = runImport(join(d, 'sites-enabled/api'), { env: join(d, 'ngx.env'), out, prefix: d });
  assert.equal(r.exitCode, 0, r.report);
  assert.equal(r.result.config!.routes[0]!.amountMsat, 1500);
  assert.equal(readFileSync(join(out, 'nginx', 'snippets', 'paid.conf'), 'utf8'), '');
  assert.match(readFileSync(join(out, 'nginx', 'sites-enabled', 'api'), 'utf8'), /include l402\/server\.conf;[\s\S]*location \/p \{\n {8}include l402\/protect\.conf;\n {8}include snippets\/paid\.conf;/);
  assert.match(readFileSync(join(out, 'nginx-changes.txt'), 'utf8'), /add `include l402\/upstream\.conf;` once/);
  for (const text of [r.report, readFileSync(join(out, 'nginx-changes.txt'), 'utf8'), readFileSync(join(out, 'l402.yaml'), 'utf8')]) {
    assert.doesNotMatch(text, new RegExp(KEY));
    assert.doesNotMatch(text, /efefef/);
  }
});
