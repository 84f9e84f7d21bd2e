// Behind nginx, l402d answers some requests without reading their bodies (health, and every answer a handler
// gives before the body arrived). When such a body then drips past Node's requestTimeout, the parser gives up
// on a request that was already answered: a raw 408 written then would follow the complete answer on a
// keep-alive connection, bytes the connection's next reader could take for the answer to its next request.
// (nginx itself does not keep an upstream connection whose request body it did not send in full, and the raw
// replies are 4xx, never an allow; l402d must not rely on either.) The connection closes with nothing after the
// answer.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, withTimeout } from './harness.js';
import { ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('a request answered before its body arrived: when Node gives up on the body, nothing is written after the answer', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-late-client-error-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: error }\n${ROUTES_YAML}`, { env: {} });
  const gate = await startGate(cfg, { log: createLogger('silent') });
  cleanup.add(() => gate.close(), 'l402d');

  const sock = net.connect(port, '127.0.0.1');
  cleanup.add(() => sock.destroy());
  let got = '';
  sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
  sock.on('error', () => {});
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => (sock.once('connect', resolve), sock.once('error', reject)));
  // As nginx sends it through a location that streams the client's body (proxy_request_buffering off): keep-alive,
  // a declared body of which only a part ever comes.
  sock.write('POST /_l402/health HTTP/1.1\r\nHost: l402d\r\nContent-Length: 100\r\n\r\n0123456789');
  // Node ends the request after requestTimeout (30 s), checked every connectionsCheckingInterval (30 s).
  await withTimeout(closed, 90_000, 'l402d closing the connection');
  const answers = got.match(/HTTP\/1\.1 \d{3}/g) ?? [];
  assert.deepEqual(answers, ['HTTP/1.1 200'], got);
  assert.match(got, /"status":"ok"/);
  assert.ok(got.trimEnd().endsWith('}'), `bytes after the answer: ${JSON.stringify(got)}`);
});
