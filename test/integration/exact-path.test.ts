// Through real nginx: l402d decides on the path nginx matched and forwards. Ambiguous raw targets (which
// nginx forwards as they came with `proxy_pass http://app;`) are refused with a 400 before any upstream or
// invoice; a server-level rewrite is priced as the rewritten path; a CORS preflight is answered by the gate;
// the dev wallet's pay button is not reachable through the generic snippets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Cleanup, freePort, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startSnippetStack, type SnippetStack } from './snippet-stack.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let port: number;
let upstream: CountingUpstream;
let stack: SnippetStack;
let logs: string[] = [];

before(async () => {
  if (skip) return;
  upstream = cleanup.use(await startCountingUpstream());
  port = await freePort();
  const up = `http://127.0.0.1:${upstream.port}`;
  // pay_endpoint on: even then, the generic server.conf must not expose the pay button.
  stack = await startSnippetStack(cleanup, {
    name: 'exact',
    config: `lightning: { type: dev, pay_endpoint: true }
routes:
  - { match: /premium, amount_msat: 900000 }
  - { match: /cheap/, amount_msat: 1000, access: indefinite }
  - { match: /getonly/, amount_msat: 1000, methods: [GET, HEAD] }
`,
    http: ({ snippets }) => `
    include ${snippets}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${snippets}/server.conf;
        # A server-level rewrite runs before location matching: nginx matches and forwards /premium/….
        rewrite ^/cheap/old/(.*)$ /premium/$1;
        location / { proxy_pass ${up}; }
        location /premium { include ${snippets}/protect.conf; proxy_pass ${up}; }
        location /cheap/ { include ${snippets}/protect.conf; proxy_pass ${up}; }
        location /getonly/ { include ${snippets}/protect.conf; proxy_pass ${up}; }
    }`,
  });
  logs = stack.logs;
});
after(() => cleanup.run());

interface Raw {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One HTTP/1.1 request written byte for byte (no client-side URL parsing or validation). */
function raw(target: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.setTimeout(10_000, () => s.destroy(new Error(`timeout on ${target}`)));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head, ...rest] = text.split('\r\n\r\n');
      const lines = head!.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).toLowerCase();
        headers[k] = headers[k] === undefined ? l.slice(i + 1).trim() : `${headers[k]}, ${l.slice(i + 1).trim()}`;
      }
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
    const h: Record<string, string> = { host: 'localhost', accept: 'application/json', connection: 'close', ...opts.headers };
    if (opts.body !== undefined) h['content-length'] = String(Buffer.byteLength(opts.body));
    s.write(Buffer.from(`${opts.method ?? 'GET'} ${target} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${opts.body ?? ''}`, 'latin1'));
  });
}

async function buy(path: string): Promise<string> {
  return stack.pay(await raw(path));
}

const invoicesMinted = () => logs.filter((l) => l.includes('"outcome":"challenge"')).length;

test('ambiguous raw targets on protected locations get a 400 problem: no upstream, no invoice, even with a credential', { skip }, async () => {
  const cheap = await buy('/cheap/a');
  assert.equal((await raw('/cheap/a', { headers: { authorization: cheap } })).status, 200);
  const attacks = [
    '/premium/%2e%2e/cheap/a', // priced as /cheap/a by nginx's normalisation; a naive upstream serves /premium/..
    '/premium/%2E%2E/cheap/a?x=1',
    '/premium%2F..%2Fcheap/a',
    '/premium/..%2fcheap/a',
    '/premium/x/..;jsessionid=1/y', // servlet containers cut ";params" before resolving ".."
    '/premium/.;x/y',
    '/cheap/a%5C..%5C..%5Cpremium',
    '/cheap/a\\..\\premium',
    '/cheap//a',
    '/premium/%2e/x',
    '/cheap/a%00',
    '/cheap/a%0d%0aX-Injected:%201', // decoded CR/LF must never reach a header of the auth subrequest
    '/cheap/a%09b',
    '/cheap/a%zz',
  ];
  for (const target of attacks) {
    upstream.reset();
    const before = invoicesMinted();
    for (const auth of [undefined, cheap]) {
      const r = await raw(target, { headers: auth ? { authorization: auth } : {} });
      assert.equal(r.status, 400, `${target}: ${r.status} ${r.body}`);
      assert.equal(r.headers['www-authenticate'], undefined, target);
    }
    assert.equal(upstream.hits, 0, `${target} reached the upstream`);
    assert.equal(invoicesMinted(), before, `${target} minted an invoice`);
  }
  // A decoded control character is refused by nginx itself (protect.conf), before $uri could be put in a
  // header of the auth subrequest (where CR/LF would split or smuggle requests to l402d).
  for (const target of ['/cheap/a%0d%0aX-Injected:%201', '/cheap/a%01', '/cheap/a%0a%0d%0a%0d%0aGET%20/_l402/auth%20HTTP/1.1']) {
    const r = await raw(target);
    assert.equal(r.status, 400, target);
    assert.ok(!r.body.includes('ambiguous_path'), `${target} reached l402d: ${r.body}`);
  }
  // The l402d refusals are a problem document naming the rule.
  const r = await raw('/premium/%2e%2e/cheap/a');
  assert.equal(r.headers['content-type'], 'application/problem+json');
  assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'ambiguous_path');
});

