import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressSet, clientAddress, parseRateLimit } from '../../src/policy/rate-limit.js';

test('ngx_l402 rate-limit syntax', () => {
  assert.deepEqual(parseRateLimit('2r/m'), { max: 2, windowSecs: 60 });
  assert.deepEqual(parseRateLimit(' 10 r / s '), { max: 10, windowSecs: 1 });
  assert.deepEqual(parseRateLimit('100r/h'), { max: 100, windowSecs: 3600 });
  assert.deepEqual(parseRateLimit('5'), { max: 5, windowSecs: 60 });
  for (const bad of ['', '0r/m', '2r/d', 'r/m', '-1', '2x/m', '1e3']) assert.throws(() => parseRateLimit(bad), /expected/);
});

test('trusted proxies: only then is X-Forwarded-For read, right to left', () => {
  const t = new AddressSet(['10.0.0.0/8', '::1', '2001:db8::/32']);
  assert.ok(t.has('10.1.2.3'));
  assert.ok(t.has('::ffff:10.1.2.3'));
  assert.ok(!t.has('11.0.0.1'));
  assert.ok(t.has('::1'));
  assert.ok(t.has('2001:db8:1::5'));
  assert.ok(!t.has('2001:db9::1'));
  assert.equal(clientAddress('203.0.113.9', '1.1.1.1', t), '203.0.113.9', 'untrusted peer: header ignored');
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7', t), '198.51.100.7');
  assert.equal(clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2', t), '198.51.100.7', 'spoofed left entries ignored');
  assert.equal(clientAddress('10.0.0.1', 'garbage, 10.0.0.3', t), '10.0.0.3');
  assert.equal(clientAddress(undefined, undefined, t), 'unknown');
  assert.throws(() => new AddressSet(['not-an-ip']), /not an IP/);
  assert.throws(() => new AddressSet(['10.0.0.0/33']), /prefix length/);
});
