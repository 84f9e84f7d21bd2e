// Fail closed, bounded: a dead l402d, a hanging or failing Lightning backend → 503 + Retry-After in < 5 s.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx } from './harness.js';
import { startStack, writeSnippets } from './gate-fixture.js';
import type { LightningBackend } from '../../src/rails/lightning/backend.js';
import { parseConfig } from '../../src/config/config.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

function failingBackend(mode: 'hang' | 'throw'): LightningBackend {
  return {
    kind: 'broken',
    createInvoice: () => (mode === 'hang' ? new Promise(() => {}) : Promise.reject(new Error('node unreachable: secret-macaroon-0123'))),
    lookupInvoice: () => (mode === 'hang' ? new Promise(() => {}) : Promise.reject(new Error('node unreachable'))),
    describe: () => 'broken test backend',
    close: async () => {},
  };
}

test('l402d unreachable: nginx answers 503 with Retry-After, never passes', { skip }, async () => {
  const up = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const dead = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'l402-dead-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  writeSnippets(parseConfig(`listen: 127.0.0.1:${dead}\nlightning: { type: dev }\nroutes: [{ match: /premium, amount_msat: 1 }]\n`, { env: {} }), dir);
  cleanup.use(
    await startNginx({
      http: `include ${dir}/upstream.conf;
      server { listen 127.0.0.1:${port}; include ${dir}/server.conf;
        location /premium { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${up.port}; } }`,
    }),
  );
  const t0 = Date.now();
  const r = await http1(`http://127.0.0.1:${port}/premium`, { headers: { authorization: 'L402 AAAA:' + '00'.repeat(32) } });
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(r.status, 503);
  assert.equal(r.headers['retry-after'], '5');
  assert.equal(JSON.parse(r.body).reason, 'gate_unavailable');
  assert.equal(up.hits, 0);
});

for (const mode of ['hang', 'throw'] as const) {
  test(`Lightning backend that ${mode}s: 503 + Retry-After within 5 s, no secret in the body`, { skip }, async () => {
    const local = new Cleanup();
    try {
      const s = await startStack(local, { backend: failingBackend(mode), extraYaml: 'timeouts: { backend_ms: 1500 }\n' });
      const t0 = Date.now();
      const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
      assert.ok(Date.now() - t0 < 5000, 'bounded');
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '5');
      assert.equal(JSON.parse(r.body).reason, 'backend_unavailable');
      assert.ok(!r.body.includes('secret-macaroon'));
      assert.equal(s.upstream.hits, 0);
      assert.ok(s.logs.some((l) => l.includes('challenge_failed')));
    } finally {
      await local.run();
    }
  });
}

test('a slow backend call does not hold up other requests', { skip }, async () => {
  const local = new Cleanup();
  try {
    const { mkdtempSync: mk } = await import('node:fs');
    const { DevWallet } = await import('../../src/rails/lightning/dev/dev-wallet.js');
    // Decisions for paid requests never wait on an invoice being minted elsewhere.
    let slow = false;
    const dir = mk(join(tmpdir(), 'l402-slow-'));
    local.add(() => rmSync(dir, { recursive: true, force: true }));
    const inner = DevWallet.open(dir);
    const backend: LightningBackend = {
      kind: 'slow-dev',
      createInvoice: async (req, signal) => {
        // Slow, yet within the default backend bound (timeouts.backend_ms, 1500 ms).
        if (slow) await sleep(1000);
        return inner.createInvoice(req, signal);
      },
      lookupInvoice: (h, signal) => inner.lookupInvoice(h, signal),
      describe: () => 'slow dev wallet',
      close: async () => inner.close(),
    };
    const s = await startStack(local, { backend });
    const creds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
      const b = JSON.parse(r.body);
      creds.push(`L402 ${b.macaroon}:${inner.pay(b.invoice).toString('hex')}`);
    }
    slow = true;
    const order: string[] = [];
    const challenge = http1(s.origin + '/premium', { headers: { accept: 'application/json' } }).then((r) => (order.push('challenge'), r));
    await sleep(100);
    const paid = await Promise.all(creds.map((auth) => http1(s.origin + '/premium', { headers: { authorization: auth } }).then((r) => (order.push('paid'), r))));
    assert.deepEqual(paid.map((r) => r.status), [200, 200, 200]);
    assert.equal((await challenge).status, 402);
    assert.deepEqual(order, ['paid', 'paid', 'paid', 'challenge'], 'paid requests finished while the invoice was still being minted');
  } finally {
    await local.run();
  }
});
