import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressSet, clientAddress, parseRateLimit, rateLimitBucket } from '../../src/policy/rate-limit.js';

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

test('IPv6 clients are counted per /64, IPv4 (and IPv4-mapped IPv6) per address', () => {
  const none = new AddressSet([]);
  // Every address one subscriber can pick in its /64 lands in the same bucket.
  const mine = ['2001:db8:1:2::1', '2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:0DB8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2:0:0:0:7', '2001:db8:1:2::1.2.3.4'];
  for (const a of mine) assert.equal(clientAddress(a, undefined, none), '2001:db8:1:2::/64', a);
  // The neighbouring /64s are other clients.
  assert.equal(clientAddress('2001:db8:1:3::1', undefined, none), '2001:db8:1:3::/64');
  assert.equal(clientAddress('2001:db8:1::1', undefined, none), '2001:db8:1:0::/64');
  assert.equal(clientAddress('fe80::1%eth0', undefined, none), 'fe80:0:0:0::/64');
  assert.equal(clientAddress('::1', undefined, none), '0:0:0:0::/64');
  // IPv4 stays per address, however it is written.
  assert.equal(clientAddress('203.0.113.9', undefined, none), '203.0.113.9');
  assert.equal(clientAddress('::ffff:203.0.113.9', undefined, none), '203.0.113.9');
  assert.equal(clientAddress('::ffff:cb00:7109', undefined, none), '203.0.113.9');
  assert.notEqual(clientAddress('::ffff:203.0.113.10', undefined, none), clientAddress('::ffff:203.0.113.9', undefined, none));
  // Through trusted proxies: the client found in X-Forwarded-For is bucketed the same way.
  const t = new AddressSet(['10.0.0.0/8', '2001:db8:ffff::/48']);
  assert.equal(clientAddress('10.0.0.1', '2001:db8:5:6:7::9', t), '2001:db8:5:6::/64');
  assert.equal(clientAddress('2001:db8:ffff::1', '2001:db8:5:6:7::9, 2001:db8:ffff::2', t), '2001:db8:5:6::/64');
  assert.equal(clientAddress('2001:db8:ffff::1', undefined, t), '2001:db8:ffff:0::/64');
  assert.equal(clientAddress('10.0.0.1', '::ffff:198.51.100.7', t), '198.51.100.7');
  // Not an address: kept as is.
  assert.equal(rateLimitBucket('unknown'), 'unknown');
  assert.equal(rateLimitBucket('unix:'), 'unix:');
});
