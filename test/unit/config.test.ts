import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/config.js';

const KEY = 'b5d1a0c3e8f7a6d9c2b4e1f0a3d6c9b8e7f2a1d4c5b6e9f8a7d0c3b2e5f4a1d6';

function err(text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(text, { source: 'test.yaml', env });
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${(e as Error).name}`);
    return e.message;
  }
  assert.fail('expected a config error');
}

test('minimal config gets the documented defaults', () => {
  const c = parseConfig(`lightning: { type: dev }\nroot_key: ${KEY}\nroutes:\n  - match: /premium\n    amount_msat: 10000\n`, { env: {}, baseDir: '/srv' });
  assert.equal(c.listen, '127.0.0.1:8402');
  assert.deepEqual(c.store, { type: 'sqlite', path: '/srv/data/l402.db', durability: 'normal' });
  assert.equal(c.lightning.type, 'dev');
  assert.equal(c.routes[0]!.access, 'per-request');
  assert.equal(c.routes[0]!.macaroonTimeout, 0);
  assert.equal(c.routes[0]!.id, '/premium');
});

test('errors name the key, its line and what is allowed', () => {
  const m = err(`routes:\n  - match: /premium\n    amount_msat: lots\n`);
  assert.match(m, /test\.yaml:3: routes\[0\]\.amount_msat: /);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 1\n    acess: timed\n`), /test\.yaml:4: routes\[0\]\.acess: unknown key \(did you mean access\?\)/);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 1\n    access: timed\n`), /routes\[0\]\.macaroon_timeout: access: timed needs macaroon_timeout > 0/);
  assert.match(err(`store: { type: postgres }\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:1: store\.type/);
  assert.match(err(`routes: []\n`), /routes: at least one route/);
  assert.match(err(`routes:\n  - match: "~ ("\n    amount_msat: 1\n`), /routes\[0\]\.match: invalid regular expression/);
  assert.match(err(`routes:\n  - match: premium\n    amount_msat: 1\n`), /must start with "\/"/);
  assert.match(err(`routes: [ { match: /p, amount_msat: 1 }, { match: /p, amount_msat: 2 } ]\n`), /duplicate route id/);
  assert.match(err(`listen: nowhere\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:1: listen: host:port or unix:\/path/);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 1\n  bad indent: [\n`), /test\.yaml:\d+: invalid YAML/);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 0\n`), /amount_msat/);
  assert.match(err(`routes:\n  - match: /p\n    amount_msat: 1\n    methods: [FETCH]\n`), /routes\[0\]\.methods\[0\]/);
});

test('${VAR} expansion works on strings only and names a missing variable', () => {
  const c = parseConfig(`lightning: { type: dev }\nroot_key: \${MY_KEY}\nroutes:\n  - match: /p\n    amount_msat: \${PRICE}\n`, { env: { MY_KEY: KEY, PRICE: '2500' } });
  assert.equal(c.rootKey, KEY);
  assert.equal(c.routes[0]!.amountMsat, 2500);
  assert.match(err(`root_key: \${NOPE}\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:1: root_key: environment variable NOPE is not set/);
  // A secret containing YAML syntax cannot change the document's structure.
  const tricky = parseConfig(`lightning: { type: dev }\nroot_key: "\${K}"\nroutes: [{ match: /p, amount_msat: 1 }]\n`, { env: { K: 'x: [1, 2]\nroutes: []' } });
  assert.equal(tricky.routes.length, 1);
});

test('ngx_l402 environment names are accepted', () => {
  const c = parseConfig(`routes: [{ match: /p, amount_msat: 1 }]\n`, { env: { ROOT_KEY: KEY, REDIS_URL: 'redis://127.0.0.1:6379', LN_CLIENT_TYPE: 'DEV' } });
  assert.equal(c.rootKey, KEY);
  assert.deepEqual(c.store, { type: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'l402:', requirePersistence: false });
  assert.equal(c.lightning.type, 'dev');
  assert.match(err(`routes: [{ match: /p, amount_msat: 1 }]\n`, { LN_CLIENT_TYPE: 'CARRIER_PIGEON' }), /lightning\.type/);
  // The file wins over the environment.
  const f = parseConfig(`lightning: { type: dev }\nstore: { type: memory }\nroutes: [{ match: /p, amount_msat: 1 }]\n`, { env: { REDIS_URL: 'redis://x:1' } });
  assert.equal(f.store.type, 'memory');
});

test('ngx_l402 directive names map onto routes', () => {
  const c = parseConfig(`lightning: { type: dev }\nroutes:\n  - match: /i\n    amount_msat: "1000"\n    indefinite_access: on\n    macaroon_timeout: 60\n`, { env: {} });
  assert.equal(c.routes[0]!.access, 'indefinite');
  assert.equal(c.routes[0]!.macaroonTimeout, 60);
  assert.match(err(`routes:\n  - match: /i\n    amount_msat: 1\n    access: per-request\n    indefinite_access: true\n`), /indefinite_access: conflicts/);
});

