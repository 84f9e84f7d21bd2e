// An outbound HTTP call (LNURL, Eclair, CLNRest, LND REST) to a host whose DNS never answers: the timeout covers
// the lookup, and when the lookup answers after all, nothing connects (the request and its socket are gone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { LookupAddress } from 'node:dns';
import { BoundedHttpClient, HttpFetchError } from '../../src/rails/lightning/transports/safe-fetch.js';
import { sleep } from '../../src/util/timeout.js';

test('a DNS lookup that never answers: the request times out, and a late answer connects nothing', async () => {
  let connections = 0;
  const server = http.createServer((_req, res) => res.end('{}'));
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  let late: ((err: Error | null, addresses: LookupAddress[]) => void) | undefined;
  const client = new BoundedHttpClient({
    allowHttp: true,
    allowPrivate: true,
    maxRedirects: 0,
    maxResponseBytes: 4096,
    lookup: (_host, cb) => (late = cb),
  });
  try {
    await assert.rejects(client.request({ url: `http://stalled-dns.example:${port}/x`, timeoutMs: 300 }), (e: unknown) => e instanceof HttpFetchError && e.kind === 'timeout');
    assert.ok(late, 'the lookup was asked');
    late(null, [{ address: '127.0.0.1', family: 4 }]);
    // A connect, had one started, reaches the loopback listener within this wait; none may.
    await sleep(200);
    assert.equal(connections, 0);
  } finally {
    client.close();
    server.close();
  }
});
