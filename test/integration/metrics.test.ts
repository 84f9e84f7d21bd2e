// /metrics: totals add up over two l402d processes sharing one store; separate address; token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, startRedis, waitFor } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGateProcess, withUpstream } from './gate-process.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const TOKEN = 'metrics-token-0123456789';

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const skip = requireTool('nginx') && requireTool('redis-server') ? false : 'nginx or redis-server not installed';

test('counters are totals over every l402d process sharing Redis, behind nginx', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-metrics-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = cleanup.use(await startCountingUpstream());
  const redis = cleanup.use(await startRedis());
  const gates: Array<{ origin: string; metrics: string; port: number }> = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const mport = await freePort();
    const file = join(dir, `g${i}.yaml`);
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: ${redis.url} }\nlog: { level: warn }\nnginx_cache: { max_secs: 0 }\nmetrics: { listen: 127.0.0.1:${mport}, token: ${TOKEN} }\n${ROUTES_YAML}`);
    cleanup.use(await startGateProcess(file, port));
    gates.push({ origin: '', metrics: `http://127.0.0.1:${mport}/metrics`, port });
  }
  const snippets = join(dir, 'snippets');
  writeSnippets(parseConfig(`lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), snippets);
  // One nginx per l402d process, so each process is known to have served its share.
  for (const g of gates) {
    const ng = await freePort();
    cleanup.use(
      await startNginx({
        http: `${withUpstream(snippets, `server 127.0.0.1:${g.port}; keepalive 4;`)}
        server { listen 127.0.0.1:${ng}; include ${snippets}/server.conf;
          location /premium { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${up.port}; } }`,
      }),
    );
    g.origin = `http://127.0.0.1:${ng}`;
  }
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  for (const [i, g] of gates.entries()) {
    for (let k = 0; k < 3 + i; k++) assert.equal((await http1(g.origin + '/premium')).status, 402);
    const body = JSON.parse((await http1(g.origin + '/premium', { headers: { accept: 'application/json' } })).body);
    const auth = `L402 ${body.macaroon}:${wallet.pay(body.invoice).toString('hex')}`;
    assert.equal((await http1(g.origin + '/premium', { headers: { authorization: auth } })).status, 200);
    assert.equal((await http1(g.origin + '/premium', { headers: { authorization: auth } })).status, 401);
  }
  // 3+1 and 4+1 unpaid, one paid and one replay on each: totals 9 missing, 2 valid, 2 invalid.
  const auth = { authorization: `Bearer ${TOKEN}` };
  const text = await waitFor('totals', async () => {
    const t = (await http1(gates[0]!.metrics, { headers: auth })).body;
    return value(t, 'l402_payments_missing_total{route="/premium"}') === 9 ? t : undefined;
  });
  const other = (await http1(gates[1]!.metrics, { headers: auth })).body;
  for (const t of [text, other]) {
    assert.equal(value(t, 'l402_payments_missing_total{route="/premium"}'), 9);
    assert.equal(value(t, 'l402_payments_valid_total{rail="lightning",route="/premium"}'), 2);
    assert.equal(value(t, 'l402_payments_invalid_total{reason="already_used",route="/premium"}'), 2);
    assert.equal(value(t, 'l402_requests_total{route="/premium"}'), 13);
    assert.equal(value(t, 'l402_invoices_generated_total{backend="dev",route="/premium"}'), 11);
    assert.equal(value(t, 'l402_challenges_issued_total{route="/premium"}'), 11);
  }
  assert.match(text, /# TYPE l402_decision_duration_seconds histogram/);
  assert.equal(value(text, 'l402_decision_duration_seconds_count{outcome="challenge"}'), 9);
  assert.equal(value(text, 'l402_decision_duration_seconds_bucket{le="+Inf",outcome="challenge"}'), 9);
  assert.match(text, /^process_cpu_user_seconds_total\{pid="\d+"\}/m);
  for (const secret of [TEST_ROOT_KEY, TOKEN]) assert.ok(!text.includes(secret));
  // Access control: token required, metrics never on the gate's own address.
  assert.equal((await http1(gates[0]!.metrics)).status, 401);
  assert.equal((await http1(gates[0]!.metrics, { headers: { authorization: 'Bearer wrong-token-000000000' } })).status, 401);
  const onGate = await http1(`http://127.0.0.1:${gates[0]!.port}/metrics`);
  assert.equal(onGate.status, 404, "the gate's own address does not serve metrics");
  assert.ok(!onGate.body.includes('l402_requests_total'));
});