test('lightning backends are selected by type, validated with their own keys, and by ngx_l402 env names', async () => {
  const { openBackend } = await import('../../src/server/wiring/open-backend.js');
  const c = parseConfig(`lightning: { type: eclair, url: "http://127.0.0.1:1", password: secret-pass }\nroutes: [{ match: /p, amount_msat: 1 }]\n`, { env: {} });
  assert.equal(c.lightning.type, 'eclair');
  const b = await openBackend(c);
  assert.equal(b.kind, 'eclair');
  assert.ok(!b.describe().includes('secret-pass'));
  await b.close();
  assert.match(err(`lightning: { type: eclair }\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:1: lightning/);
  const legacy = parseConfig(`routes: [{ match: /p, amount_msat: 1 }]\n`, { env: { LN_CLIENT_TYPE: 'LNURL', LNURL_ADDRESS: 'pay@example.com' } });
  assert.equal(legacy.lightning.type, 'lnurl');
  const e = parseConfig(`routes: [{ match: /p, amount_msat: 1 }]\n`, { env: { LN_CLIENT_TYPE: 'ECLAIR', ECLAIR_ADDRESS: '127.0.0.1:8080', ECLAIR_PASSWORD: 'pw' } });
  assert.equal(e.lightning.type, 'eclair');
});

test('ngx_l402 LND and LNC environment selection', () => {
  const lnd = parseConfig(`routes: [{ match: /p, amount_msat: 1 }]\n`, { env: { LN_CLIENT_TYPE: 'LND', LND_ADDRESS: 'node:10009', CERT_FILE_PATH: '/c/tls.cert', MACAROON_FILE_PATH: '/c/admin.macaroon' } });
  assert.equal(lnd.lightning.type, 'lnd');
  const lnc = parseConfig(`routes: [{ match: /p, amount_msat: 1 }]\n`, {
    env: { LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: 'one two three six seven eight ten zoo zero zone' },
  });
  assert.equal(lnc.lightning.type, 'lnc');
});

test('route regexes with PCRE-only syntax are refused at load, naming the route key', () => {
  const cases: Array<[string, RegExp]> = [
    ['\\A/premium', /\\A \(start of subject\) is PCRE-only; use \^/],
    ['/premium\\z', /\\z .*use \$/],
    ['/premium\\Z', /\\Z .*use \$/],
    ['(?i)/premium', /inline options such as \(\?i\)/],
    ['/premium/\\d++', /possessive/],
    ['(?>/premium)', /atomic groups/],
    ['\\Q/premium\\E', /\\Q…\\E quoting/],
    ['/premium\\h', /\\h \(horizontal whitespace\)/],
    ['/premium\\K/x', /\\K/],
  ];
  for (const [re, why] of cases) {
    const m = err(`routes:\n  - { match: /free, amount_msat: 1 }\n  - match: '~ ${re}'\n    amount_msat: 1\n`);
    assert.match(m, /^test\.yaml:3: routes\[1\]\.match: unsupported in a route regex: /, re);
    assert.match(m, why, re);
  }
  // What nginx configs commonly carry still loads.
  const ok = parseConfig(`lightning: { type: dev }\nroutes:\n  - { match: '~ ^/api/v[0-9]+/', amount_msat: 1 }\n  - { match: '~* \\.(jpg|png)$', amount_msat: 1 }\n  - { match: '~ ^/(?<name>\\w+)/x$', amount_msat: 1 }\n`, { env: {} });
  assert.equal(ok.routes.length, 3);
});

test('timeouts: the defaults answer within 5 s with margin; the nginx snippets wait for l402d\'s deadlines plus a margin', async () => {
  const { ANSWER_BOUND_MS, NGINX_MARGIN_MS, nginxTimeouts, worstAnswerMs } = await import('../../src/policy/budget.js');
  const { nginxSnippets } = await import('../../src/cli/nginx-conf.js');
  const c = parseConfig('lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} });
  assert.deepEqual(c.timeouts, { backendMs: 1500, storeMs: 500, decisionMs: 2000, renderMs: 2000 });
  assert.ok(worstAnswerMs(c.timeouts) <= ANSWER_BOUND_MS - 500, `worst ${worstAnswerMs(c.timeouts)} ms`);
  assert.ok(c.timeouts.backendMs < c.timeouts.renderMs && 2 * c.timeouts.storeMs <= c.timeouts.decisionMs);
  const server = nginxSnippets(c)['server.conf'];
  const auth = server.slice(server.indexOf('location = /_l402/auth'), server.indexOf('location @l402_render'));
  const render = server.slice(server.indexOf('location @l402_render'), server.indexOf('location = /.well-known'));
  const n = nginxTimeouts(c.timeouts);
  assert.equal(n.authReadMs, c.timeouts.decisionMs + NGINX_MARGIN_MS);
  assert.match(auth, new RegExp(`proxy_read_timeout ${n.authReadMs}ms;`));
  assert.match(auth, /proxy_set_header X-L402-Sent-At \$msec;/);
  assert.match(auth, new RegExp(`proxy_set_header X-L402-Deadline-Ms ${c.timeouts.decisionMs};`));
  assert.match(render, new RegExp(`proxy_read_timeout ${c.timeouts.renderMs + NGINX_MARGIN_MS}ms;`));
  for (const loc of [auth, render]) {
    assert.match(loc, /proxy_next_upstream_timeout (\d+)ms;/);
    assert.ok(Number(/proxy_next_upstream_timeout (\d+)ms;/.exec(loc)![1]) < Number(/proxy_read_timeout (\d+)ms;/.exec(loc)![1]), 'a timed-out attempt is not retried');
    assert.match(loc, /proxy_next_upstream_tries 2;/);
  }
});

test('timeouts: longer call bounds grow the unset deadlines (and the snippets); explicit deadlines must fit them', async () => {
  const { ANSWER_BOUND_MS, worstAnswerMs } = await import('../../src/policy/budget.js');
  const c = parseConfig('lightning: { type: dev }\ntimeouts: { backend_ms: 4000, store_ms: 1500 }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} });
  assert.ok(c.timeouts.renderMs > c.timeouts.backendMs);
  assert.ok(c.timeouts.decisionMs >= 2 * c.timeouts.storeMs);
  assert.ok(worstAnswerMs(c.timeouts) > ANSWER_BOUND_MS, 'past the promise: l402d warns at start');
  assert.throws(() => parseConfig('lightning: { type: dev }\ntimeouts: { backend_ms: 1500, render_ms: 1500 }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }), (e: Error) => e instanceof ConfigError && /timeouts\.backend_ms/.test(e.message) && /render_ms/.test(e.message));
  assert.throws(() => parseConfig('lightning: { type: dev }\ntimeouts: { store_ms: 1500, decision_ms: 2000 }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }), (e: Error) => e instanceof ConfigError && /timeouts\.store_ms/.test(e.message));
});

test('an unknown key is reported on its own line, with the closest known key of its section', () => {
  const m = err(`lightning:\n  type: lnd\n  address: 127.0.0.1:10009\n  macaroon_pth: m\n  tls_cert_path: t\ntimeouts:\n  backend_ms: 1000\n  stor_ms: 100\nmetrix: { listen: 127.0.0.1:9 }\nstore:\n  type: sqlite\n  pth: x\nroutes:\n  - match: /p\n    amount_msat: 1\n    macaroon_timout: 5\n    zzzzzzzz: 1\n`);
  assert.match(m, /test\.yaml:4: lightning\.macaroon_pth: unknown key \(did you mean macaroon_path\?\)/);
  assert.match(m, /test\.yaml:8: timeouts\.stor_ms: unknown key \(did you mean store_ms\?\)/);
  assert.match(m, /test\.yaml:9: metrix: unknown key \(did you mean metrics\?\)/);
  assert.match(m, /test\.yaml:12: store\.pth: unknown key \(did you mean path\?\)/);
  assert.match(m, /test\.yaml:16: routes\[0\]\.macaroon_timout: unknown key \(did you mean macaroon_timeout\?\)/);
  assert.match(m, /test\.yaml:17: routes\[0\]\.zzzzzzzz: unknown key$/m);
  // In a flow map too, and in the Cashu section.
  const f = err(`lightning: { type: dev }\ncashu:\n  mints: [https://mint.example]\n  p2pk: { privat_key: x }\nroutes: [{ match: /p, amount_msat: 1, acces: timed }]\n`);
  assert.match(f, /test\.yaml:4: cashu\.p2pk\.privat_key: unknown key \(did you mean private_key\?\)/);
  assert.match(f, /test\.yaml:5: routes\[0\]\.acces: unknown key \(did you mean access\?\)/);
});

test('a YAML syntax error from an unquoted ${VAR} in a flow map says to quote it; a duplicate key says so', () => {
  const m = err(`lightning: { type: nwc, uri: \${NWC_URI} }\nroutes: [{ match: /p, amount_msat: 1 }]\n`, { NWC_URI: 'x' });
  assert.match(m, /test\.yaml:1: invalid YAML: .*quote a value that holds \$\{VAR\}, as in key: "\$\{VAR\}"/);
  assert.match(err(`metrics: [\${X}]\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:1: invalid YAML: .*quote/);
  assert.match(err(`lightning: { type: dev }\nlightning: { type: dev }\nroutes: [{ match: /p, amount_msat: 1 }]\n`), /test\.yaml:2: invalid YAML: .*unique.*only once/);
});

test('a mapping used as a key is reported on its own line', () => {
  assert.match(err(`lightning: { type: dev }\nroutes:\n  - match: /a\n    amount_msat: 1\n    ? [a, b]\n    : x\n`), /^test\.yaml:5: invalid YAML: mapping keys must be plain strings/);
});