test('unambiguous encodings still work and the upstream is sent what was priced', { skip }, async () => {
  const auth = await buy('/cheap/a%20b');
  upstream.reset();
  const r = await raw('/cheap/a%20b?q=%2F..', { headers: { authorization: auth } });
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(upstream.requests.map((x) => x.url), ['/cheap/a%20b?q=%2F..']);
  // A trailing slash is not an empty segment.
  assert.equal((await raw('/premium/')).status, 402);
});

test('a server-level rewrite is priced as the path nginx matched and forwards, not as the client\'s', { skip }, async () => {
  const cheap = await buy('/cheap/b');
  upstream.reset();
  // /cheap/old/secret is rewritten to /premium/secret before location matching.
  const unpaid = await raw('/cheap/old/secret');
  assert.equal(unpaid.status, 402, unpaid.body);
  assert.equal((JSON.parse(unpaid.body) as { amount_msat: number }).amount_msat, 900000);
  const withCheap = await raw('/cheap/old/secret', { headers: { authorization: cheap } });
  assert.notEqual(withCheap.status, 200, withCheap.body);
  assert.equal(upstream.hits, 0);
  // Paying for the rewritten path opens it.
  const r = await raw('/cheap/old/secret');
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const ok = await raw('/cheap/old/secret', { headers: { authorization: `L402 ${b.macaroon}:${stack.wallet.pay(b.invoice).toString('hex')}` } });
  assert.equal(ok.status, 200, ok.body);
  assert.deepEqual(upstream.requests.map((x) => x.url), ['/premium/secret']);
});

test('a client cannot choose the path l402d prices: its own X-L402-URI / X-Original-URI headers are replaced', { skip }, async () => {
  const cheap = await buy('/cheap/c');
  upstream.reset();
  const r = await raw('/premium/x', { headers: { authorization: cheap, 'x-l402-uri': '/cheap/c', 'x-original-uri': '/cheap/c' } });
  assert.notEqual(r.status, 200, r.body);
  const unpaid = await raw('/premium/x', { headers: { 'x-l402-uri': '/cheap/c' } });
  assert.equal((JSON.parse(unpaid.body) as { amount_msat: number }).amount_msat, 900000);
  assert.equal(upstream.hits, 0);
});

test('a path that is not UTF-8 (nginx serves /premium/caf%E9) can be bought, and its credential opens no other path', { skip }, async () => {
  const auth = await buy('/premium/caf%E9');
  upstream.reset();
  // Bound to its own bytes: not the U+FFFD path a lossy decoding would confuse it with.
  assert.notEqual((await raw('/premium/caf%EF%BF%BD', { headers: { authorization: auth } })).status, 200);
  const ok = await raw('/premium/caf%E9', { headers: { authorization: auth } });
  assert.equal(ok.status, 200, ok.body);
  assert.deepEqual(upstream.requests.map((x) => x.url), ['/premium/caf%E9']);
});

