// nginx's auth cache keeps a "paid" answer until its whole-second clock passes the second it read the answer in
// plus X-Accel-Expires. Modelled here exactly as nginx does it (valid_sec = ngx_time() + n; reused while
// valid_sec >= ngx_time()), with nginx reading the answer up to a second after l402d wrote it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authCacheSeconds } from '../../src/server/auth-cache-lifetime.js';

/** The last whole second in which nginx reuses an answer it read at `readMs` with X-Accel-Expires `n` (undefined: not kept). */
function lastSecondServed(readMs: number, n: number): number | undefined {
  return n > 0 ? Math.floor(readMs / 1000) + n : undefined;
}

test('a kept "paid" answer is never reused in or after the second the credential expires, even when nginx reads it in the next second', () => {
  // Found: l402d counted from its own whole second. Written 1 ms before a second ends, read 2 ms later.
  const k = 1_800_000_000;
  const t = k + 3;
  const n = authCacheSeconds({ nowMs: k * 1000 + 999, maxSecs: 5, validUntil: t });
  const last = lastSecondServed(k * 1000 + 1001, n);
  assert.ok(last === undefined || last < t, `X-Accel-Expires ${n}: reused through second ${last}, the credential expires at ${t}`);
  // Every ms of a second, every expiry up to max_secs ahead and beyond, any read delay under a second.
  for (let ms = 0; ms < 1000; ms += 7) {
    for (let ahead = 0; ahead <= 8; ahead++) {
      for (const delay of [0, 1, 3, 250, 999 - ms, 999]) {
        const nowMs = k * 1000 + ms;
        const validUntil = k + ahead;
        const x = authCacheSeconds({ nowMs, maxSecs: 5, validUntil, revocationsAt: nowMs - 40 });
        const served = lastSecondServed(nowMs + delay, x);
        assert.ok(served === undefined || served < validUntil, `now +${ms} ms, expiry +${ahead} s, read ${delay} ms later: X-Accel-Expires ${x}, served through ${served}`);
        assert.ok(x <= 4, 'never more than max_secs less nginx\'s second');
      }
    }
  }
});

test('what the cache may keep: max_secs less a second and the revocation list\'s age; nothing when too little is left', () => {
  const nowMs = 1_800_000_000_000;
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5 }), 4);
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5, revocationsAt: nowMs - 100 }), 3);
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5, revocationsAt: nowMs - 4500 }), 0);
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 0 }), 0);
  // On a second boundary: a credential valid 3 more seconds is kept 2 (nginx adds its own).
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5, validUntil: nowMs / 1000 + 3 }), 2);
  // Half-way through a second: 2.5 s left is kept 1.
  assert.equal(authCacheSeconds({ nowMs: nowMs + 500, maxSecs: 5, validUntil: nowMs / 1000 + 3 }), 1);
  assert.equal(authCacheSeconds({ nowMs: nowMs + 500, maxSecs: 5, validUntil: nowMs / 1000 + 1 }), 0);
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5, validUntil: nowMs / 1000 - 1 }), 0);
  assert.equal(authCacheSeconds({ nowMs, maxSecs: 5, validUntil: nowMs / 1000 + 3600 }), 4);
});
