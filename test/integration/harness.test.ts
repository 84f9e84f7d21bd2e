// Proves the integration harness works against REAL nginx and redis-server processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import * as grpc from '@grpc/grpc-js';
import {
  Cleanup,
  canConnect,
  freePort,
  grpcClient,
  http1,
  http2,
  parseListenAddresses,
  requireTool,
  startCountingUpstream,
  startGrpcUpstream,
  startNginx,
  startRedis,
  waitFor,
  type GrpcError,
} from './harness.js';

test('freePort returns a bindable loopback port', async () => {
  const port = await freePort();
  assert.ok(Number.isInteger(port) && port > 0 && port < 65536);
  assert.equal(await canConnect(port), false);
});

test('requireTool finds installed tools and is strict only in CI', () => {
  const saved = process.env.CI;
  try {
    delete process.env.CI;
    assert.equal(requireTool('definitely-not-a-real-tool-l402'), undefined);
    process.env.CI = 'true';
    assert.throws(() => requireTool('definitely-not-a-real-tool-l402'), /definitely-not-a-real-tool-l402.*CI/);
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
  const sh = requireTool('sh');
  assert.ok(sh && sh.endsWith('/sh'));
});

test('parseListenAddresses', () => {
  assert.deepEqual(
    parseListenAddresses(`
      server { listen 127.0.0.1:1234; listen 2345 http2; listen unix:/tmp/x.sock; }
      # listen 9999;
      server { listen *:3456 default_server; listen 127.0.0.1:1234 ; listen [::1]:4567; }`),
    [
      { host: '127.0.0.1', port: 1234 },
      { host: '127.0.0.1', port: 2345 },
      { host: '127.0.0.1', port: 3456 },
      { host: '::1', port: 4567 },
    ],
  );
});

test('Cleanup runs every stopper in LIFO order even if one throws', async () => {
  const order: string[] = [];
  const c = new Cleanup();
  c.add(() => void order.push('a'));
  c.add(() => {
    order.push('b');
    throw new Error('boom');
  });
  c.use({ stop: async () => void order.push('c') });
  await assert.rejects(c.run(), /boom/);
  assert.deepEqual(order, ['c', 'b', 'a']);
  await c.run(); // idempotent
});

test('redis: start, SET/GET, kill (outage), restart, stop', async (t) => {
  if (!requireTool('redis-server')) return t.skip('redis-server not installed');
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());

  const redis = cleanup.use(await startRedis());
  assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
  const client = new Redis(redis.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 50,
    lazyConnect: true,
  });
  client.on('error', () => {}); // expected during the outage
  cleanup.add(() => client.disconnect());
  await client.connect();

  assert.equal(await client.set('k', 'v'), 'OK');
  assert.equal(await client.get('k'), 'v');

  await redis.kill();
  assert.equal(await canConnect(redis.port), false);
  await waitFor('ioredis to notice the outage', () => client.status !== 'ready', { timeoutMs: 5_000 });
  await assert.rejects(client.get('k'));

  await redis.restart();
  await waitFor('ioredis to reconnect', () => client.status === 'ready', { timeoutMs: 5_000 });
  assert.equal(await client.get('k'), null, 'no persistence: data is gone after restart');
  assert.equal(await client.set('k', 'v2'), 'OK');
  assert.equal(await client.get('k'), 'v2');

  await redis.stop();
  assert.equal(await canConnect(redis.port), false);
});