test('a CORS preflight on a paid route is answered by the gate: 204, no upstream, no invoice', { skip }, async () => {
  upstream.reset();
  const before = invoicesMinted();
  const pre = await raw('/premium/data', {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, x-cashu, content-type, x-custom' },
  });
  assert.equal(pre.status, 204, pre.body);
  assert.equal(pre.headers['access-control-allow-origin'], '*');
  assert.match(pre.headers['access-control-allow-methods'] ?? '', /POST/);
  for (const h of ['authorization', 'x-cashu', 'content-type', 'x-custom']) assert.match(pre.headers['access-control-allow-headers'] ?? '', new RegExp(`(^|, )${h}(,|$)`, 'i'));
  assert.ok(Number(pre.headers['access-control-max-age']) > 0);
  assert.equal(upstream.hits, 0);
  assert.equal(invoicesMinted(), before);
  // A route limited to some methods says so.
  const get = await raw('/getonly/x', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
  assert.equal(get.status, 204);
  assert.equal(get.headers['access-control-allow-methods'], 'GET, HEAD');
  // The 402 the browser then gets exposes the challenge headers.
  const challenge = await raw('/premium/data', { method: 'POST', headers: { origin: 'https://app.example', 'content-type': 'application/json' }, body: '{}' });
  assert.equal(challenge.status, 402);
  assert.equal(challenge.headers['access-control-allow-origin'], '*');
  assert.match(challenge.headers['access-control-expose-headers'] ?? '', /WWW-Authenticate/);
  // A plain OPTIONS (not a preflight) is decided like any other method.
  assert.equal((await raw('/premium/data', { method: 'OPTIONS' })).status, 402);
  assert.equal(upstream.hits, 0);
});

test('the generic server.conf never proxies the dev wallet\'s pay button, even with pay_endpoint on', { skip }, async () => {
  const r = await raw('/premium/z');
  const { invoice } = JSON.parse(r.body) as { invoice: string };
  upstream.reset();
  const pay = await raw('/_l402/page/dev-pay', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ invoice }) });
  assert.ok(!pay.body.includes('preimage'), pay.body);
  // The status helper is still there.
  const st = await raw('/_l402/page/status');
  assert.equal(st.status, 400);
  assert.match(st.body, /missing_credential/);
});

test('with nginx_secret, l402d answers its nginx endpoints only to the nginx that sends it', { skip }, async () => {
  const local = new Cleanup();
  try {
    const secret = 'a'.repeat(20) + '0123456789abcdef0123';
    const p = await freePort();
    const secretStack = await startSnippetStack(local, {
      name: 'secret',
      config: `nginx_secret: ${secret}\nlightning: { type: dev }\nroutes:\n  - { match: /premium, amount_msat: 1000 }\n`,
      http: ({ snippets }) => `include ${snippets}/upstream.conf;\nserver { listen 127.0.0.1:${p}; include ${snippets}/server.conf; location /premium { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; } }`,
    });
    const gatePort = secretStack.cfg.listen.split(':')[1];
    const viaNginx = await new Promise<number>((resolve, reject) => {
      const sock = net.connect(p, '127.0.0.1');
      sock.setTimeout(10_000, () => sock.destroy(new Error('timeout')));
      sock.on('error', reject).on('close', () => reject(new Error('closed without an answer')));
      sock.once('data', (b: Buffer) => (resolve(Number(b.toString('latin1').split(' ')[1])), sock.destroy()));
      sock.write('GET /premium/x HTTP/1.1\r\nhost: x\r\naccept: application/json\r\nconnection: close\r\n\r\n');
    });
    assert.equal(viaNginx, 402);
    // Anyone else reaching l402d directly gets no decision and no invoice.
    for (const headers of [{}, { 'x-l402-nginx-secret': 'wrong' }, { 'x-l402-nginx-secret': secret.slice(1) }] as Array<Record<string, string>>) {
      for (const ep of ['/_l402/auth', '/_l402/render']) {
        const r = await fetch(`http://127.0.0.1:${gatePort}${ep}`, { headers: { 'x-original-uri': '/premium/x', 'x-l402-uri': '/premium/x', 'x-l402-client-addr': '10.0.0.1', accept: 'application/json', ...headers } });
        assert.equal(r.status, 403, ep);
        assert.equal(r.headers.get('x-l402-outcome'), null);
        assert.equal(r.headers.get('www-authenticate'), null);
      }
    }
  } finally {
    await local.run();
  }
});
