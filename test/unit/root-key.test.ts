import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseRootKey, WeakKeyError } from '../../src/protocol/root-key.js';

function refusal(key: string): string {
  try {
    parseRootKey(key);
  } catch (e) {
    assert.ok(e instanceof WeakKeyError);
    assert.ok(!(e as Error).message.includes(key), 'key echoed');
    return (e as Error).message;
  }
  assert.fail(`accepted ${key.length} characters`);
}

test('a short hex key (openssl rand -hex 16) is called too short, with its size, not repetitive', () => {
  for (let i = 0; i < 20; i++) {
    const m = refusal(randomBytes(16).toString('hex'));
    assert.match(m, /root_key: too short \(32 hex characters = 16 bytes\).*64 hex characters/);
    assert.doesNotMatch(m, /repetitive/);
  }
  assert.match(refusal(randomBytes(8).toString('hex')), /too short \(16 bytes\)/);
  // Repetitive keys of full length are still called that.
  assert.match(refusal('a'.repeat(64)), /too little entropy/);
  assert.match(refusal('0123456789abcdef'.repeat(4)), /too little entropy/);
  assert.equal(parseRootKey(randomBytes(32).toString('hex')).length, 32);
});
