// Replay storm at the goal size: 1,000 concurrent uses of one single-use credential, spread over 2 nginx
// (2 workers each) and 2 l402d processes sharing one Redis, over keep-alive HTTP/1.1 and HTTP/2 (h2c)
// mixed, at the default timeouts. Exactly one passes (counted at the upstream too), and it does pass; the
// other 999 get 401 already_used, never a 5xx, each with a fresh challenge that the copies share (one
// invoice per l402d, not one per copy).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, startRedis } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { startGateProcess, type GateProcess } from './gate-process.js';
import { parseConfig } from '../../src/config/config.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';

const skip = requireTool('nginx') && requireTool('redis-server') ? false : 'nginx or redis-server not installed';
const cleanup = new Cleanup();
after(() => cleanup.run());

const ROUTES = `routes:\n  - { match: /premium, amount_msat: 10000 }\n`;
const N = 1_000;

interface Answer {
  via: string;
  status: number;
  reason?: string;
  invoice?: string;
  error?: string;
}

function parsed(body: string): { reason?: string; invoice?: string } {
  try {
    const b = JSON.parse(body) as { reason?: string; invoice?: string };
    return { reason: b.reason, invoice: b.invoice };
  } catch {
    return {};
  }
}

function viaHttp1(origin: string, agent: http.Agent, auth: string, via: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request(`${origin}/premium`, { agent, headers: { authorization: auth, accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ via, status: res.statusCode ?? 0, ...parsed(Buffer.concat(chunks).toString()) }));
      res.on('error', (e) => resolve({ via, status: 0, error: e.message }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (e) => resolve({ via, status: 0, error: e.message }));
    req.end();
  });
}

function viaHttp2(session: http2.ClientHttp2Session, auth: string, via: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = session.request({ ':method': 'GET', ':path': '/premium', authorization: auth, accept: 'application/json' });
    let status = 0;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 30_000);
    req.on('response', (h) => (status = Number(h[':status'] ?? 0)));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      clearTimeout(timer);
      resolve({ via, status, ...parsed(Buffer.concat(chunks).toString()) });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve({ via, status: 0, error: e.message });
    });
  });
}

