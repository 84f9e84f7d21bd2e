// A request that makes l402d's own code throw is answered (500) and l402d goes on serving: a crash would be an
// outage for every protected route. Real l402d process (`l402d start`), real SQLite file: the console is made to
// throw by a sales row it cannot show (a route stored as a BLOB, as another tool writing the file could leave).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Cleanup, freePort, http1, waitFor } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { startGateProcess } from './gate-process.js';

const cleanup = new Cleanup();
after(() => cleanup.run());
const TOKEN = 'console-token-process-policy-0123';

test('a console request that throws in the render gets a 500; the metrics listener and the gate keep answering', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-policy-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const mport = await freePort();
  const db = join(dir, 'l402.db');
  const file = join(dir, 'l402.yaml');
  writeFileSync(
    file,
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlightning: { type: dev }\nstore: { type: sqlite, path: ${db} }\nlog: { level: info }\nmetrics: { listen: 127.0.0.1:${mport}, token: ${TOKEN} }\nroutes: [{ match: /premium, amount_msat: 1000 }]\n`,
  );
  const gate = cleanup.use(await startGateProcess(file, port));
  const auth = { authorization: `Bearer ${TOKEN}` };
  const consoleUrl = `http://127.0.0.1:${mport}/console`;
  await waitFor('the console', async () => (await http1(consoleUrl, { headers: auth })).status === 200);
  // A row whose route the page cannot print (the ledger hands it on as a Buffer): consolePage throws on it.
  const conn = new Database(db);
  conn.prepare('INSERT INTO sales (id, at, route, rail, amount_msat) VALUES (?, ?, ?, ?, ?)').run('f'.repeat(64), Date.now(), Buffer.from('not text, secret-looking-9f8e7d'), 'lightning', 1000);
  conn.close();
  for (let i = 0; i < 3; i++) {
    const r = await http1(consoleUrl, { headers: auth });
    assert.equal(r.status, 500, `console request ${i}: ${r.status} ${r.body}\n${gate.output()}`);
    assert.equal(r.body, '');
  }
  // Still one process, answering on both listeners.
  assert.equal((await http1(`http://127.0.0.1:${mport}/metrics`, { headers: auth })).status, 200, gate.output());
  assert.equal((await http1(`http://127.0.0.1:${port}/_l402/health`)).status, 200, gate.output());
  // A decision, as nginx asks for it: unpaid, so a challenge.
  const unpaid = await http1(`http://127.0.0.1:${port}/_l402/auth`, { headers: { 'x-original-method': 'GET', 'x-original-uri': '/premium', 'x-l402-uri': '/premium' } });
  assert.equal(unpaid.status, 401, unpaid.body);
  assert.equal(unpaid.headers['x-l402-outcome'], 'challenge');
  const log = await waitFor('the logged error', () => (gate.output().includes('console_render_failed') ? gate.output() : undefined));
  assert.doesNotMatch(log, /uncaught_exception|unhandled_rejection/);
  // The error is logged by its kind and place, never its message.
  assert.doesNotMatch(log, /is not a function/);
});
