// Red team s9c: attacks on the session's fixes (nested-location reset, process policy, standalone relay). Each
// test below says what it found. First, through real nginx: server.conf empties $l402_uri at the start of every request and of every
// internal redirect, except in the auth subrequest. nginx runs the server's rewrite directives in EVERY
// subrequest, and a subrequest shares its parent's variables: an operator's own subrequest in a paid location
// (`mirror`, which nginx runs after the access phase, while the upstream is being asked) emptied the paid
// request's $l402_uri before its upstream failed, so @l402_release told l402d no path: 403 no_route instead of
// the 502 that gives a single-use payment back. The honest client lost a payment it had to get back. (The route
// pin, emptied by server.conf in the same way, is kept with the auth answer too: route_pins: required here.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool } from './harness.js';
import { TEST_ROOT_KEY } from './gate-fixture.js';
import { startGateProcess } from './gate-process.js';
import { startSnippetStack, type SnippetStack } from './snippet-stack.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let origin: string;
let stack: SnippetStack;
let mode: 'ok' | 'reset' = 'ok';
let hits = 0;
let mirrored = 0;

before(async () => {
  if (skip) return;
  // The protected app: answers, or resets once the request has arrived (after the claim).
  const app = http.createServer((req, res) => {
    req.resume();
    hits++;
    res.end('served\n');
  });
  const sockets = new Set<net.Socket>();
  const up = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (mode === 'reset') s.once('data', () => s.resetAndDestroy());
    else app.emit('connection', s);
  });
  const upPort = await freePort();
  await new Promise<void>((r) => up.listen(upPort, '127.0.0.1', () => r()));
  cleanup.add(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => up.close(() => r()));
  });
  // The operator's mirror target (a shadow copy of the traffic).
  const shadow = http.createServer((req, res) => {
    req.resume();
    mirrored++;
    res.end();
  });
  const shadowPort = await freePort();
  await new Promise<void>((r) => shadow.listen(shadowPort, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => shadow.close(() => r())));
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  stack = await startSnippetStack(cleanup, {
    name: 's9c-gate',
    config: `lightning: { type: dev }
route_pins: required
routes:
  - { id: premium, match: /premium/, amount_msat: 1000 }
  - { id: plain, match: /plain/, amount_msat: 1000 }
`,
    http: ({ snippets }) => `
    include ${snippets}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${snippets}/server.conf;
        location /premium/ {
            set $l402_route_pin premium;
            include ${snippets}/protect.conf;
            mirror /_shadow;
            proxy_pass http://127.0.0.1:${upPort};
        }
        location /plain/ {
            include ${snippets}/protect.conf;
            set $l402_route_pin plain;
            proxy_pass http://127.0.0.1:${upPort};
        }
        location = /_shadow {
            internal;
            proxy_pass http://127.0.0.1:${shadowPort};
        }
    }`,
  });
});
after(() => cleanup.run());

const buy = (path: string): Promise<string> => stack.buy(origin, path);
const get = (path: string, authorization: string) => http1(`${origin}${path}`, { headers: { accept: 'application/json', authorization } });

for (const path of ['/plain/a', '/premium/a']) {
  test(`the upstream fails after the claim in a paid location (${path}): 502 with the payment given back, also under an operator's mirror`, { skip }, async () => {
    const c = await buy(path);
    mode = 'reset';
    const r = await get(path, c);
    mode = 'ok';
    assert.equal(r.status, 502, r.body);
    assert.equal((JSON.parse(r.body) as { payment?: string }).payment, 'not_consumed', r.body);
    const again = await get(path, c);
    assert.equal(again.status, 200, `the payment given back passes once: ${again.body}`);
    assert.equal((await get(path, c)).status, 401);
  });
}

