// Red team, class F: ";params" in a path. Servlet containers (Tomcat, Jetty, Spring on them) cut ";..." from
// each raw segment before routing, then merge the "//" that leaves, while nginx matches its location on the
// path with the ";" in it and proxy_pass (no URI part) forwards the raw target. So "/timed;x/a" and "/;/premium"
// are matched to the free "location /" by nginx and served as the paid /timed/a and /premium by such an
// upstream; inside a paid location "/premium/report;x" was priced as /premium/report;x, not as the
// /premium/report it is served as.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http2c from 'node:http2';
import { Cleanup, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { nginxTarget } from '../../src/server/http-server.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
before(async () => {
  if (nginxBin) s = await startStack(cleanup);
});
after(() => cleanup.run());

/** One raw request line, sent as is (no client-side normalisation). */
function raw(target: string, headers = ''): Promise<{ status: number; body: string }> {
  const port = Number(new URL(s.origin).port);
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n${headers}Connection: close\r\n\r\n`));
    let out = '';
    sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
    sock.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0), body: out.split('\r\n\r\n').slice(1).join('\r\n\r\n') }));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

function h2(target: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const c = http2c.connect(`http://127.0.0.1:${s.h2Port}`);
    c.on('error', reject);
    const st = c.request({ ':path': target, accept: 'application/json' });
    let status = 0;
    let body = '';
    st.on('response', (h) => (status = Number(h[':status'])));
    st.on('data', (d: Buffer) => (body += d.toString()));
    st.on('end', () => (c.close(), resolve({ status, body })));
    st.on('error', reject);
    st.end();
  });
}

// What a servlet container serves for a raw path: ";params" cut from each segment, "//" merged.
const servletPath = (p: string) => p.split('?')[0]!.split('/').map((seg) => seg.split(';')[0]).join('/').replace(/\/{2,}/g, '/');

test('a ";" in the path, raw or encoded, is refused server-wide before any upstream (HTTP/1.1 and HTTP/2)', { skip }, async () => {
  const attacks = [
    '/timed;x/a', '/timed;/a', '/;/premium', '/;x/premium', '/;jsessionid=1/timed/a', '/x;/../premium', '/premium;x',
    '/premium/report;x', '/forever;v=1', '/TIMED%3bx/a', '/timed%3Bx/a', '/;', '/free;x?q=1',
  ];
  for (const target of attacks) {
    if (/^\/;.*premium|^\/timed;/.test(target)) assert.match(servletPath(target), /^\/(premium|timed\/a)/, `${target} is a paid path to a servlet container`);
    s.upstream.reset();
    const r = await raw(target);
    assert.equal(r.status, 400, `${target}: ${r.status} ${r.body}`);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'ambiguous_path', target);
    assert.equal(s.upstream.hits, 0, `${target} reached the upstream unpaid: ${JSON.stringify(s.upstream.requests.map((x) => x.url))}`);
    const r2 = await h2(target);
    assert.equal(r2.status, 400, `HTTP/2 ${target}: ${r2.status} ${r2.body}`);
    assert.equal(s.upstream.hits, 0, `HTTP/2 ${target} reached the upstream`);
  }
  // A ";" in the query is the query's business; free paths without one still pass.
  for (const target of ['/free?a=1;b=2', '/free/a,b=c:d@e']) {
    s.upstream.reset();
    const r = await raw(target);
    assert.equal(r.status, 200, `${target}: ${r.status} ${r.body}`);
    assert.deepEqual(s.upstream.requests.map((x) => x.url), [target]);
  }
});

test('l402d itself refuses a ";" in the path it is asked to price (raw, encoded, or in the path nginx matched)', () => {
  for (const [rawUri, matched] of [['/premium/report;x', undefined], ['/premium/report%3Bx', undefined], ['/premium/a', '/premium/a;x'], ['/premium;x/a?q', '/premium;x/a']] as const) {
    const t = nginxTarget(rawUri, matched);
    assert.equal(t.path, undefined, `${rawUri} (${matched}) priced as ${t.path}`);
    assert.match(t.ambiguous ?? '', /";"/);
  }
  assert.equal(nginxTarget('/premium/report?a=1;b=2', undefined).path, '/premium/report');
});
