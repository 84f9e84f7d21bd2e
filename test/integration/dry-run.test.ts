// Shadow mode: requests always pass; headers and one log line say what enforcement would have done.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
before(async () => {
  if (nginxBin) s = await startStack(cleanup, { extraYaml: 'dry_run: { invoice_sample_rate: 1 }\n' });
});
after(() => cleanup.run());

function dryLogs(from: number) {
  return s.logs.slice(from).map((l) => JSON.parse(l)).filter((l) => l.event === 'dry_run');
}

test('missing, valid and invalid credentials all pass, with what would have happened', { skip }, async () => {
  s.upstream.reset();
  const mark = s.logs.length;
  const missing = await http1(s.origin + '/shadow');
  assert.equal(missing.status, 200);
  assert.equal(missing.headers['x-l402-dry-run'], '1');
  assert.equal(missing.headers['x-l402-dry-run-price-msat'], '7000');
  assert.match(String(missing.headers['x-l402-dry-run-challenge']), /^L402 macaroon="[^"]+", invoice="lnbcrt70n1/);
  assert.equal(missing.headers['www-authenticate'], undefined);
  // The sampled challenge is real: pay it and use it on the shadow route, twice (never consumed).
  const m = /macaroon="([^"]+)", invoice="([^"]+)"/.exec(String(missing.headers['x-l402-dry-run-challenge']))!;
  const auth = `L402 ${m[1]}:${s.wallet.pay(m[2]!).toString('hex')}`;
  for (let i = 0; i < 2; i++) {
    const valid = await http1(s.origin + '/shadow', { headers: { authorization: auth } });
    assert.equal(valid.status, 200);
    assert.equal(valid.headers['x-l402-dry-run'], '1');
    assert.equal(valid.headers['x-l402-dry-run-price-msat'], undefined);
  }
  const invalid = await http1(s.origin + '/shadow', { headers: { authorization: `L402 ${m[1]}:${'00'.repeat(32)}` } });
  assert.equal(invalid.status, 200);
  assert.equal(s.upstream.hits, 4);
  const logs = dryLogs(mark);
  assert.deepEqual(
    logs.map((l) => [l.route, l.auth_state, l.would_return]),
    [['/shadow', 'missing', 402], ['/shadow', 'valid', 200], ['/shadow', 'valid', 200], ['/shadow', 'invalid', 401]],
  );
  assert.ok(logs.every((l) => l.price_msat === 7000 && !('client_ip' in l)));
});

test('rate-limited requests still pass, flagged with the retry time', { skip }, async () => {
  // 3r/m on this route; the previous test used two invoice-minting requests.
  let r;
  for (let i = 0; i < 3; i++) r = await http1(s.origin + '/shadow');
  assert.equal(r!.status, 200);
  assert.equal(r!.headers['x-l402-dry-run-rate-limited'], '1');
  const retry = Number(r!.headers['x-l402-dry-run-retry-after']);
  assert.ok(retry >= 1 && retry <= 60);
  assert.equal(r!.headers['x-l402-dry-run-challenge'], undefined, 'no invoice for a rate-limited request');
});
