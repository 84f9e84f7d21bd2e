// Invoice rate limits through nginx, on the embedded store and on Redis: 429 with the real remaining
// Retry-After; paid requests are not limited.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool, startRedis } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

for (const store of ['sqlite', 'redis'] as const) {
  const skip = !requireTool('nginx') ? 'nginx not installed' : store === 'redis' && !requireTool('redis-server') ? 'redis-server not installed' : false;
  const stack = async (): Promise<Stack> => {
    if (store === 'sqlite') return startStack(cleanup);
    const redis = cleanup.use(await startRedis());
    return startStack(cleanup, { extraYaml: `store: { type: redis, url: ${redis.url} }\n` });
  };

  test(`${store}: the third invoice in a minute gets 429 with the remaining window; no invoice minted; the window resets`, { skip }, async () => {
    const s = await stack();
    const get = (path: string, headers: Record<string, string> = {}) => http1(s.origin + path, { headers: { accept: 'application/json', ...headers } });
    const paid = await s.buy('/limited'); // first invoice
    assert.equal((await get('/limited')).status, 402); // second
    const limited = await get('/limited');
    assert.equal(limited.status, 429);
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    const body = JSON.parse(limited.body);
    assert.equal(body.reason, 'invoice_rate_limited');
    assert.equal(body.retry_after, retry);
    assert.equal(body.invoice, undefined);
    assert.equal(limited.headers['www-authenticate'], undefined);
    // Bad credentials also mint invoices, so they count too.
    assert.equal((await get('/limited', { authorization: 'L402 bad' })).status, 429);
    // A valid credential is never rate limited.
    assert.equal((await get('/limited', { authorization: paid.auth })).status, 200);
    // Client-supplied X-Forwarded-For is ignored (no trusted proxies configured).
    assert.equal((await get('/limited', { 'x-forwarded-for': '198.51.100.1' })).status, 429);

    assert.equal((await get('/fastlimit')).status, 402);
    const r = await get('/fastlimit');
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '1');
    await sleep(1100);
    assert.equal((await get('/fastlimit')).status, 402);
  });
}
