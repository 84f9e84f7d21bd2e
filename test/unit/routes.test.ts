import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, parseRouteMatch, RouteTable } from '../../src/policy/routes.js';

test('route lookup follows nginx location precedence', () => {
  const t = new RouteTable([
    { match: '/api/' },
    { match: '/api/v2/' },
    { match: '= /api/v2/exact' },
    { match: '~ \\.png$' },
    { match: '^~ /static/' },
    { match: '~* /CASE' },
  ]);
  assert.equal(t.lookup('/api/x')?.match, '/api/');
  assert.equal(t.lookup('/api/v2/x')?.match, '/api/v2/');
  assert.equal(t.lookup('/api/v2/exact')?.match, '= /api/v2/exact');
  assert.equal(t.lookup('/api/v2/x.png')?.match, '~ \\.png$', 'regex beats prefix');
  assert.equal(t.lookup('/static/x.png')?.match, '^~ /static/', '^~ stops regex search');
  assert.equal(t.lookup('/case')?.match, '~* /CASE');
  assert.equal(t.lookup('/other'), undefined);
});

test('paths are normalised the way nginx matches locations', () => {
  assert.equal(normalizePath('/premium?x=1'), '/premium');
  assert.equal(normalizePath('/prem%69um'), '/premium');
  assert.equal(normalizePath('//premium//a/'), '/premium/a/');
  assert.equal(normalizePath('/a/./b/../premium'), '/a/premium');
  assert.equal(normalizePath('/'), '/');
  assert.equal(normalizePath('/..'), undefined);
  assert.equal(normalizePath('/%0d%0aX: y'), undefined);
  assert.equal(normalizePath('/%zz'), undefined);
  assert.equal(normalizePath('premium'), undefined);
  assert.equal(normalizePath('/a/%2e%2e/premium'), '/premium');
});

/** Does the route regex `match` (nginx syntax, "~ re" or "~* re") take this raw request URI? */
function takes(match: string, uri: string): boolean {
  return new RouteTable([{ match }]).lookup(normalizePath(uri)!) !== undefined;
}

test('typical nginx location regexes load and match as nginx does', () => {
  const cases: Array<[string, string[], string[]]> = [
    ['~ ^/api/v[0-9]+/', ['/api/v1/x', '/api/v22/'], ['/api/v/x', '/API/v1/', '/x/api/v1/']],
    ['~* \\.(jpg|png)$', ['/a.jpg', '/a/B.PNG'], ['/a.jpgx', '/a.gif']],
    ['~ ^/(?<name>\\w+)/x$', ['/joe/x', '/j_1/x'], ['/joe/x/', '/j-o/x', '/caf%C3%A9/x']],
    ['~ ^/(?P<user>[^/]+)/profile$', ['/joe/profile', '/caf%C3%A9/profile'], ['/profile']],
    ["~ ^/(?'id'\\d+)$", ['/123'], ['/12a']],
    ['~ \\.php$', ['/index.php'], ['/index.php/x']],
    ['~ /\\.ht', ['/a/.htaccess'], ['/a/ht']],
    ['~ ^/~(.+?)(/.*)?$', ['/~user', '/~user/pub', '/%7euser'], ['/user']],
    ['~ ^/download/.*\\.(zip|tar\\.gz)$', ['/download/a/b.tar.gz'], ['/download/a.targz']],
    ['~* ^/(images|javascript|js|css|flash|media|static)/', ['/IMAGES/x', '/js/a'], ['/jsx/a']],
    ['~ ^/[\\w\\-]+/\\d{2,4}$', ['/ab-c/2024'], ['/ab-c/20245', '/a b/12']],
    ['~ ^/a\\ b\\"c', ['/a%20b%22c'], ['/ab"c']],
    ['~ (?<!x)\\.json$', ['/a.json'], ['/x.json']],
    ['~ ^/q{a}', ['/q{a}'], ['/qa']],
  ];
  for (const [match, yes, no] of cases) {
    for (const uri of yes) assert.ok(takes(match, uri), `${match} should take ${uri}`);
    for (const uri of no) assert.ok(!takes(match, uri), `${match} should not take ${uri}`);
  }
});