test('nginx: HTTP/1.1, h2c and gRPC through nginx to real upstreams', async (t) => {
  if (!requireTool('nginx')) return t.skip('nginx not installed');
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());

  const upstream = cleanup.use(await startCountingUpstream());
  const grpcUp = cleanup.use(await startGrpcUpstream());
  const h1Port = await freePort();
  const h2Port = await freePort();
  // nginx 1.22: `listen ... http2` without ssl is h2c prior-knowledge ONLY, so HTTP/1.1
  // clients need their own plain listen socket in the same server block.
  const http = `
    upstream app { server 127.0.0.1:${upstream.port}; }
    server {
      listen 127.0.0.1:${h1Port};
      listen 127.0.0.1:${h2Port} http2;
      location / { proxy_pass http://app; }
      location /content.ContentService/ { grpc_pass grpc://127.0.0.1:${grpcUp.port}; }
    }`;
  const nginx = cleanup.use(await startNginx({ http }));
  assert.deepEqual(nginx.ports, [h1Port, h2Port]);

  // HTTP/1.1
  const r1 = await http1(`http://127.0.0.1:${h1Port}/hello?x=1`, { headers: { 'x-test': 'one' } });
  assert.equal(r1.status, 200);
  assert.deepEqual(JSON.parse(r1.body), { ok: true, path: '/hello?x=1' });
  assert.equal(upstream.hits, 1);
  assert.equal(upstream.requests[0]?.headers['x-test'], 'one');

  const post = await http1(`http://127.0.0.1:${h1Port}/submit`, { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain' } });
  assert.equal(post.status, 200);
  assert.equal(upstream.requests[1]?.method, 'POST');
  assert.equal(upstream.requests[1]?.body, 'payload');

  // HTTP/2 cleartext, prior knowledge
  const r2 = await http2(`http://127.0.0.1:${h2Port}`, '/h2-path', { headers: { 'x-test': 'two' } });
  assert.equal(r2.status, 200);
  assert.equal(r2.headers[':status'], 200);
  assert.deepEqual(JSON.parse(r2.body), { ok: true, path: '/h2-path' });
  assert.equal(upstream.hits, 3);
  assert.equal(upstream.requests[2]?.headers['x-test'], 'two');

  // HTTP/1.1 on the http2-only socket does not work (documented nginx 1.22 behaviour).
  await assert.rejects(http1(`http://127.0.0.1:${h2Port}/nope`, { timeoutMs: 2_000 }));
  assert.equal(upstream.hits, 3);

  // gRPC via nginx (h2c) to the grpc-js upstream, with metadata passed through.
  const client = grpcClient(h2Port);
  cleanup.add(() => client.close());
  const res = await client.getContent({ id: 'abc' }, { authorization: 'L402 mac:pre' });
  assert.deepEqual(res, { id: 'abc', body: 'content for abc' });
  assert.equal(grpcUp.calls, 1);
  assert.deepEqual(grpcUp.authorizations, ['L402 mac:pre']);

  // gRPC errors from the upstream pass through nginx untouched.
  const err = await client.getContent({ id: 'fail' }).then(
    () => assert.fail('expected an error'),
    (e: GrpcError) => e,
  );
  assert.equal(err.code, grpc.status.PERMISSION_DENIED);
  assert.equal(err.details, 'fail requested');
  assert.equal(grpcUp.calls, 2);
  assert.deepEqual(grpcUp.authorizations, ['L402 mac:pre', undefined]);
  assert.equal(upstream.hits, 3, 'gRPC must not reach the HTTP upstream');

  // reload (with a new http text) keeps serving
  await nginx.reload(http.replace('location / {', 'location = /reloaded { return 204; }\n      location / {'));
  const r3 = await http1(`http://127.0.0.1:${h1Port}/reloaded`);
  assert.equal(r3.status, 204);
  assert.equal(upstream.hits, 3);

  // an invalid config on reload is rejected by nginx -t and nginx keeps running
  await assert.rejects(nginx.reload('server { nonsense_directive on; }'), /nonsense_directive/);
  assert.equal((await http1(`http://127.0.0.1:${h1Port}/still-up`)).status, 200);

  assert.match(nginx.accessLog(), /GET \/hello\?x=1 HTTP\/1\.1" 200/);
  await nginx.stop();
  assert.equal(await canConnect(h1Port), false);
  assert.equal(await canConnect(h2Port), false);
  assert.match(nginx.errorLog(), /start worker process/, 'error log survives stop()');
});

test('nginx: invalid config fails fast with nginx -t output', async (t) => {
  if (!requireTool('nginx')) return t.skip('nginx not installed');
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const port = await freePort();
  const err = await startNginx({ http: `server { listen 127.0.0.1:${port}; bogus_directive 1; }` }).then(
    (n) => (cleanup.use(n), assert.fail('nginx started with an invalid config')),
    (e: Error) => e,
  );
  assert.match(err.message, /nginx -t rejected[\s\S]*unknown directive "bogus_directive"/);
  assert.equal(await canConnect(port), false);
});

test('nginx: port already taken makes startup fail with the error log tail', async (t) => {
  if (!requireTool('nginx')) return t.skip('nginx not installed');
  const cleanup = new Cleanup();
  t.after(() => cleanup.run());
  const busy = cleanup.use(await startCountingUpstream());
  // nginx retries a busy port 5 x 500 ms before giving up, so this takes ~2.5 s.
  const err = await startNginx({ http: `server { listen 127.0.0.1:${busy.port}; return 204; }` }).then(
    (n) => (cleanup.use(n), assert.fail('nginx "started" on a port owned by another process')),
    (e: Error) => e,
  );
  assert.match(err.message, /nginx exited early[\s\S]*Address already in use/);
});
