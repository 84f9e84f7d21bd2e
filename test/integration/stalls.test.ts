// Stalled, not dead, dependencies, through real nginx at the DEFAULT timeouts (the snippets as generated for
// a default config): l402d stopped with SIGSTOP (the only one, or one of two in the upstream block), Redis
// stopped with SIGSTOP, a Lightning backend that accepts connections and never answers. Promises: every
// request is answered within 5 s (measured here with slack: < 5.5 s), a 503 always carries Retry-After, no
// request passes unpaid, and a single-use credential that only ever got 503s still passes, exactly once,
// once the dependency is back (its claim, if it landed late, was given back).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, freePort, http1, http2Request, requireTool, startCountingUpstream, startNginx, startRedis, waitFor, type CountingUpstream, type RedisHandle } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { startGateProcess, type GateProcess } from './gate-process.js';
import { parseConfig } from '../../src/config/config.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const skip = !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false;

const cleanup = new Cleanup();
after(() => cleanup.run());

/** What the defaults promise, with slack for a loaded machine. */
const BOUND_MS = 5_500;

const ROUTES = `routes:
  - { match: /premium, amount_msat: 10000 }
  - { match: /forever, amount_msat: 2000, access: indefinite }
`;


interface Stalls {
  origin: string;
  /** h2c origin of the same nginx. */
  h2: string;
  gates: GateProcess[];
  upstream: CountingUpstream;
  redis: RedisHandle;
  wallet: DevWallet;
}

/**
 * `n` l402d processes sharing Redis and the dev wallet, behind one nginx (2 workers) whose snippets are
 * generated for a default config: only the upstream block lists every process (as an operator does).
 */
