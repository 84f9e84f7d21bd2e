// Red team, session 9 (round 5b): the surfaces added since round 4 (prepaid balances and their browser cookie,
// MPP sessions, pins, the discovery documents), attacked through real nginx.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { cookieScope } from '../../src/policy/credential-cookie.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let site: CountingUpstream;

before(async () => {
  if (skip) return;
  site = cleanup.use(await startCountingUpstream());
  s = await startStack(cleanup, {
    extraRoutes: '  - { id: meter, match: /meter/, amount_msat: 2000, access: balance, balance_msat: 10000 }\n',
    extra: (dir) => `location /meter/ { include ${dir}/protect.conf; include ${dir}/balance.conf; proxy_pass http://127.0.0.1:${site.port}; }`,
  });
});
after(() => cleanup.run());

const form = (credential: string, uri: string) => new URLSearchParams({ credential, uri }).toString();
const postCookie = (body: string) =>
  http1(s.origin + '/_l402/page/cookie', { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' } });

test('a prepaid balance cookie is SameSite=Strict: a cross-site link or redirect (top-level GET) cannot draw on it', { skip }, async () => {
  // Every request with a balance cookie spends (it draws the route's price), as a single-use cookie does:
  // Lax would let another site navigate the payer's browser to the route over and over, each visit a draw.
  const { auth, macaroon } = await s.buy('/meter/page');
  const set = await postCookie(form(auth, '/meter/page'));
  assert.equal(set.status, 303, set.body);
  const cookie = String(set.headers['set-cookie']);
  assert.match(cookie, new RegExp(`^${cookieScope(s.cfg.routes.find((r) => r.id === 'meter')!).name}=`));
  assert.match(cookie, /; HttpOnly; SameSite=Strict$/, cookie);
  // It still draws, same-site.
  const r = await http1(s.origin + '/meter/page', { headers: { accept: 'application/json', cookie: cookie.split(';')[0]! } });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.headers['x-l402-balance-msat'], '8000');
  // A top-up preimage's cookie (the same macaroon, the store binds the preimage) is Strict too.
  const empty = await http1(s.origin + '/meter/page', { headers: { accept: 'application/json', authorization: auth } });
  assert.equal(empty.status, 200, empty.body);
  const topped = await postCookie(form(`L402 ${macaroon}:${'11'.repeat(32)}`, '/meter/page'));
  assert.equal(topped.status, 303, topped.body);
  assert.match(String(topped.headers['set-cookie']), /; SameSite=Strict$/);
});
