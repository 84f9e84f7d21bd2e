// The exact-path rules behind nginx: a raw path is accepted only when percent-decoding it gives exactly the
// path that is priced (nginx's normalised $uri), so an upstream that receives the raw target cannot resolve
// it to another route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, pathAmbiguity, percentDecodeBytes } from '../../src/policy/routes.js';
import { nginxTarget } from '../../src/server/http-server.js';

const REFUSED = [
  '/premium/%2e%2e/cheap', '/premium/%2E%2e/cheap', '/premium/../cheap', '/premium/./x', '/premium/%2e/x', '/premium/..',
  '/premium/..;x/cheap', '/premium/.;a=b/x', '/premium/%2e%2e%3bx/cheap', '/premium/..;/cheap',
  '/premium%2F..%2Fcheap', '/premium%2fx', '/a%5Cb', '/a%5cb', '/a\\b', '/a\\..\\b',
  '//premium', '/premium//x', '/premium/x//',
  '/a%00', '/a%0a', '/a%0D%0AX: y', '/a%09', '/a%7f', '/a\tb', '/a\x7fb',
  '/a#b', '/a%', '/a%zz', '/a%2', 'premium', '',
];
const ACCEPTED = ['/', '/premium', '/premium/', '/premium/x.y', '/premium/...', '/premium/..x', '/premium/.x', '/premium/a%20b', '/caf%C3%A9', '/a;b', '/a/;x', '/premium/%25', '/x%3F'];

test('pathAmbiguity refuses the whole ambiguous class and accepts plain paths', () => {
  for (const p of REFUSED) assert.ok(pathAmbiguity(p), `should refuse ${JSON.stringify(p)}`);
  for (const p of ACCEPTED) assert.equal(pathAmbiguity(p), undefined, p);
});

test('for every accepted raw path, percent-decoding gives exactly the normalised (priced) path', () => {
  // Random paths from a hostile alphabet: whenever one is accepted, decode(raw) === normalizePath(raw).
  const alphabet = ['/', '.', '..', ';', 'a', '%2e', '%2E', '%2f', '%5c', '\\', '%00', '%25', '%', '%3b', '%41', '%C3%A9', '%E9', '#', '%0a'];
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    let p = '/';
    for (let j = rnd(8); j >= 0; j--) p += alphabet[rnd(alphabet.length)]!;
    if (pathAmbiguity(p)) continue;
    accepted++;
    const decoded = percentDecodeBytes(p).toString('utf8');
    const norm = normalizePath(p);
    if (norm !== undefined) assert.equal(decoded, norm, p);
  }
  assert.ok(accepted > 100);
});

test('nginxTarget decides on the matched path ($uri) after a rewrite, and refuses an ambiguous one', () => {
  assert.deepEqual(nginxTarget('/cheap/old/x', '/premium/x'), { path: '/premium/x' });
  assert.deepEqual(nginxTarget('/cheap/a%20b?q=1', '/cheap/a b'), { path: '/cheap/a b' });
  assert.deepEqual(nginxTarget('/cheap/a%20b?q=%2F..', undefined), { path: '/cheap/a b' });
  assert.ok(nginxTarget('/premium/%2e%2e/cheap', '/cheap').ambiguous);
  assert.ok(nginxTarget('/x', '/premium/../cheap').ambiguous);
  assert.ok(nginxTarget('/x', '/a\r\nb').ambiguous);
  // UTF-8 bytes arrive in the header as latin1 characters.
  assert.deepEqual(nginxTarget('/caf%C3%A9', Buffer.from('/café', 'utf8').toString('latin1')), { path: '/café' });
  assert.deepEqual(nginxTarget(undefined, undefined), {});
});
