/**
 * Integration-test harness (a thin re-export of test/support/*, kept so tests written against it keep working): starts REAL nginx and redis-server processes (plus small
 * Node HTTP / gRPC upstreams) on free loopback ports, and tears them down again.
 *
 * Typical use with node:test:
 *
 * ```ts
 * import { test } from 'node:test';
 * import { Cleanup, requireTool, startRedis, startNginx, freePort } from './harness.js';
 *
 * test('something end to end', async (t) => {
 *   if (!requireTool('nginx')) return t.skip('nginx not installed');
 *   const cleanup = new Cleanup();
 *   t.after(() => cleanup.run());          // runs even when the test fails
 *   const redis = cleanup.use(await startRedis());
 *   const port = await freePort();
 *   const nginx = cleanup.use(await startNginx({ http: `server { listen 127.0.0.1:${port}; ... }` }));
 *   ...
 * });
 * ```
 *
 * Guarantees:
 * - Every wait is bounded (default 10 s) and fails with an Error naming what was awaited,
 *   including the tail of the relevant process log (nginx error.log / redis stdout).
 * - Spawn errors (ENOENT, EACCES, ...) reject the start promise instead of crashing the run.
 * - No orphans: every child is tracked; if the test process exits (normally, via
 *   process.exit, or on SIGINT/SIGTERM/SIGHUP) while something is still running, it is
 *   SIGKILLed synchronously (nginx as a whole process group: master + workers) and its
 *   temp dir removed.
 *
 * Set L402_KEEP_TMP=1 to keep nginx/redis temp dirs after stop() for debugging.
 */
export * from '../support/waits.js';
export * from '../support/processes.js';
export * from '../support/redis.js';
export * from '../support/nginx.js';
export * from '../support/upstream.js';
export * from '../support/grpc.js';
export * from '../support/http-clients.js';