async function startStalls(n: number, extraYaml = '', routes = ROUTES): Promise<Stalls> {
  const dir = mkdtempSync(join(tmpdir(), 'l402-stalls-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const redis = cleanup.use(await startRedis());
  const upstream = cleanup.use(await startCountingUpstream());
  const ports: number[] = [];
  const gates: GateProcess[] = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    ports.push(port);
    const file = join(dir, `l402-${i}.yaml`);
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: redis, url: "${redis.url}" }\nlog: { level: info }\n${extraYaml.includes('lightning:') ? extraYaml : `lightning: { type: dev }\n${extraYaml}`}${routes}`);
    gates.push(cleanup.use(await startGateProcess(file, port)));
  }
  const snippets = join(dir, 'snippets');
  // Default timeouts: the snippets are generated from a config that sets none.
  writeSnippets(parseConfig(`listen: 127.0.0.1:${ports[0]}\nlightning: { type: dev }\n${ROUTES}`, { env: {} }), snippets);
  const upstreamConf = readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/server [^;]+;/, ports.map((p) => `server 127.0.0.1:${p};`).join('\n    '));
  writeFileSync(join(snippets, 'upstream.conf'), upstreamConf);
  const port = await freePort();
  const h2Port = await freePort();
  const loc = (p: string) => `location ${p} { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }`;
  cleanup.use(
    await startNginx({
      workers: 2,
      http: `include ${snippets}/upstream.conf;
      server { listen 127.0.0.1:${port}; include ${snippets}/server.conf; ${loc('/premium')} ${loc('/forever')} }
      server { listen 127.0.0.1:${h2Port} http2; include ${snippets}/server.conf; ${loc('/premium')} ${loc('/forever')} }`,
    }),
  );
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  return { origin: `http://127.0.0.1:${port}`, h2: `http://127.0.0.1:${h2Port}`, gates, upstream, redis, wallet };
}

interface Cred {
  auth: string;
  macaroon: string;
}

async function buy(s: Stalls, path = '/premium'): Promise<Cred> {
  const r = await http1(s.origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  return { auth: `L402 ${b.macaroon}:${s.wallet.pay(b.invoice).toString('hex')}`, macaroon: b.macaroon };
}

interface Answer {
  what: string;
  ms: number;
  status: number;
  retryAfter?: string;
  body: string;
}

/** One request over HTTP/1.1 or HTTP/2, timed; a hang shows up as a status of 0 after 10 s. */
async function timed(s: Stalls, what: string, path: string, auth: string | undefined, h2 = false): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (auth) headers.authorization = auth;
  const started = Date.now();
  try {
    const r = h2 ? await http2Request(s.h2, path, { headers, timeoutMs: 10_000 }) : await http1(s.origin + path, { headers, timeoutMs: 10_000 });
    const ra = r.headers['retry-after'];
    return { what, ms: Date.now() - started, status: r.status, retryAfter: Array.isArray(ra) ? ra[0] : ra, body: r.body };
  } catch (e) {
    return { what, ms: Date.now() - started, status: 0, body: (e as Error).message };
  }
}

function show(as: Answer[]): string {
  return as.map((a) => `${a.what}: ${a.status} in ${a.ms} ms${a.status === 503 ? ` retry-after=${a.retryAfter}` : ''}`).join('; ');
}

function assertBounded(as: Answer[]): void {
  const summary = show(as);
  assert.ok(as.every((a) => a.status !== 0), `no hung request: ${summary}`);
  assert.ok(as.every((a) => a.ms < BOUND_MS), `every answer within 5 s: ${summary}`);
  assert.ok(as.filter((a) => a.status === 503).every((a) => a.retryAfter !== undefined && Number(a.retryAfter) > 0), `every 503 carries Retry-After: ${summary}`);
  assert.ok(as.every((a) => a.status < 500 || a.status === 503), `no 5xx but 503: ${summary}`);
}

/** Upstream requests l402d let through for this credential (the upstream sees its token id, never the credential). */
function passes(up: CountingUpstream, c: Cred): number {
  const id = decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!.tokenId.toString('hex');
  return up.requests.filter((r) => r.headers['x-l402-token-id'] === id).length;
}

/** Health answered again: the process runs (and has read what queued up meanwhile). */
async function resumed(g: GateProcess): Promise<void> {
  await waitFor('l402d to answer again', async () => (await http1(`http://127.0.0.1:${g.port}/_l402/health`, { timeoutMs: 1_000 })).status === 200);
  // Whatever nginx sent before giving up is read now; let it run to its end before the payer retries.
  await sleep(1_000);
}

/** The single-use credential passes once now, and only once. */
async function passesOnceNow(s: Stalls, c: Cred, before: number): Promise<void> {
  const r = await http1(s.origin + '/premium', { headers: { authorization: c.auth, accept: 'application/json' } });
  assert.equal(r.status, 200, `the payer's retry passes (it only ever got 503s): ${r.body}`);
  const again = await http1(s.origin + '/premium', { headers: { authorization: c.auth, accept: 'application/json' } });
  assert.equal(again.status, 401, again.body);
  assert.equal(JSON.parse(again.body).reason, 'already_used');
  assert.equal(passes(s.upstream, c), before + 1, 'served exactly once');
}

test('l402d stalled (SIGSTOP, the only one): 503 + Retry-After within 5 s for unpaid and paid requests; the paid credential still passes once after SIGCONT', { skip, timeout: 60_000 }, async () => {
  const s = await startStalls(1);
  const cred = await buy(s);
  const cred2 = await buy(s);
  const reusable = await buy(s, '/forever');
  const g = s.gates[0]!;
  s.upstream.reset();
  g.signal('SIGSTOP');
  let answers: Answer[];
  try {
    answers = await Promise.all([
      timed(s, 'unpaid h1', '/premium', undefined),
      timed(s, 'unpaid h2', '/premium', undefined, true),
      timed(s, 'paid h1', '/premium', cred.auth),
      timed(s, 'paid h2', '/premium', cred2.auth, true),
      timed(s, 'reusable h1', '/forever', reusable.auth),
    ]);
  } finally {
    g.signal('SIGCONT');
  }
  assertBounded(answers);
  // nginx's auth cache may answer the reusable credential; nothing else passes while l402d is stopped.
  assert.ok(answers.filter((a) => a.what !== 'reusable h1').every((a) => a.status === 503), show(answers));
  assert.equal(s.upstream.requests.filter((r) => r.url.startsWith('/premium')).length, 0, 'nothing reached the upstream unpaid');
  await resumed(g);
  // nginx's 503 was the answer, so neither credential may have been spent by the requests l402d read late.
  await passesOnceNow(s, cred, 0);
  await passesOnceNow(s, cred2, 0);
});

test('one of two l402d stalled (SIGSTOP): every answer within 5 s, no unpaid pass; credentials that got 503 pass once after SIGCONT', { skip, timeout: 60_000 }, async () => {
  const s = await startStalls(2);
  const creds: Cred[] = [];
  for (let i = 0; i < 8; i++) creds.push(await buy(s));
  const g = s.gates[0]!;
  s.upstream.reset();
  g.signal('SIGSTOP');
  let answers: Answer[];
  try {
    answers = await Promise.all([
      ...creds.map((c, i) => timed(s, `paid#${i}${i % 2 ? ' h2' : ''}`, '/premium', c.auth, i % 2 === 1)),
      ...Array.from({ length: 8 }, (_, i) => timed(s, `unpaid#${i}${i % 2 ? ' h2' : ''}`, '/premium', undefined, i % 2 === 1)),
    ]);
  } finally {
    g.signal('SIGCONT');
  }
  assertBounded(answers);
  const summary = show(answers);
  assert.ok(answers.filter((a) => a.what.startsWith('unpaid')).every((a) => a.status === 402 || a.status === 503), summary);
  assert.ok(answers.filter((a) => a.what.startsWith('paid')).every((a) => a.status === 200 || a.status === 503), summary);
  assert.ok(answers.some((a) => a.status === 503), `the stalled process was hit: ${summary}`);
  const unpaidPasses = s.upstream.requests.filter((r) => typeof r.headers['x-l402-token-id'] !== 'string').length;
  assert.equal(unpaidPasses, 0, 'nothing reached the upstream unpaid');
  await resumed(g);
  for (const [i, c] of creds.entries()) {
    const got = answers[i]!;
    if (got.status === 200) {
      assert.equal(passes(s.upstream, c), 1);
      const again = await http1(s.origin + '/premium', { headers: { authorization: c.auth, accept: 'application/json' } });
      assert.equal(again.status, 401, again.body);
    } else await passesOnceNow(s, c, 0);
  }
});

test('Redis stalled (SIGSTOP): bounded 503 for a paid request, 402 or 503 unpaid, never a pass; the late claim is given back so the retry passes once', { skip, timeout: 60_000 }, async () => {
  // Many routes with dynamic prices (read from the store): the manifest prices every one of them.
  const many = Array.from({ length: 16 }, (_, i) => `  - { match: /extra${i}, amount_msat: ${1000 + i} }\n`).join('');
  const s = await startStalls(2, '', ROUTES + many);
  const creds = [await buy(s), await buy(s)];
  const reusable = await buy(s, '/forever');
  s.upstream.reset();
  s.redis.signal('SIGSTOP');
  let answers: Answer[];
  try {
    answers = await Promise.all([
      timed(s, 'paid h1', '/premium', creds[0]!.auth),
      timed(s, 'paid h2', '/premium', creds[1]!.auth, true),
      timed(s, 'unpaid h1', '/premium', undefined),
      timed(s, 'unpaid h2', '/premium', undefined, true),
    ]);
    // Still stalled: later requests are bounded the same way, and so are the manifest and reusable
    // credentials (which only read prices).
    answers.push(await timed(s, 'paid again', '/premium', creds[0]!.auth));
    answers.push(...(await Promise.all([timed(s, 'manifest', '/.well-known/l402-services', undefined), timed(s, 'reusable', '/forever', reusable.auth)])));
  } finally {
    s.redis.signal('SIGCONT');
  }
  assertBounded(answers);
  const summary = show(answers);
  assert.ok(answers.filter((a) => a.what.startsWith('paid')).every((a) => a.status === 503), summary);
  assert.ok(answers.filter((a) => a.what.startsWith('unpaid')).every((a) => a.status === 402 || a.status === 503), summary);
  assert.ok(answers.filter((a) => a.what === 'manifest' || a.what === 'reusable').every((a) => a.status === 200 || a.status === 503), summary);
  assert.equal(s.upstream.requests.filter((r) => r.url.startsWith('/premium')).length, 0, 'no single-use pass while the store was stalled');
  // The claims sent before the stall ended land now, and are deleted by their owners (abandonClaim).
  await sleep(2_500);
  for (const c of creds) await passesOnceNow(s, c, 0);
});

test('Lightning backend that accepts connections and never answers: 503 + Retry-After within 5 s, no invoice', { skip, timeout: 60_000 }, async () => {
  const sockets = new Set<net.Socket>();
  const blackhole = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', () => r()));
  cleanup.add(() => {
    for (const sock of sockets) sock.destroy();
    return new Promise<void>((r) => blackhole.close(() => r()));
  });
  const port = (blackhole.address() as net.AddressInfo).port;
  const s = await startStalls(1, `lightning: { type: eclair, url: "http://127.0.0.1:${port}", password: stall-pw-5c1d }\n`);
  const answers = await Promise.all([
    timed(s, 'unpaid h1', '/premium', undefined),
    timed(s, 'unpaid h2', '/premium', undefined, true),
    timed(s, 'unpaid forever', '/forever', undefined),
  ]);
  assertBounded(answers);
  assert.ok(answers.every((a) => a.status === 503), show(answers));
  assert.ok(answers.every((a) => !/lnbc|invoice"/i.test(a.body)), 'no invoice in the answer');
  assert.ok(sockets.size > 0 || answers.length > 0);
  assert.equal(s.upstream.hits, 0);
  assert.ok(!s.gates[0]!.output().includes('stall-pw-5c1d'), 'the backend password is never logged');
});

test('Cashu mint that stops answering a swap: 503 + Retry-After within 5 s, the token is not lost (the retry passes once the swap lands)', { skip: nginxBin ? false : 'nginx not installed', timeout: 60_000 }, async () => {
  const { CashuMintPeer } = await import('../peers/cashu-mint.js');
  const { startStack } = await import('./gate-fixture.js');
  const { getEncodedToken } = await import('@cashu/cashu-ts');
  const dir = mkdtempSync(join(tmpdir(), 'l402-stalls-cashu-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  cleanup.add(() => mint.close());
  const s = await startStack(cleanup, { extraYaml: `cashu: { mode: standard, mints: ["${mint.url}"] }\n` });
  const { wallet, proofs } = await mint.fundedWallet(18);
  const { send } = await wallet.ops.send(10, proofs).run();
  const token = getEncodedToken({ mint: mint.url, unit: 'sat', proofs: send });
  const get = async (what: string): Promise<Answer> => {
    const started = Date.now();
    const r = await http1(`${s.origin}/premium`, { headers: { accept: 'application/json', 'x-cashu': token }, timeoutMs: 10_000 });
    const ra = r.headers['retry-after'];
    return { what, ms: Date.now() - started, status: r.status, retryAfter: Array.isArray(ra) ? ra[0] : ra, body: r.body };
  };
  s.upstream.reset();
  // The mint holds the swap far past the decision deadline (as a stalled mint does), then completes it.
  mint.knobs.swapDelayMs = 7_000;
  const swapAt = Date.now();
  const first = await get('first try');
  const retryWhileStalled = await get('retry while the swap is pending');
  assertBounded([first, retryWhileStalled]);
  assert.equal(first.status, 503, show([first]));
  assert.equal(retryWhileStalled.status, 503, show([retryWhileStalled]));
  assert.equal(s.upstream.hits, 0);
  mint.knobs.swapDelayMs = 0;
  // Once the mint has answered the held swap, the payer's retry with the same token passes, once.
  await sleep(Math.max(0, swapAt + 7_000 + 1_000 - Date.now()));
  const after = await waitFor('the late swap to be credited', async () => {
    const a = await get('retry after the swap');
    return a.status === 200 ? a : a.status === 503 ? undefined : Promise.reject(new Error(show([a])));
  });
  assert.equal(after.status, 200);
  assert.equal(s.upstream.hits, 1);
  const again = await get('replay');
  assert.equal(again.status, 400, show([again]));
  assert.equal(s.upstream.hits, 1);
});