test(`replay storm: ${N} concurrent uses of one single-use credential over 2 nginx, 2 l402d and one Redis, HTTP/1.1 keep-alive and HTTP/2 mixed: exactly one passes`, { skip, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-storm-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const redis = cleanup.use(await startRedis());
  const upstream = cleanup.use(await startCountingUpstream());
  const ports = [await freePort(), await freePort()];
  const gates: GateProcess[] = [];
  for (const [i, port] of ports.entries()) {
    const file = join(dir, `l402-${i}.yaml`);
    // Each process its own data dir (its own dev wallet): the claims meet in Redis only.
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${join(dir, `d${i}`)}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\nlog: { level: warn }\nlightning: { type: dev }\n${ROUTES}`);
    gates.push(cleanup.use(await startGateProcess(file, port)));
  }
  // The default snippets, with both l402d in the upstream block.
  const snippets = join(dir, 'snippets');
  writeSnippets(parseConfig(`listen: 127.0.0.1:${ports[0]}\nlightning: { type: dev }\n${ROUTES}`, { env: {} }), snippets);
  const up = readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/server [^;]+;/, ports.map((p) => `server 127.0.0.1:${p};`).join('\n    '));
  writeFileSync(join(snippets, 'upstream.conf'), up);
  const origins: Array<{ h1: string; h2: string }> = [];
  for (let i = 0; i < 2; i++) {
    const p1 = await freePort();
    const p2 = await freePort();
    const loc = `location /premium { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }`;
    cleanup.use(
      await startNginx({
        workers: 2,
        // Up to N client connections, N auth and N render connections to l402d in flight at once: more than
        // the harness's default 1024 per worker.
        workerConnections: 4096,
        http: `include ${snippets}/upstream.conf;
        server { listen 127.0.0.1:${p1}; include ${snippets}/server.conf; ${loc} }
        server { listen 127.0.0.1:${p2} http2; include ${snippets}/server.conf; ${loc} }`,
      }),
    );
    origins.push({ h1: `http://127.0.0.1:${p1}`, h2: `http://127.0.0.1:${p2}` });
  }
  const wallets = [0, 1].map((i) => DevWallet.open(join(dir, `d${i}`)));
  cleanup.add(() => wallets.forEach((w) => w.close()));
  const r = await http1(`${origins[0]!.h1}/premium`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  // Paid at the wallet of whichever l402d rendered the challenge.
  const pay = (w: DevWallet) => {
    try {
      return w.pay(b.invoice).toString('hex');
    } catch {
      return undefined;
    }
  };
  const preimage = pay(wallets[0]!) ?? pay(wallets[1]!);
  assert.ok(preimage, 'the invoice was paid');
  const auth = `L402 ${b.macaroon}:${preimage}`;

  // Connections opened before the storm, so the requests themselves start together.
  const agents = origins.map(() => new http.Agent({ keepAlive: true, maxSockets: 128 }));
  cleanup.add(() => agents.forEach((a) => a.destroy()));
  const sessions = origins.map((o) => Array.from({ length: 4 }, () => http2.connect(o.h2)));
  cleanup.add(() => sessions.flat().forEach((s) => s.destroy()));
  await Promise.all(sessions.flat().map((s) => new Promise<void>((res, rej) => (s.connecting ? s.once('connect', () => res()).once('error', rej) : res()))));
  upstream.reset();
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) => {
      const n = i % 2;
      // Alternate nginx, and HTTP/1.1 / HTTP/2 within each; 4 HTTP/2 connections per nginx (~63 streams each).
      return i % 4 < 2 ? viaHttp1(origins[n]!.h1, agents[n]!, auth, `nginx${n} h1`) : viaHttp2(sessions[n]![(i >> 2) % 4]!, auth, `nginx${n} h2`);
    }),
  );
  const ms = Date.now() - started;
  const tally = new Map<string, number>();
  for (const a of answers) tally.set(`${a.via} ${a.status}${a.reason ? `/${a.reason}` : ''}${a.error ? ` (${a.error})` : ''}`, (tally.get(`${a.via} ${a.status}${a.reason ? `/${a.reason}` : ''}${a.error ? ` (${a.error})` : ''}`) ?? 0) + 1);
  const summary = `${ms} ms: ${[...tally].sort().map(([k, v]) => `${k}=${v}`).join(', ')}`;
  t.diagnostic(summary);
  assert.equal(answers.filter((a) => a.status === 200).length, 1, `exactly one pass: ${summary}`);
  assert.equal(upstream.hits, 1, `the upstream saw it once: ${summary}`);
  assert.equal(upstream.requests[0]!.headers['x-l402-token-id'], decodeIdentifier(decodeMacaroonBase64(auth.slice(5).split(':')[0]!).identifier)!.tokenId.toString('hex'));
  assert.equal(upstream.requests[0]!.headers.authorization, undefined, 'the credential stays at the gate');
  const refused = answers.filter((a) => a.status !== 200);
  assert.equal(refused.length, N - 1);
  assert.ok(refused.every((a) => a.status === 401 && a.reason === 'already_used'), `all others 401 already_used, none 5xx: ${summary}`);
  // Each refusal carries a fresh challenge, yet the copies of one credential share it for a few seconds:
  // the storm costs the Lightning node a few invoices (one per l402d), not one per copy.
  assert.ok(refused.every((a) => typeof a.invoice === 'string' && a.invoice.startsWith('lnbcrt')), 'every 401 offers an invoice');
  const invoices = new Set(refused.map((a) => a.invoice));
  assert.ok(invoices.size <= 4, `${invoices.size} invoices minted for ${refused.length} replays`);
  // All four ways in were used.
  assert.equal(new Set(answers.map((a) => a.via)).size, 4);
  // Afterwards the credential stays spent, from either nginx.
  for (const o of origins) assert.equal((await http1(`${o.h1}/premium`, { headers: { authorization: auth } })).status, 401);
});
