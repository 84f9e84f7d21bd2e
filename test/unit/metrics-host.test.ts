// The metrics listener without a token (loopback only) answers no request that names another host: a web page
// that rebinds its own DNS name to 127.0.0.1 reaches the listener through the operator's browser as its own
// origin, and would read /metrics and the console (sales, earnings, token id prefixes, the backend).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createMetricsServer } from '../../src/server/metrics-server.js';
import { localHostHeader, nginxHostHeader } from '../../src/server/host-header.js';
import { createLogger } from '../../src/util/log.js';
import { http1 } from '../support/http-clients.js';

async function listening(token: string | undefined) {
  const source = { service: () => 'svc', data: async () => ({ totals: { sales: 1 } }) as never };
  const server = createMetricsServer({ render: async () => 'l402_sales_total 1\n' } as never, token, createLogger('silent'), source);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as AddressInfo).port };
}

test('no token: a Host that is not an IP literal or localhost (a rebound DNS name) is refused on /metrics and the console', async () => {
  const { server, port } = await listening(undefined);
  try {
    for (const path of ['/metrics', '/console', '/console.json']) {
      for (const host of ['attacker.example', `attacker.example:${port}`, 'ATTACKER.example.', 'localhost.attacker.example', '127.0.0.1.nip.io', 'a.b']) {
        const r = await http1(`http://127.0.0.1:${port}${path}`, { headers: { host } });
        assert.equal(r.status, 403, `${path} Host: ${host}`);
        assert.equal(r.body, '', 'nothing of the data');
      }
      // (The stub's data renders as JSON only: the HTML page is console.test.ts's.)
      if (path === '/console') continue;
      for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', 'console.localhost', `[::1]:${port}`, '10.0.0.5:9402']) {
        const r = await http1(`http://127.0.0.1:${port}${path}`, { headers: { host } });
        assert.equal(r.status, 200, `${path} Host: ${host}: ${r.body}`);
      }
    }
  } finally {
    server.close();
  }
});

test('with a token, the token decides (a rebound page cannot know it), whatever the Host', async () => {
  const token = 'metrics-token-0123456789abcdef';
  const { server, port } = await listening(token);
  try {
    assert.equal((await http1(`http://127.0.0.1:${port}/metrics`, { headers: { host: 'scraper.internal:9402', authorization: `Bearer ${token}` } })).status, 200);
    assert.equal((await http1(`http://127.0.0.1:${port}/metrics`, { headers: { host: 'attacker.example' } })).status, 401);
  } finally {
    server.close();
  }
});

test('localHostHeader', () => {
  for (const h of [undefined, '127.0.0.1', '127.0.0.1:1', '[::1]', '[::1]:9402', 'localhost', 'localhost.', 'a.localhost:80', '192.168.1.2']) assert.equal(localHostHeader(h), true, String(h));
  for (const h of ['', 'example.com', 'localhost.example.com', 'localhostx', '127.0.0.1.example', '[::1', 'local host', '127.0.0.1:99999x']) assert.equal(localHostHeader(h), false, h);
});

test('nginxHostHeader: what nginx names l402d by (its upstream block, an address), never a domain', () => {
  for (const h of [undefined, 'l402d', 'l402d:8402', 'l402d_a', 'localhost', '127.0.0.1:8402', '[::1]:8402']) assert.equal(nginxHostHeader(h), true, String(h));
  for (const h of ['', 'evil.example', 'evil.example:8402', 'l402d.evil.example', '127.0.0.1.nip.io', 'a b', 'x'.repeat(64)]) assert.equal(nginxHostHeader(h), false, h);
});
