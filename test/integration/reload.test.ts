// SIGHUP re-reads routes and prices without dropping a request; a bad file or a restart-only change keeps
// the old config whole, with one clear error.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, startCountingUpstream, waitFor } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { startGateProcess, type GateProcess } from './gate-process.js';
import { sleep } from '../../src/util/timeout.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const JSON_ACCEPT = { headers: { accept: 'application/json' } };

async function setup(workers: number) {
  const dir = mkdtempSync(join(tmpdir(), 'l402-reload-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = cleanup.use(await startCountingUpstream());
  const port = await freePort();
  const file = join(dir, 'l402.yaml');
  const head = `listen: 127.0.0.1:${port}\nworkers: ${workers}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nlog: { level: info }\nlightning: { type: dev }\n`;
  const write = (routes: string, extra = '') => writeFileSync(file, `${head}${extra}routes:\n${routes}`);
  write(`  - { match: /premium, amount_msat: 10000 }\n`);
  const g = cleanup.use(await startGateProcess(file, port));
  return { dir, file, port, origin: `http://127.0.0.1:${port}`, g, write, head };
}

async function priceOf(origin: string, path: string): Promise<number | undefined> {
  const r = await http1(origin + path, JSON_ACCEPT);
  return r.status === 402 ? JSON.parse(r.body).amount_msat : undefined;
}

/** Waits (bounded) for `count` new occurrences of `what` in the log, after `from` characters. */
function logged(g: GateProcess, what: string, from: number, count = 1): Promise<unknown> {
  return waitFor(`${count} x "${what}" in the log`, async () => g.output().slice(from).split(what).length - 1 >= count, { timeoutMs: 15_000, details: () => g.output().slice(from) });
}

test('SIGHUP: a new price and a new route apply to the next request; requests in flight are all answered', async () => {
  const s = await setup(1);
  assert.equal(await priceOf(s.origin, '/premium'), 10000);
  const before = (await http1(s.origin + '/extra', JSON_ACCEPT)).status;
  assert.notEqual(before, 402, '/extra is not sold before the reload');
  // Requests in flight during the reload: none dropped, none a 5xx.
  let stop = false;
  const statuses: number[] = [];
  const errors: string[] = [];
  const load = Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 2000 && !stop; i++) {
        try {
          statuses.push((await http1(s.origin + '/premium', JSON_ACCEPT)).status);
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    }),
  );
  const mark = s.g.output().length;
  s.write(`  - { match: /premium, amount_msat: 20000 }\n  - { match: /extra, amount_msat: 7000 }\n`);
  s.g.signal('SIGHUP');
  await logged(s.g, 'config reloaded', mark);
  stop = true;
  await load;
  assert.deepEqual(errors, [], 'no connection dropped');
  assert.ok(statuses.length > 0);
  assert.deepEqual([...new Set(statuses)], [402], 'every request in flight answered with a challenge');
  assert.equal(await priceOf(s.origin, '/premium'), 20000, 'the new price');
  assert.equal(await priceOf(s.origin, '/extra'), 7000, 'the new route is sold');
  assert.match(s.g.output().slice(mark), /"added":\["[^"]*extra[^"]*"\]/);

  // A bad file (YAML error, then an unknown key): one clear error naming file and line, the old config runs on.
  for (const [bad, expect] of [
    [`  - { match: /premium, amount_msat: 1 \n`, /config reload failed.*l402\.yaml:\d+: invalid YAML/],
    [`  - { match: /premium, amount_msat: 1, price_msat: 2 }\n`, /config reload failed.*l402\.yaml:\d+: .*price_msat/],
  ] as const) {
    const m = s.g.output().length;
    s.write(bad);
    s.g.signal('SIGHUP');
    await logged(s.g, 'config reload failed', m);
    assert.match(s.g.output().slice(m), expect);
    assert.doesNotMatch(s.g.output().slice(m), new RegExp(TEST_ROOT_KEY), 'no secret in the error');
    assert.equal(await priceOf(s.origin, '/premium'), 20000, 'the old config keeps running');
    assert.equal(await priceOf(s.origin, '/extra'), 7000);
  }

  // A changed listen (with a price change): refused whole, naming the key that needs a restart.
  const m = s.g.output().length;
  const other = await freePort();
  writeFileSync(s.file, s.head.replace(`listen: 127.0.0.1:${s.port}`, `listen: 127.0.0.1:${other}`) + `routes:\n  - { match: /premium, amount_msat: 30000 }\n`);
  s.g.signal('SIGHUP');
  await logged(s.g, 'config reload failed', m);
  assert.match(s.g.output().slice(m), /listen: changed, which needs a restart/);
  assert.equal(await priceOf(s.origin, '/premium'), 20000, 'nothing of that file applied');
  assert.equal((await http1(s.origin + '/_l402/health')).status, 200, 'still running');
  await s.g.stop();
});

