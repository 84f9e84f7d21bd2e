// Secrets in operator-facing text: a Redis password written unencoded (holding '/', '@' or '?', as
// `openssl rand -base64` produces) must not reach a config error, doctor's output or `store:` lines in
// any part, however the URL splits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ConfigError } from '../../src/config/config.js';
import { describeStore } from '../../src/cli/config-source.js';

const PW_PARTS = ['S3cr', 'etPW', 'xY9q'];
const URLS = [
  'redis://:S3cr/etPW@127.0.0.1:6379',
  'redis://:S3cr@etPW@127.0.0.1:6379/0',
  'redis://user:S3cr?etPW@127.0.0.1:6379',
  'rediss://user:S3cr/etPW/xY9q@127.0.0.1:6379',
  'redis+cluster://:S3cr/etPW@h1:7000,h2:7001',
  'redis+cluster://:S3cr@etPW@h1:7000',
  'redis+sentinel://:S3cr/etPW@h1:26379',
  'redis+sentinel://:S3cr@xY9q@h1:26379/mymaster',
  'unix:/run/redis.sock?password=S3cretPWxY9q',
];

function yaml(url: string): string {
  return `listen: 127.0.0.1:0\nlightning: { type: dev }\nstore: { type: redis, url: ${JSON.stringify(url)} }\nroutes: [{ match: /p, amount_msat: 1 }]\n`;
}

test('a Redis password never appears, in any part, in a config error or a store description', () => {
  for (const url of URLS) {
    let text: string;
    try {
      const cfg = parseConfig(yaml(url), { source: 'x.yaml', env: {} });
      text = describeStore(cfg);
    } catch (e) {
      assert.ok(e instanceof ConfigError, `${url}: ${(e as Error).message}`);
      text = e.message;
    }
    for (const part of PW_PARTS) assert.ok(!text.includes(part), `${url}: password part in ${JSON.stringify(text)}`);
  }
});

test('a store description still says where the store is', () => {
  const cfg = parseConfig(yaml('redis://:S3cr/etPW@127.0.0.1:6379/2'), { source: 'x.yaml', env: {} });
  assert.equal(describeStore(cfg), 'redis redis://127.0.0.1:6379/2 (prefix l402:)');
});
