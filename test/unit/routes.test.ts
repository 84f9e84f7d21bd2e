import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, RouteTable } from '../../src/policy/routes.js';

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
