// Standalone mode: an upstream that never accepts the connection (its SYNs dropped, as by a firewall or a dead
// host; here a real listener whose accept queue is full) is answered within the connect bound (upstream_timeout_ms,
// at most 5 s) with a 504 and Retry-After, and the payment goes back, also while the client's body is still
// arriving: the upstream accepted nothing, so nothing was done. Node's socket idle timeout starts only once
// connected; only Node's global agent timed the connect, and its timeout was taken for the client's silence.
import { test, after } from 'node:test';
import http from 'node:http';
import net from 'node:net';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1 } from './harness.js';
import { mintLocalCredential, ROUTES_YAML, TEST_ROOT_KEY } from './gate-fixture.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { startUnacceptingListener } from '../support/unaccepting-listener.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** A POST whose declared 10-byte body never fully comes: its answer, read while the body is still owed. */
function partialPost(port: number, auth: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const q = http.request({ host: '127.0.0.1', port, path: '/premium', method: 'POST', headers: { authorization: auth, accept: 'application/json', 'content-length': '10' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        q.destroy();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body });
      });
    });
    q.on('error', reject);
    q.setTimeout(20_000, () => q.destroy(new Error('no answer in 20 s')));
    q.write('abc');
  });
}

test('standalone mode: an upstream that never accepts the connection gets a bounded 504 with Retry-After, and the payment back', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-standalone-connect-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = cleanup.use(await startUnacceptingListener(), 'unaccepting upstream');
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${up.port}\nupstream_timeout_ms: 2000\nlog: { level: error }\n${ROUTES_YAML}`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  cleanup.add(() => gate.close(), 'standalone l402d');
  const route = cfg.routes.find((r) => r.match === '/premium')!;
  const { auth } = await mintLocalCredential(route, '/premium');
  const get = () => http1(`http://127.0.0.1:${port}/premium`, { headers: { authorization: auth, accept: 'application/json' }, timeoutMs: 20_000 });

  // The client's own timeout (20 s) is far below the OS's connect give-up (about 2 min): an answer at all is the bound.
  const r = await get();
  assert.equal(r.status, 504, r.body);
  assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
  assert.equal((JSON.parse(r.body) as { payment?: string }).payment, 'not_consumed', r.body);

  // A client still sending its body while the upstream never accepts: the upstream's failure all the same (it was
  // given nothing), never the client's silence (a 408 that keeps the payment).
  const posted = (await mintLocalCredential(route, '/premium', 'POST')).auth;
  const post = await partialPost(port, posted);
  assert.equal(post.status, 504, post.body);
  assert.ok(Number(post.retryAfter) >= 1);
  assert.equal((JSON.parse(post.body) as { payment?: string }).payment, 'not_consumed', post.body);

  // The payment really went back: once the upstream accepts again, the same single-use credential is served, once.
  up.resume();
  const ok = await get();
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.body, 'served\n');
  assert.equal((await get()).status, 401);
});

test('standalone mode: an https upstream that accepts TCP and never completes the TLS handshake: a bounded 504 with the payment back, also while the body is still arriving', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-standalone-tls-stall-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  // Accepts, reads, never answers: the TLS handshake never ends.
  const held = new Set<net.Socket>();
  const mute = net.createServer((c) => (held.add(c), c.on('error', () => {}), c.resume()));
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => (held.forEach((c) => c.destroy()), new Promise((resolve) => mute.close(resolve))), 'mute upstream');
  const port = await freePort();
  const cfg = parseConfig(
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: https://127.0.0.1:${(mute.address() as net.AddressInfo).port}\nupstream_timeout_ms: 2000\nlog: { level: error }\n${ROUTES_YAML}`,
    { env: {} },
  );
  const gate = await startGate(cfg, { log: createLogger('silent') });
  cleanup.add(() => gate.close(), 'standalone l402d (tls upstream)');
  const route = cfg.routes.find((r) => r.match === '/premium')!;
  const posted = (await mintLocalCredential(route, '/premium', 'POST')).auth;
  const post = await partialPost(port, posted);
  assert.equal(post.status, 504, post.body);
  assert.ok(Number(post.retryAfter) >= 1);
  assert.equal((JSON.parse(post.body) as { payment?: string }).payment, 'not_consumed', post.body);
});