// Standalone, real l402d process: an upstream answer whose status line Node's parser accepts but Node's server
// cannot write (a status below 100: "099", "000") made res.writeHead throw in the relay callback, an uncaught
// exception, so l402d exited (70) for every client: one request to a free path of an app that echoes a status
// (or any upstream fault) restarted the gate at will. It must be answered 502 and l402d must go on serving.
test('standalone: an upstream status l402d cannot relay (099, 000) is a 502, and the same l402d goes on serving', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-s9c-status-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const up = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (b: Buffer) => {
      const code = /^GET \/free\/(\w+)/.exec(b.toString('latin1'))?.[1] ?? '200';
      // "short": a body cut short of its Content-Length; "101": a protocol switch nobody asked for; a broken
      // chunk; an obsolete folded header line.
      if (code === 'short') return void s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nodd');
      if (code === 'badchunk') return void s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nodd\r\nzz\r\n');
      if (code === 'fold') return void s.end('HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 3\r\n\r\nodd');
      s.end(`HTTP/1.1 ${code} Odd\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nodd`);
    });
  });
  const upPort = await freePort();
  await new Promise<void>((r) => up.listen(upPort, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => up.close(() => r())));
  const port = await freePort();
  const file = join(dir, 'l402.yaml');
  writeFileSync(
    file,
    `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nupstream: http://127.0.0.1:${upPort}\nlightning: { type: dev }\nlog: { level: info }\nfree_paths: ["/free/"]\nroutes: [{ match: /premium, amount_msat: 1000 }]\n`,
  );
  const gate = cleanup.use(await startGateProcess(file, port));
  const health = await http1(`http://127.0.0.1:${port}/_l402/health`);
  assert.equal(health.status, 200);
  const instance = (JSON.parse(health.body) as { instance: string }).instance;
  assert.equal((await http1(`http://127.0.0.1:${port}/free/200`)).status, 200, gate.output());
  for (const code of ['099', '000', '010']) {
    const r = await http1(`http://127.0.0.1:${port}/free/${code}`).catch((e: Error) => ({ status: -1, body: e.message }));
    assert.equal(r.status, 502, `${code}: ${r.body}\n${gate.output()}`);
    const after = await http1(`http://127.0.0.1:${port}/_l402/health`);
    assert.equal((JSON.parse(after.body) as { instance: string }).instance, instance, `the same process answers after ${code}\n${gate.output()}`);
  }
  // Answers cut short or switching protocols: whatever the client gets, the same process answers after them.
  for (const odd of ['short', '101', 'badchunk', 'fold']) {
    await http1(`http://127.0.0.1:${port}/free/${odd}`).catch(() => undefined);
    const after = await http1(`http://127.0.0.1:${port}/_l402/health`);
    assert.equal((JSON.parse(after.body) as { instance: string }).instance, instance, `the same process answers after ${odd}\n${gate.output()}`);
  }
  assert.doesNotMatch(gate.output(), /uncaught_exception|unhandled_rejection/);
});

// The route pin is nginx's variable too ($l402_route_pin, `set` in a location): kept across internal redirects
// as the path was. A try_files fallback from a location pinned to a cheap route into a paid location that pins
// nothing (decided by its path) carried the cheap pin along: the dearer location was decided with the cheap
// route, whose match covers its path, and opened on the cheap credential.
test('a route pin does not outlive its location: a fallback into an unpinned paid location is decided by its own path', { skip }, async () => {
  const app = http.createServer((req, res) => {
    req.resume();
    res.end('served\n');
  });
  const upPort = await freePort();
  await new Promise<void>((r) => app.listen(upPort, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => app.close(() => r())));
  const port = await freePort();
  const o = `http://127.0.0.1:${port}`;
  const pin = await startSnippetStack(cleanup, {
    name: 's9c-pin',
    config: `lightning: { type: dev }
routes:
  - { id: cheap, match: /api/, amount_msat: 1000, access: indefinite }
  - { id: special, match: /api/special/, amount_msat: 900000, access: indefinite }
`,
    http: ({ snippets, dir }) => `
    include ${snippets}/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${snippets}/server.conf;
        location /api/ {
            set $l402_route_pin cheap;
            include ${snippets}/protect.conf;
            root ${dir}/empty;
            try_files $uri /api/special/fallback;
        }
        location /api/special/ {
            include ${snippets}/protect.conf;
            proxy_pass http://127.0.0.1:${upPort};
        }
    }`,
  });
  const w = pin.wallet;
  const r0 = await http1(`${o}/api/a`, { headers: { accept: 'application/json' } });
  assert.equal(r0.status, 402, r0.body);
  const b = JSON.parse(r0.body) as { macaroon: string; invoice: string };
  const cheap = `L402 ${b.macaroon}:${w.pay(b.invoice).toString('hex')}`;
  // Directly, the special location refuses the cheap credential.
  const direct = await http1(`${o}/api/special/x`, { headers: { accept: 'application/json', authorization: cheap } });
  assert.notEqual(direct.status, 200, direct.body);
  // Through the cheap location's fallback: the same.
  const fell = await http1(`${o}/api/missing`, { headers: { accept: 'application/json', authorization: cheap } });
  assert.notEqual(fell.status, 200, `the cheap pin outlived its location: ${fell.body}`);
});
