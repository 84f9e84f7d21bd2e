// Red team, nginx mode: the path priced is the path forwarded, also where protect.conf's own
// `set $l402_uri $uri` does not run: a `rewrite ... break` before `include protect.conf` (the documented order:
// rewrites first) stops every rewrite-module directive after it, and a nested location does not inherit them.
// l402d then priced the client's raw path while nginx forwarded the rewritten one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Cleanup, http1, requireTool, startCountingUpstream, type CountingUpstream } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let up: CountingUpstream;

before(async () => {
  if (!nginxBin) return;
  up = cleanup.use(await startCountingUpstream(), 'upstream (rewrites)');
  const app = `http://127.0.0.1:${up.port}`;
  s = await startStack(cleanup, {
    // Cheap, reusable routes: a credential bought for any path of theirs opens all of it.
    extraRoutes: '  - { match: /cheapr/, amount_msat: 100, access: indefinite }\n  - { match: /nestr/, amount_msat: 100, access: indefinite }\n',
    extra: (dir) => `
        location /cheapr/ { rewrite ^/cheapr/old/(.*)$ /premium/$1 break; include ${dir}/protect.conf; proxy_pass ${app}; }
        location /nestr/ { include ${dir}/protect.conf; proxy_pass ${app};
            location /nestr/in/ { rewrite ^/nestr/in/(.*)$ /premium/$1 break; proxy_pass ${app}; } }`,
  });
});
after(() => cleanup.run());

/** One raw request line, sent as is. */
function raw(target: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const port = Number(new URL(s.origin).port);
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () =>
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`),
    );
    let out = '';
    sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
    sock.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0), body: out.split('\r\n\r\n').slice(1).join('\r\n\r\n') }));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

for (const [where, prefix] of [['a rewrite ... break before the include', '/cheapr/old/'], ['a nested location that rewrites', '/nestr/in/']] as const) {
  test(`${where}: priced as the path nginx forwards, so a cheap credential never opens the paid path`, { skip }, async () => {
    // The location's own (cheap) route still sells and serves its own paths.
    const cheap = await s.buy(prefix.replace(/(old|in)\/$/, 'x'));
    up.reset();
    const own = await http1(s.origin + prefix.replace(/(old|in)\/$/, 'y'), { headers: { authorization: cheap.auth } });
    assert.equal(own.status, 200, own.body);
    // nginx forwards /premium/secret: the challenge is the premium route's, and the cheap credential is refused.
    const unpaid = await http1(s.origin + prefix + 'secret', { headers: { accept: 'application/json' } });
    assert.equal(unpaid.status, 402, unpaid.body);
    assert.equal((JSON.parse(unpaid.body) as { amount_msat: number }).amount_msat, 10000);
    const withCheap = await http1(s.origin + prefix + 'secret', { headers: { authorization: cheap.auth, accept: 'application/json' } });
    assert.equal(withCheap.status, 401, withCheap.body);
    assert.deepEqual(up.requests.map((r) => r.url), [prefix.replace(/(old|in)\/$/, 'y')], 'only the cheap path was served');
    // Paying the premium price opens it, and the upstream is sent exactly what was priced.
    const paid = await s.buy(prefix + 'secret');
    const ok = await http1(s.origin + prefix + 'secret', { headers: { authorization: paid.auth } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(up.requests.at(-1)?.url, '/premium/secret');
    // A control character the rewrite carries into the forwarded path never reaches a header: refused.
    up.reset();
    const ctl = await raw(prefix + 'a%0D%0AX-Injected:%201', { authorization: paid.auth });
    assert.ok(ctl.status === 400, `${ctl.status} ${ctl.body}`);
    assert.equal(up.hits, 0);
  });
}