test('SIGHUP with workers: 2: both workers pick up the change', async () => {
  const s = await setup(2);
  const pids = new Set<string>();
  for (const until = Date.now() + 15_000; pids.size < 2 && Date.now() < until; ) {
    pids.add(JSON.parse((await http1(s.origin + '/_l402/health')).body).instance);
    if (pids.size < 2) await sleep(50);
  }
  assert.equal(pids.size, 2, 'two workers answer');
  const mark = s.g.output().length;
  s.write(`  - { match: /premium, amount_msat: 20000 }\n`);
  s.g.signal('SIGHUP');
  await logged(s.g, 'config reloaded', mark, 2);
  // Each connection lands on either worker: every answer over many has the new price.
  const prices = await Promise.all(Array.from({ length: 40 }, () => priceOf(s.origin, '/premium')));
  assert.deepEqual([...new Set(prices)], [20000]);
  // A bad file: the supervisor says so once and forwards nothing.
  const m = s.g.output().length;
  s.write(`  - { match: /premium, amount_msat: 1, bogus: 1 }\n`);
  s.g.signal('SIGHUP');
  await logged(s.g, 'config reload failed', m);
  assert.equal(await priceOf(s.origin, '/premium'), 20000);
  assert.equal(s.g.output().slice(m).split('config reload failed').length - 1, 1, 'one error, from the supervisor');
  await s.g.stop();
});

test('reload behind nginx: requests in flight through nginx all answered; a route check that fails keeps the old config', async () => {
  const { startStack, ROUTES_YAML } = await import('./gate-fixture.js');
  const { parseConfig, ConfigError } = await import('../../src/config/config.js');
  const s = await startStack(cleanup);
  const price = async () => {
    const r = await http1(s.origin + '/premium', JSON_ACCEPT);
    assert.equal(r.status, 402, r.body);
    return JSON.parse(r.body).amount_msat as number;
  };
  assert.equal(await price(), 10000);
  const yaml = (routes: string) => `listen: ${s.cfg.listen}\ndata_dir: ${s.dataDir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: debug }\n${routes}`;
  let stop = false;
  const statuses: number[] = [];
  const load = Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 2000 && !stop; i++) statuses.push((await http1(s.origin + '/premium', JSON_ACCEPT)).status);
    }),
  );
  await sleep(100);
  const summary = s.gate.reload(parseConfig(yaml(ROUTES_YAML.replace('amount_msat: 10000', 'amount_msat: 12000')), { env: {} }), 'l402.yaml');
  assert.deepEqual(summary.changed, ['/premium']);
  await sleep(100);
  stop = true;
  await load;
  assert.deepEqual([...new Set(statuses)], [402], 'every request through nginx answered with a challenge');
  assert.equal(await price(), 12000);
  // Checks startGate makes on routes run on reload too: a cashu-only route without a cashu section.
  assert.throws(
    () => s.gate.reload(parseConfig(yaml(`${ROUTES_YAML.replace('amount_msat: 12000', 'amount_msat: 1')}  - { match: /ecash, amount_msat: 1, rails: [cashu] }\n`), { env: {} }), 'l402.yaml'),
    (e: Error) => e instanceof ConfigError && /^l402\.yaml: routes .*rails \[cashu\] needs a cashu: section/.test(e.message),
  );
  // A restart-only key (service) refuses the whole file.
  assert.throws(
    () => s.gate.reload(parseConfig(`service: other\n${yaml(ROUTES_YAML.replace('amount_msat: 10000', 'amount_msat: 1'))}`, { env: {} }), 'l402.yaml'),
    (e: Error) => e instanceof ConfigError && /^l402\.yaml: service: changed, which needs a restart/.test(e.message),
  );
  assert.equal(await price(), 12000, 'the last good config keeps running');
});