test('route regexes keep PCRE meaning where JavaScript would read them differently', () => {
  // "]" first in a class is a literal (JavaScript: "[]" is an empty class).
  assert.ok(takes('~ ^/[]a]+$', '/]a]'));
  assert.ok(takes('~ ^/[^]a]+$', '/bc') && !takes('~ ^/[^]a]+$', '/b]'));
  // POSIX classes (JavaScript: a class of the letters ":alph").
  assert.ok(takes('~ ^/[[:alpha:]]+$', '/abcXYZ') && !takes('~ ^/[[:alpha:]]+$', '/ab1') && !takes('~ ^/[[:alpha:]]+$', '/:'));
  assert.ok(takes('~ ^/[[:digit:][:punct:]]+$', '/1.2'));
  // PCRE escapes for bytes.
  assert.ok(takes('~ ^/\\x41\\x{42}\\o{103}\\e', '/ABC%1b'));
  // nginx matches bytes: "é" is two of them, and case folding is ASCII only.
  assert.ok(takes('~ ^/caf..$', '/caf%C3%A9') && !takes('~ ^/caf.$', '/caf%C3%A9'));
  assert.ok(takes('~ ^/caf\\xc3\\xa9$', '/caf%C3%A9') && takes('~ ^/café$', '/caf%C3%A9'));
  assert.ok(takes('~* ^/CAFE$', '/cafe') && !takes('~* ^/CAFÉ$', '/caf%C3%A9'));
  assert.ok(!takes('~ ^/\\w+$', '/caf%C3%A9') && !takes('~ ^/\\s', '/%C2%A0x') && takes('~ ^/\\S+$', '/%C2%A0x'));
});

test('PCRE-only route regex syntax is refused with the reason', () => {
  const refused: Array<[string, RegExp]> = [
    ['\\A/x', /\\A .*use \^/], ['/x\\Z', /\\Z .*use \$/], ['/x\\z', /\\z .*use \$/], ['/x\\G', /\\G/], ['/x\\K', /\\K/],
    ['/\\Qa.b\\E', /\\Q…\\E/], ['/\\h', /\\h/], ['/\\H', /\\H/], ['/\\v', /vertical tab in JavaScript/], ['/\\R', /\\R/],
    ['/\\N', /\\N/], ['/\\X', /\\X/], ['/\\p{L}', /Unicode properties/], ['/\\g1', /\\g/], ['/[\\h]', /\\h/],
    ['/a++', /possessive/], ['/a*+', /possessive/], ['/a?+', /possessive/], ['/a{2}+', /possessive/],
    ['(?>/a)', /atomic/], ['(?i)/a', /inline options/], ['(?-i)/a', /inline options/], ['(?i:/a)', /inline options/], ['(?s)/a', /inline options/],
    ['(?|(a)|(b))', /branch reset/], ['(?#note)/a', /comments/], ['/(a(?R)?)', /recursion/], ['/(a)(?1)', /recursion/],
    ['/(?&n)', /recursion/], ['/(?(1)a|b)', /conditional/], ['(*UTF8)/a', /\(\*VERB\)/], ['/(?C1)a', /callouts/],
    ['/(a)\\1', /back references/], ['/(?<n>a)\\k<n>', /back references/], ['/(?P<n>a)(?P=n)', /back references/], ['/(a)\\10', /octal/],
    ['/a{,3}', /\{,3\}/], ['/a{1, 3}', /\{1, 3\}/], ['/a{70000}', /repeat count/], ['/\\x{100}', /above \\xff/],
    ['/[[:foo:]]', /unknown POSIX class/], ['/[[:constructor:]]', /unknown POSIX class/], ['/[[:^alpha:]]', /negated POSIX/], ['/[[.a.]]', /collating/], ['/x\\', /ends with a backslash/],
    ['/(?<1a>x)', /bad group name/], ['/(?<n>a)(?<n>b)', /two groups named/], ['/\\j', /unknown escape/],
  ];
  for (const [re, why] of refused) {
    for (const mod of ['~', '~*']) {
      assert.throws(() => parseRouteMatch(`${mod} ${re}`), (e: Error) => /^unsupported in a route regex: /.test(e.message) && why.test(e.message), `${mod} ${re}`);
    }
  }
  // JavaScript's own syntax errors keep their message.
  assert.throws(() => parseRouteMatch('~ ('), /invalid regular expression/);
});

test('a pin decides with the named route only; pinned routes are never found by path', () => {
  const routes = [
    { id: 'a', match: '/api/' },
    { id: 'b', match: '= /api/x' },
    { id: 'c', match: '= /api/y', pinned: true },
    { id: 'r', match: '~ ^/re/[0-9]+$', pinned: true },
  ];
  const t = new RouteTable(routes);
  // By path: the exact b wins for /api/x; the pinned c and r are skipped.
  assert.equal(t.lookup('/api/x')?.id, 'b');
  assert.equal(t.lookup('/api/y')?.id, 'a');
  assert.equal(t.lookup('/re/1'), undefined);
  // Pinned: that route, wherever another would win by path; a path it does not cover is no route.
  assert.equal(t.lookup('/api/x', 'a')?.id, 'a');
  assert.equal(t.lookup('/api/y', 'c')?.id, 'c');
  assert.equal(t.lookup('/re/7', 'r')?.id, 'r');
  assert.equal(t.lookup('/api/z', 'b'), undefined);
  assert.equal(t.lookup('/re/x', 'r'), undefined);
  assert.equal(t.lookup('/api/x', 'nope'), undefined);
  assert.equal(t.lookup('/api/x', 'A'), undefined, 'ids are exact');
  // An empty pin is no pin.
  assert.equal(t.lookup('/api/x', '')?.id, 'b');
});
