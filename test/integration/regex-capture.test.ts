// A regex location's capture read after `include l402/protect.conf` (docs/nginx.md, "Exact paths"): the
// operator's `location ~ ^/api/(.*)$ { include l402/protect.conf; proxy_pass http://app/api/$1; }` forwards the
// path that was priced, through real nginx. (nginx 1.22 empties the captures on any regex `if` in the location,
// so protect.conf checks the path through a map in upstream.conf instead.) nginx forwards a capture read in
// proxy_pass as it decoded it, like $uri (checked: "/a/x%20y" reached the upstream as "/a/x y"), and escapes it
// again when `set` copies it: both forms are here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Cleanup, freePort, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
const targets: string[] = [];

before(async () => {
  if (skip) return;
  // An app that records the request target it receives.
  const echo = http.createServer((req, res) => {
    req.resume();
    targets.push(req.url ?? '');
    res.end('echo\n');
  });
  const echoPort = await freePort();
  await new Promise<void>((r) => echo.listen(echoPort, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => echo.close(() => r())));
  const app = `http://127.0.0.1:${echoPort}`;
  s = await startStack(cleanup, {
    extraRoutes: '  - { match: /capt/, amount_msat: 1000 }\n  - { match: = /capt/gold, amount_msat: 900000 }\n  - { match: /capn/, amount_msat: 1000 }\n  - { match: /cape/, amount_msat: 1000 }\n',
    extra: (snip) => `
        location ~ "(?s)^/capt/(.*)$" { include ${snip}/protect.conf; proxy_pass ${app}/capt/$1; }
        location ~ ^/capn/(?<rest>.*)$ { include ${snip}/protect.conf; proxy_pass ${app}/capn/$rest; }
        location ~ ^/cape/(.*)$ { include ${snip}/protect.conf; set $part $1; proxy_pass ${app}/cape/$part; }
    `,
  });
});

after(() => cleanup.run());

async function paidTarget(p: string): Promise<string | undefined> {
  const { auth } = await s.buy(p);
  const seen = targets.length;
  const r = await http1(s.origin + p, { headers: { authorization: auth } });
  assert.equal(r.status, 200, `${p}: ${r.body}`);
  assert.equal(targets.length, seen + 1, p);
  return targets.at(-1);
}

test('a regex capture read in proxy_pass after the include reaches the upstream as the path that was priced', { skip }, async () => {
  for (const p of ['/capt/x', '/capt/a/b/c', '/capt/a-b_c.d~e']) assert.equal(await paidTarget(p), p);
  // The exact route is priced on its own path and forwarded there.
  const gold = await http1(s.origin + '/capt/gold', { headers: { accept: 'application/json' } });
  assert.equal(gold.status, 402);
  assert.equal((JSON.parse(gold.body) as { amount_msat: number }).amount_msat, 900000);
  assert.equal(await paidTarget('/capt/gold'), '/capt/gold');
});

test('a capture copied by `set` after the include is escaped again: the upstream decodes it to the path priced', { skip }, async () => {
  for (const p of ['/cape/x', '/cape/a%20b', '/cape/100%25', '/cape/caf%C3%A9']) assert.equal(await paidTarget(p), p);
});

test('a named capture read after the include is forwarded too', { skip }, async () => {
  for (const p of ['/capn/x', '/capn/a/b']) assert.equal(await paidTarget(p), p);
});

test('a capture forwarded decoded cannot reach another route: an encoded "?", "#" or twice-encoded dot segment is refused before any invoice', { skip }, async () => {
  const seen = targets.length;
  for (const p of ['/capt/gold%3Fx', '/capt/gold%23x', '/capt/%252e%252e/premium/x', '/capt/a%252fpremium']) {
    const r = await http1(s.origin + p, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400, `${p}: ${r.status} ${r.body}`);
    assert.match(r.body, /ambiguous/);
  }
  assert.equal(targets.length, seen, 'the upstream was never asked');
});

test('a decoded control character is still refused (400) in a regex location, before l402d and the upstream', { skip }, async () => {
  const seen = targets.length;
  for (const p of ['/capt/a%01', '/capt/a%0d%0aX-Injected:%201', '/capt/a%7f', '/capt/a%09b', '/capt/%00', '/cape/a%0a']) {
    const r = await http1(s.origin + p, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 400, `${p}: ${r.status} ${r.body}`);
    // nginx's own page: l402d (whose answers are problem documents) was never asked.
    assert.doesNotMatch(r.body, /l402|problem/, p);
  }
  assert.equal(targets.length, seen, 'the upstream was never asked');
});
