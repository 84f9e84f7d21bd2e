// The exact-path rules behind nginx: a raw path is accepted only when percent-decoding it gives exactly the
// path that is priced (nginx's normalised $uri), so an upstream that receives the raw target cannot resolve
// it to another route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, pathAmbiguity, pathBytes, pathFromBytes, pcreSubject, percentDecodeBytes } from '../../src/policy/routes.js';
import { checkCaveats, mintCaveats } from '../../src/protocol/caveats.js';
import { nginxTarget } from '../../src/server/http-server.js';

const REFUSED = [
  '/premium/%2e%2e/cheap', '/premium/%2E%2e/cheap', '/premium/../cheap', '/premium/./x', '/premium/%2e/x', '/premium/..',
  '/premium/..;x/cheap', '/premium/.;a=b/x', '/premium/%2e%2e%3bx/cheap', '/premium/..;/cheap',
  '/premium%2F..%2Fcheap', '/premium%2fx', '/a%5Cb', '/a%5cb', '/a\\b', '/a\\..\\b',
  '//premium', '/premium//x', '/premium/x//',
  '/a%00', '/a%0a', '/a%0D%0AX: y', '/a%09', '/a%7f', '/a\tb', '/a\x7fb',
  '/a#b', '/a%', '/a%zz', '/a%2', 'premium', '',
  // servlet containers cut ";params" from segments: "/timed;x/a" is their /timed/a
  '/a;b', '/a/;x', '/premium;x/a', '/premium/a%3Bb', '/;/premium',
];
const ACCEPTED = ['/', '/premium', '/premium/', '/premium/x.y', '/premium/...', '/premium/..x', '/premium/.x', '/premium/a%20b', '/caf%C3%A9', '/premium/%25', '/x%3F', '/a,b=c:d@e$f'];

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
    const decoded = pathFromBytes(percentDecodeBytes(p));
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

test('paths are bytes: any byte string maps to a distinct path string and back (invalid UTF-8 included)', () => {
  let seed = 99;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const interesting = [0x2f, 0x61, 0xc3, 0xa9, 0xe9, 0xef, 0xbf, 0xbd, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0xf4, 0x90, 0xc0, 0xff, 0xe2, 0x82, 0xac];
  const seen = new Map<string, string>();
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.from(Array.from({ length: 1 + rnd(6) }, () => (rnd(3) === 0 ? rnd(256) : interesting[rnd(interesting.length)]!)));
    const s = pathFromBytes(b);
    assert.deepEqual(pathBytes(s), b, b.toString('hex'));
    const prev = seen.get(s);
    assert.ok(prev === undefined || prev === b.toString('hex'), `${prev} and ${b.toString('hex')} collide`);
    seen.set(s, b.toString('hex'));
    // The PCRE subject is those same bytes.
    assert.deepEqual(Buffer.from([...pcreSubject(s)].map((c) => (c.charCodeAt(0) >= 0xe000 ? c.charCodeAt(0) - 0xe000 : c.charCodeAt(0)))), b);
  }
});

test('a path that is not UTF-8 can be priced and bought, and its credential opens no other path', () => {
  const latin = normalizePath('/premium/caf%E9');
  const fffd = normalizePath('/premium/caf%EF%BF%BD');
  assert.ok(latin !== undefined && fffd !== undefined);
  assert.notEqual(latin, fffd);
  assert.equal(pathBytes(latin!).toString('hex'), Buffer.from('/premium/caf\xe9', 'latin1').toString('hex'));
  // Raw bytes on the wire (Node reads them as latin1 characters) are the same path as their %-encoding.
  assert.equal(normalizePath(Buffer.from('/premium/caf\xc3\xa9', 'latin1').toString('latin1')), '/premium/café');
  assert.equal(normalizePath('/premium/caf%C3%A9'), '/premium/café');
  const caveats = mintCaveats({ service: 'l402', routeId: '/premium', path: latin });
  assert.ok(caveats.some((c) => c.startsWith('path_sha256=')), caveats.join(' '));
  const ctx = { service: 'l402', routeId: '/premium', method: 'GET', now: 1, paymentHash: Buffer.alloc(32) };
  assert.equal(checkCaveats(caveats, { ...ctx, path: latin! }, caveats.length).ok, true);
  assert.equal(checkCaveats(caveats, { ...ctx, path: fffd! }, caveats.length).ok, false);
  // UTF-8 paths keep their readable caveat, and their hash binding is unchanged (UTF-8 bytes).
  assert.ok(mintCaveats({ service: 'l402', routeId: '/premium', path: '/premium/café' }).includes('path=/premium/café'));
});
