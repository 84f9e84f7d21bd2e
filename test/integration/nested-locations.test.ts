// Through real nginx: a request served by a location that did not run protect.conf's `set` (a location nested
// in a paid one inherits auth_request but not the rewrite directives; a `rewrite … break` before the include
// stops them) tells l402d no path, and is refused (403 no_route). Before, l402d decided such a request on the
// client's raw path, or on the path of a paid location the request had been in before an internal redirect
// (try_files, index and error_page keep nginx's variables): a cheap credential then opened the nested
// location of a dearer route. A nested location that includes protect.conf itself is decided as any other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startSnippetStack, type SnippetStack } from './snippet-stack.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let origin: string;
let pinnedOrigin: string;
let nginxLog: () => string;
let upstream: CountingUpstream;
let stack: SnippetStack;
let logs: string[] = [];

before(async () => {
  if (skip) return;
  upstream = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  const pinnedPort = await freePort();
  pinnedOrigin = `http://127.0.0.1:${pinnedPort}`;
  const up = `http://127.0.0.1:${upstream.port}`;
  stack = await startSnippetStack(cleanup, {
    name: 'nested',
    config: `lightning: { type: dev }
routes:
  - { match: /premium/, amount_msat: 900000, access: indefinite }
  - { match: /cheap/, amount_msat: 1000, access: indefinite }
  - { id: pp, match: /pp/, amount_msat: 2000, access: indefinite, pinned: true }
`,
    http: ({ snippets, dir }) => `
    include ${snippets}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${snippets}/server.conf;
        # A server-level rewrite: /cheap/old/… is served by the nested location of /premium/.
        rewrite ^/cheap/old/(.*)$ /premium/inner/$1;
        location / { proxy_pass ${up}; }
        location /premium/ {
            include ${snippets}/protect.conf;
            proxy_pass ${up};
            # Nested, without the snippet: inherits auth_request, not the snippet's set.
            location /premium/inner/ { proxy_pass ${up}; }
            # Nested, with the snippet: decided on its own path.
            location /premium/own/ { include ${snippets}/protect.conf; proxy_pass ${up}; }
        }
        location /cheap/ {
            include ${snippets}/protect.conf;
            # A paid request for a file that is not there falls back into the premium nested location.
            root ${dir}/empty;
            try_files $uri /premium/inner/fallback;
        }
        location /late/ {
            # A rewrite … break before the include: the snippet's set never runs.
            rewrite ^/late/(.*)$ /premium/$1 break;
            include ${snippets}/protect.conf;
            proxy_pass ${up};
        }
    }
    server {
        listen 127.0.0.1:${pinnedPort};
        # A server-level pin written before the include: it holds for every request of this server.
        set $l402_route_pin pp;
        include ${snippets}/server.conf;
        location / { proxy_pass ${up}; }
        location /pp/ { include ${snippets}/protect.conf; proxy_pass ${up}; }
    }`,
  });
  nginxLog = stack.nginx.errorLog;
  logs = stack.logs;
});
after(() => cleanup.run());

const buy = (path: string): Promise<string> => stack.buy(origin, path);

const get = (path: string, authorization?: string) => http1(`${origin}${path}`, { headers: { accept: 'application/json', ...(authorization ? { authorization } : {}) } });

test('a location that did not run protect.conf is refused (403 no_route), never decided on another path', { skip }, async () => {
  const cheap = await buy('/cheap/a');
  const premium = await buy('/premium/a');
  assert.equal((await get('/premium/a', premium)).status, 200, 'the premium credential opens its route');

  upstream.reset();
  // The server-level rewrite: the client's raw path is /cheap/old/x (the cheap route), nginx serves
  // /premium/inner/x. Before: allowed on the cheap credential.
  const rewritten = await get('/cheap/old/x', cheap);
  assert.equal(rewritten.status, 403, rewritten.body);
  assert.match(rewritten.body, /no_route/);
  // try_files into the nested location after the cheap location's decision: the cheap location's path was
  // still in nginx's variable. Before: allowed on the cheap credential.
  const fellBack = await get('/cheap/missing', cheap);
  assert.equal(fellBack.status, 403, fellBack.body);
  // Even the dearer route's own credential: the nested location says nothing about what it serves.
  assert.equal((await get('/premium/inner/x', premium)).status, 403);
  // A rewrite … break before the include.
  assert.equal((await get('/late/x', premium)).status, 403);
  assert.equal(upstream.hits, 0, 'the upstream saw none of them');
  assert.ok(logs.some((l) => l.includes('"event":"no_matched_path"')), 'the operator is told why');

  // Unpaid, they are refused the same way: no invoice for a path nobody can tell.
  const unpaid = await get('/premium/inner/y');
  assert.equal(unpaid.status, 403);
  assert.equal(unpaid.headers['www-authenticate'], undefined);
});

test('a nested location that includes protect.conf is decided on its own path', { skip }, async () => {
  const premium = await buy('/premium/b');
  upstream.reset();
  assert.equal((await get('/premium/own/x', premium)).status, 200);
  const cheap = await buy('/cheap/b');
  const r = await get('/premium/own/y', cheap);
  assert.equal(r.status, 401, r.body);
  assert.equal(upstream.hits, 1);
});

test('a pin set at server level, before or after the include, holds for that server; nginx reads no unset variable', { skip }, async () => {
  const r = await http1(`${pinnedOrigin}/pp/a`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const auth = `L402 ${b.macaroon}:${stack.wallet.pay(b.invoice).toString('hex')}`;
  upstream.reset();
  assert.equal((await http1(`${pinnedOrigin}/pp/b`, { headers: { accept: 'application/json', authorization: auth } })).status, 200);
  assert.equal(upstream.hits, 1);
  assert.doesNotMatch(nginxLog(), /uninitialized/);
});
