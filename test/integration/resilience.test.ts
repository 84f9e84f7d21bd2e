// Resilience under load, on loopback: a replay storm over two l402d processes sharing Redis behind a
// 2-worker nginx; Redis killed and restarted (with persistence) and l402d killed and restarted while traffic
// flows; Lightning backend slow, hanging, failing or answering garbage; the protected app down, slow or
// answering garbage. Expected: bounded 503s with Retry-After, no hung connection, no single-use credential
// passing twice, recovery without operator action, and no secret in logs or bodies. Plus security checks:
// constant-time compares and header size limits.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto, { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Cleanup, freePort, http1, requireTool, startCountingUpstream, startNginx, waitFor, type CountingUpstream, type NginxHandle } from './harness.js';
import { mintLocalCredential, ROUTES_YAML, TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';
import { startGateProcess, type GateProcess } from './gate-process.js';
import { parseConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import type { CreatedInvoice, LightningBackend } from '../../src/rails/lightning/backend.js';
import { decodeMacaroonBase64, mintMacaroon, verifySignature } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import { preimageMatches } from '../../src/protocol/caveats.js';
import { createMetricsServer } from '../../src/server/metrics-server.js';
import { sleep } from '../../src/util/timeout.js';

const nginxBin = requireTool('nginx');
const redisBin = requireTool('redis-server');
const skip = !nginxBin || !redisBin ? 'nginx or redis-server not installed' : false;
const REDIS_PASSWORD = 'redis-pw-7d1f0c2b9a';

const cleanup = new Cleanup();
after(() => cleanup.run());


function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// ---------------------------------------------------------------------------------------------
// A Redis that keeps its data across a kill -9 (AOF, fsync on every write), with a password.
// The harness's Redis is deliberately ephemeral; claims must survive a real restart here.
// ---------------------------------------------------------------------------------------------

interface PersistentRedis {
  port: number;
  url: string;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write(`AUTH ${REDIS_PASSWORD}\r\nPING\r\n`));
    s.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('+PONG')) done(true);
      else if (buf.includes('-')) done(false);
    });
  });
}

async function startPersistentRedis(): Promise<PersistentRedis> {
  const dir = tmp('l402-redis-aof-');
  const port = await freePort();
  let child: ChildProcess | undefined;
  let out = '';
  const exited = (c: ChildProcess) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r())));
  const killNow = () => child?.kill('SIGKILL');
  process.on('exit', killNow);
  const h: PersistentRedis = {
    port,
    url: `redis://:${REDIS_PASSWORD}@127.0.0.1:${port}`,
    async start() {
      child = spawn(redisBin!, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--requirepass', REDIS_PASSWORD, '--daemonize', 'no', '--logfile', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
      const c = child;
      await waitFor('persistent redis to answer PING', async () => {
        if (c.exitCode !== null) throw new Error(`redis exited: ${out.slice(-500)}`);
        return redisPing(port);
      });
    },
    async kill() {
      const c = child;
      if (!c) return;
      c.kill('SIGKILL');
      await exited(c);
    },
    async stop() {
      process.off('exit', killNow);
      await h.kill();
    },
  };
  await h.start();
  cleanup.add(() => h.stop(), 'persistent redis');
  return h;
}

// ---------------------------------------------------------------------------------------------
// Two l402d processes sharing Redis and the dev wallet, behind a 2-worker nginx
// ---------------------------------------------------------------------------------------------

interface Cluster {
  origin: string;
  upstream: CountingUpstream;
  wallet: DevWallet;
  redis: PersistentRedis;
  nginx: NginxHandle;
  gates: GateProcess[];
  configFiles: string[];
  ports: number[];
  /** Every l402d output ever produced (restarted processes included). */
  outputs: () => string;
  restart(i: number, how: 'kill' | 'stop'): Promise<void>;
}

async function startCluster(): Promise<Cluster> {
  const redis = await startPersistentRedis();
  const dir = tmp('l402-resilience-');
  const upstream = cleanup.use(await startCountingUpstream());
  const ports = [await freePort(), await freePort()];
  const configFiles: string[] = [];
  const gates: GateProcess[] = [];
  const finished: string[] = [];
  for (const port of ports) {
    const file = join(dir, `l402-${port}.yaml`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: \${ROOT_KEY}\nstore: { type: redis, url: "redis://:\${REDIS_PASSWORD}@127.0.0.1:${redis.port}" }\ntimeouts: { store_ms: 500, backend_ms: 2000 }\nlog: { level: info }\n${ROUTES_YAML}`,
    );
    configFiles.push(file);
    gates.push(await startGateProcess(file, port, { ROOT_KEY: TEST_ROOT_KEY, REDIS_PASSWORD }));
  }
  cleanup.add(async () => {
    for (const g of gates) await g.stop().catch(() => {});
  }, 'l402d processes');
  const snippets = join(dir, 'snippets');
  const cfg = parseConfig(`listen: 127.0.0.1:${ports[0]}\nlightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} });
  writeSnippets(cfg, snippets);
  // Same snippets, two servers in the upstream block (whatever else upstream.conf declares stays). With
  // several servers nginx sets a failed one aside for fail_timeout (default 10 s, even once it is back);
  // 1 s keeps recovery prompt after a restart.
  const upstreamConf = readFileSync(join(snippets, 'upstream.conf'), 'utf8').replace(/server [^;]+;/, `server 127.0.0.1:${ports[0]} fail_timeout=1s;\n    server 127.0.0.1:${ports[1]} fail_timeout=1s;`);
  writeFileSync(join(snippets, 'upstream.conf'), upstreamConf);
  const ngPort = await freePort();
  const loc = (p: string) => `location ${p} { include ${snippets}/protect.conf; proxy_pass http://127.0.0.1:${upstream.port}; }`;
  const nginx = cleanup.use(
    await startNginx({
      workers: 2,
      http: `include ${snippets}/upstream.conf;
      server { listen 127.0.0.1:${ngPort}; include ${snippets}/server.conf; ${loc('/premium')} ${loc('/forever')} ${loc('/timed/')} }`,
    }),
  );
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  return {
    origin: `http://127.0.0.1:${ngPort}`,
    upstream,
    wallet,
    redis,
    nginx,
    gates,
    configFiles,
    ports,
    outputs: () => [...finished, ...gates.map((g) => g.output())].join('\n'),
    async restart(i, how) {
      const g = gates[i]!;
      if (how === 'kill') await g.kill();
      else await g.stop();
      finished.push(g.output());
      gates[i] = await startGateProcess(configFiles[i]!, ports[i]!, { ROOT_KEY: TEST_ROOT_KEY, REDIS_PASSWORD });
    },
  };
}

interface Cred {
  auth: string;
  hash: string;
  preimage: string;
  macaroon: string;
}

async function buy(origin: string, wallet: DevWallet, path = '/premium'): Promise<Cred> {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string; payment_hash: string };
  const preimage = wallet.pay(b.invoice).toString('hex');
  return { auth: `L402 ${b.macaroon}:${preimage}`, hash: b.payment_hash, preimage, macaroon: b.macaroon };
}

const GATE_CFG = parseConfig(`root_key: ${TEST_ROOT_KEY}\n${ROUTES_YAML}`, { env: {} });

/** Credentials exactly as l402d mints them, without a round trip each. */
async function mint(n: number, match = '/premium', path = '/premium'): Promise<Cred[]> {
  const route = GATE_CFG.routes.find((r) => r.match === match)!;
  const out: Cred[] = [];
  for (let i = 0; i < n; i++) out.push(await mintLocalCredential(route, path));
  return out;
}

/** Upstream passes per payment hash (the upstream sees the Authorization header it was sent). */
function passesByHash(up: CountingUpstream, creds: Cred[]): Map<string, number> {
  // The upstream never sees the credential (it stays at the gate): it sees the token id l402d vouched for.
  const byTokenId = new Map(creds.map((c) => [decodeIdentifier(decodeMacaroonBase64(c.macaroon).identifier)!.tokenId.toString('hex'), c.hash]));
  const out = new Map<string, number>();
  for (const r of up.requests) {
    const id = r.headers['x-l402-token-id'];
    const hash = typeof id === 'string' ? byTokenId.get(id) : undefined;
    if (hash) out.set(hash, (out.get(hash) ?? 0) + 1);
  }
  return out;
}

interface Sample {
  kind: 'single' | 'replay' | 'reusable' | 'unpaid';
  t: number;
  ms: number;
  status: number | 'error';
  reason?: string;
  retryAfter?: string;
  cred?: Cred;
  error?: string;
}

/**
 * Closed-loop load from `workers` clients until `until()` says stop (each request bounded by 5 s: a timeout
 * is a hang). Single-use credentials come from `pool`, one every `singleEveryMs`, each used once; replays
 * reuse ones that already passed.
 */
async function runLoad(origin: string, o: { workers: number; until: () => boolean; pool: Cred[]; reusable: Cred; t0: number; singleEveryMs?: number }): Promise<Sample[]> {
  const samples: Sample[] = [];
  const passed: Cred[] = [];
  const kinds: Sample['kind'][] = ['single', 'reusable', 'unpaid', 'replay'];
  let n = 0;
  let nextSingleAt = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.workers });
  await Promise.all(
    Array.from({ length: o.workers }, async () => {
      while (!o.until()) {
        let kind = kinds[n++ % kinds.length]!;
        let cred: Cred | undefined;
        if (kind === 'single') {
          if (Date.now() >= nextSingleAt && o.pool.length > 0) {
            nextSingleAt = Date.now() + (o.singleEveryMs ?? 10);
            cred = o.pool.shift();
          } else kind = 'unpaid';
        }
        if (kind === 'replay') cred = passed[n % Math.max(1, passed.length)];
        if (kind === 'reusable') cred = o.reusable;
        if (kind === 'replay' && !cred) kind = 'unpaid';
        const path = kind === 'reusable' ? '/forever' : '/premium';
        const headers: Record<string, string> = { accept: 'application/json' };
        if (cred) headers.authorization = cred.auth;
        const started = Date.now();
        const s: Sample = { kind, t: started - o.t0, ms: 0, status: 'error', cred };
        try {
          const r = await request(origin + path, headers, agent);
          s.status = r.status;
          s.retryAfter = r.headers['retry-after'] as string | undefined;
          if (r.body.startsWith('{')) s.reason = (JSON.parse(r.body) as { reason?: string }).reason;
          if (kind === 'single' && r.status === 200 && cred) passed.push(cred);
        } catch (e) {
          s.error = (e as Error).message;
        }
        s.ms = Date.now() - started;
        samples.push(s);
        await sleep(2);
      }
    }),
  );
  agent.destroy();
  return samples;
}

function request(url: string, headers: Record<string, string>, agent: http.Agent, timeoutMs = 5_000): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

function tally(samples: Sample[]): string {
  const m = new Map<string, number>();
  for (const s of samples) m.set(`${s.kind}:${s.status}${s.reason ? `/${s.reason}` : ''}`, (m.get(`${s.kind}:${s.status}${s.reason ? `/${s.reason}` : ''}`) ?? 0) + 1);
  return [...m].sort().map(([k, v]) => `${k}=${v}`).join(' ');
}

function assertCommon(samples: Sample[], what: string): void {
  const summary = `${what}: ${tally(samples)}`;
  const errors = samples.filter((s) => s.status === 'error');
  assert.deepEqual(errors.map((s) => `${s.kind} at ${s.t} ms: ${s.error}`), [], `no hung or broken connection; ${summary}`);
  assert.ok(samples.every((s) => s.ms < 5_000), `every answer within 5 s; ${summary}`);
  assert.deepEqual([...new Set(samples.map((s) => s.status))].filter((st) => ![200, 401, 402, 503].includes(st as number)), [], summary);
  assert.ok(samples.filter((s) => s.status === 503).every((s) => s.retryAfter !== undefined), `every 503 carries Retry-After; ${summary}`);
  assert.ok(samples.filter((s) => s.kind === 'unpaid').every((s) => s.status === 402 || s.status === 503), summary);
  assert.ok(samples.filter((s) => s.kind === 'replay').every((s) => s.status !== 200), `no replay passes; ${summary}`);
}

// ---------------------------------------------------------------------------------------------

let cluster: Cluster;
const allCreds: Cred[] = [];

before(async () => {
  if (skip) return;
  cluster = await startCluster();
});

test('replay storm: single-use credentials in several encodings, 360 concurrent requests over 2 l402d + 2 nginx workers: exactly one pass each', { skip }, async () => {
  const { origin, wallet, upstream } = cluster;
  const creds: Cred[] = [];
  for (let i = 0; i < 6; i++) creds.push(await buy(origin, wallet));
  allCreds.push(...creds);
  // The same payment in encodings a client may legitimately use: one payment, one pass, whatever the spelling.
  const spellings = (c: Cred) => {
    const mac = Buffer.from(c.macaroon, 'base64');
    return [c.auth, `LSAT ${c.macaroon}:${c.preimage}`, `L402 ${mac.toString('base64url')}:${c.preimage.toUpperCase()}`, `l402 ${c.macaroon.replace(/=+$/, '')}:${c.preimage}`];
  };
  const reqs = creds.flatMap((c) => Array.from({ length: 60 }, (_, k) => ({ c, auth: spellings(c)[k % 4]! })));
  // Interleave deterministically so the same credential arrives on many connections at once.
  reqs.sort((a, b) => (a.auth.length * 7919 + a.c.hash.charCodeAt(3)) % 101 - (b.auth.length * 7919 + b.c.hash.charCodeAt(3)) % 101);
  upstream.reset();
  const results = await Promise.all(reqs.map((r) => http1(origin + '/premium', { headers: { authorization: r.auth, accept: 'application/json' }, timeoutMs: 8_000 })));
  const codes = results.map((r) => r.status);
  const passes = passesByHash(upstream, creds);
  for (const c of creds) assert.equal(passes.get(c.hash), 1, `credential ${c.hash.slice(0, 8)} passed ${passes.get(c.hash) ?? 0} times`);
  assert.equal(upstream.hits, creds.length);
  assert.equal(codes.filter((c) => c === 200).length, creds.length);
  const refusals = results.filter((r) => r.status !== 200);
  assert.ok(refusals.every((r) => r.status === 401 && JSON.parse(r.body).reason === 'already_used'), `all others 401 already_used: ${[...new Set(codes)].join(',')}`);
});

test('Redis killed (-9) and restarted under load: reusable credentials keep passing, single-use fail closed with bounded 503s, claims survive, recovery is automatic', { skip, timeout: 90_000 }, async (t) => {
  const { origin, wallet, upstream, redis } = cluster;
  const pool = await mint(1_000);
  allCreds.push(...pool);
  const reusable = await buy(origin, wallet, '/forever');
  const used = [...pool];
  upstream.reset();
  const t0 = Date.now();
  const KILL_AT = 1_500;
  const RESTART_AT = 3_500;
  const load = runLoad(origin, { workers: 6, until: () => Date.now() - t0 > 8_000, pool, reusable, t0 });
  await sleep(KILL_AT);
  await redis.kill();
  const killedAt = Date.now() - t0;
  await sleep(RESTART_AT - KILL_AT);
  await redis.start();
  const restartedAt = Date.now() - t0;
  const samples = await load;
  const summary = `kill at ${killedAt} ms, back at ${restartedAt} ms: ${tally(samples)}`;
  t.diagnostic(summary);
  assertCommon(samples, 'redis fault');
  // Reusable credentials never needed the store.
  assert.ok(samples.filter((s) => s.kind === 'reusable').every((s) => s.status === 200), `reusable always 200; ${summary}`);
  // Single-use: refused while the store was away (503 store_unavailable), never while it was healthy.
  const s503 = samples.filter((s) => s.status === 503);
  assert.ok(s503.every((s) => s.reason === 'store_unavailable'), summary);
  assert.ok(s503.length > 0, `the outage was observed; ${summary}`);
  assert.ok(s503.every((s) => s.t >= killedAt - 100 && s.t < restartedAt + 3_000), `503s only during the outage and a bounded reconnect; ${summary}`);
  assert.ok(samples.some((s) => s.kind === 'single' && s.status === 200 && s.t > restartedAt + 3_000), `single-use passes again after the restart; ${summary}`);
  // No claim was lost: nothing passed twice, and every credential that passed before the kill is refused now.
  const passes = passesByHash(upstream, used);
  assert.deepEqual([...passes].filter(([, n]) => n > 1), [], 'a single-use credential passed twice');
  const beforeKill = samples.filter((s) => s.kind === 'single' && s.status === 200 && s.t < killedAt).map((s) => s.cred!);
  assert.ok(beforeKill.length > 5, summary);
  for (const c of beforeKill) {
    const r = await http1(origin + '/premium', { headers: { authorization: c.auth, accept: 'application/json' } });
    assert.equal(r.status, 401, `claim from before the kill was lost: ${r.body}`);
  }
  // Consumed but never served (the claim reached Redis, the answer did not): reported, not asserted.
  const neverServed = samples.filter((s) => s.kind === 'single' && s.status === 503).map((s) => s.cred!).filter((c) => !passes.has(c.hash));
  let consumed = 0;
  for (const c of neverServed) if ((await http1(origin + '/premium', { headers: { authorization: c.auth } })).status === 401) consumed++;
  t.diagnostic(`single-use credentials refused with 503 during the outage: ${neverServed.length}; of those consumed anyway: ${consumed}`);
});

test('l402d killed and restarted under load (each process in turn, then both): bounded 503s, no double pass, recovery', { skip, timeout: 120_000 }, async (t) => {
  const { origin, wallet, upstream } = cluster;
  const pool = await mint(1_500);
  allCreds.push(...pool);
  const used = [...pool];
  const reusable = await buy(origin, wallet, '/forever');
  upstream.reset();
  const t0 = Date.now();
  const marks: string[] = [];
  const mark = (what: string) => marks.push(`${what}@${Date.now() - t0}`);
  let endAt = Infinity;
  const load = runLoad(origin, { workers: 6, until: () => Date.now() > endAt, pool, reusable, t0 });
  await sleep(800);
  mark('kill A');
  await cluster.restart(0, 'kill');
  mark('A back');
  // nginx keeps a failed server aside while `now - checked <= fail_timeout`, counted in whole seconds, and
  // clears the failure only on a later success. A was last refused no later than now, so with fail_timeout=1s
  // nginx tries it again from the second after next. Wait for that (and for traffic to reach A) before B
  // stops, so the next phase measures B's graceful stop, not two servers set aside at once.
  await sleep((Math.floor(Date.now() / 1000) + 2) * 1000 + 700 - Date.now());
  mark('stop B');
  await cluster.restart(1, 'stop');
  mark('B back');
  await sleep(300);
  // Both down for a moment: nginx answers 503 gate_unavailable (reusable ones may be served from nginx's cache).
  mark('both down');
  await Promise.all([cluster.gates[0]!.kill(), cluster.gates[1]!.kill()]);
  await sleep(700);
  await Promise.all([cluster.restart(0, 'kill'), cluster.restart(1, 'kill')]);
  mark('both back');
  endAt = Date.now() + 2_500;
  const samples = await load;
  const summary = `${marks.join(' ')}: ${tally(samples)}`;
  t.diagnostic(summary);
  assertCommon(samples, 'l402d restarts');
  const passes = passesByHash(upstream, used);
  assert.deepEqual([...passes].filter(([, n]) => n > 1), [], 'a single-use credential passed twice');
  // A paid request is either served or still paid for: one claimed by a process killed before it answered is
  // retried by nginx on the other process, which knows it for the same request ($request_id), so it passes.
  const firstUse401 = samples.filter((s) => s.kind === 'single' && s.status === 401);
  assert.deepEqual(firstUse401.map((s) => `${s.reason} at ${s.t} ms`), [], `no single-use credential refused on its first use; ${summary}`);
  // Bounded: no 503 once both processes are back and nginx has retried them.
  const backAt = Number(marks.find((m) => m.startsWith('both back'))!.split('@')[1]);
  assert.ok(samples.filter((s) => s.status === 503).every((s) => s.t < backAt + 2_000), `503s end when l402d is back (+ nginx's fail_timeout); ${summary}`);
  assert.ok(samples.filter((s) => s.status === 503).every((s) => s.t >= 700), summary);
  assert.ok(samples.some((s) => s.kind === 'single' && s.status === 200 && s.t > backAt), `single-use passes after recovery; ${summary}`);
  // One process down at a time: nginx retries the other, so single restarts cost (almost) nothing.
  const at = (name: string) => Number(marks.find((m) => m.startsWith(name))!.split('@')[1]);
  const bothDownAt = at('both down');
  // A request belongs to the phase in which it was answered: one sent just before both stop is their 503.
  const phase = (from: number, to: number) => {
    const inPhase = samples.filter((s) => s.t + s.ms >= from && s.t + s.ms < to);
    return { n503: inPhase.filter((s) => s.status === 503).length, n: inPhase.length };
  };
  const killA = phase(at('kill A'), at('stop B'));
  const stopB = phase(at('stop B'), bothDownAt);
  t.diagnostic(`503s while one process was still up: SIGKILL of A ${killA.n503} of ${killA.n}, SIGTERM of B ${stopB.n503} of ${stopB.n}`);
  // SIGKILL: nginx retries the in-flight requests on the other process. SIGTERM must do at least as well
  // (what only a graceful stop gives is tested on its own below).
  assert.ok(killA.n503 <= 0.01 * killA.n, `at most 1% 503s while A is killed and B serves; ${summary}`);
  assert.ok(stopB.n503 <= 0.01 * stopB.n, `at most 1% 503s while B stops gracefully and A serves (${stopB.n503} of ${stopB.n}); ${summary}`);
});

test('secrets never reach l402d logs or bodies during the faults above', { skip }, () => {
  const logs = cluster.outputs();
  assert.ok(logs.length > 1000, 'logs were captured');
  assert.ok(logs.includes('"event":"decision"'), 'decision lines were logged');
  for (const secret of [TEST_ROOT_KEY, REDIS_PASSWORD]) assert.ok(!logs.includes(secret), 'a configured secret reached the log');
  for (const c of allCreds) {
    assert.ok(!logs.includes(c.preimage), 'a preimage reached the log');
    assert.ok(!logs.includes(c.macaroon), 'a macaroon reached the log');
  }
});

// ---------------------------------------------------------------------------------------------
// Lightning backend and upstream faults (l402d in-process with a switchable backend)
// ---------------------------------------------------------------------------------------------

type Mode = 'ok' | 'slow' | 'hang' | 'throw' | 'garbage-hash' | 'garbage-quote' | 'garbage-undefined' | 'garbage-expiry';

function faultyBackend(wallet: DevWallet, state: { mode: Mode }): LightningBackend {
  return {
    kind: 'faulty',
    async createInvoice(req, signal) {
      const real = () => wallet.createInvoice(req, signal);
      switch (state.mode) {
        case 'ok':
          return real();
        case 'slow':
          await sleep(300);
          return real();
        case 'hang':
          return new Promise<CreatedInvoice>(() => {});
        case 'throw':
          throw new Error('connection refused');
        case 'garbage-hash':
          return { ...(await real()), paymentHash: Buffer.alloc(31) };
        case 'garbage-quote':
          return { ...(await real()), bolt11: 'lnbcrt1"\r\nX-Injected: 1' };
        case 'garbage-undefined':
          return { ...(await real()), bolt11: undefined as unknown as string };
        case 'garbage-expiry':
          return { ...(await real()), expiresAt: Number.NaN };
      }
    },
    lookupInvoice: (hash, signal) => wallet.lookupInvoice(hash, signal),
    describe: () => 'faulty test backend',
    close: async () => {},
  };
}

test('Lightning backend slow, hanging, failing or answering garbage: 402 or bounded 503, never serialised, paid requests unaffected', { skip, timeout: 60_000 }, async (t) => {
  const local = new Cleanup();
  t.after(() => local.run());
  const dir = mkdtempSync(join(tmpdir(), 'l402-backend-faults-'));
  local.add(() => rmSync(dir, { recursive: true, force: true }));
  const wallet = DevWallet.open(dir);
  local.add(() => wallet.close());
  const state = { mode: 'ok' as Mode };
  const gatePort = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${gatePort}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\ntimeouts: { backend_ms: 1000 }\nstore: { type: memory }\n${ROUTES_YAML}`, { env: {} });
  const logs: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logs.push(b.toString()));
  const gate = await startGate(cfg, { log: createLogger('info', sink), backend: faultyBackend(wallet, state) });
  local.add(() => gate.close());
  const up = local.use(await startCountingUpstream());
  const snippets = join(dir, 'snippets');
  writeSnippets(cfg, snippets);
  // The protected app misbehaving too: refused connections, garbage bytes, too slow.
  // Not HTTP at all would be relayed raw by nginx (HTTP/0.9 fallback); an invalid header is a clean 502.
  const garbageSockets = new Set<net.Socket>();
  const garbage = net.createServer((s) => {
    garbageSockets.add(s);
    s.on('close', () => garbageSockets.delete(s));
    s.on('error', () => {});
    s.end('HTTP/1.1 200 OK\r\nX-Broken\x00: \x01\r\nContent-Length: 999\r\n\r\n\x00\x01garbage');
  });
  await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', () => r()));
  local.add(() => {
    for (const s of garbageSockets) s.destroy();
    return new Promise<void>((r) => garbage.close(() => r()));
  });
  const slow = http.createServer((_req, res) => setTimeout(() => res.end('late'), 3_000));
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
  local.add(() => new Promise<void>((r) => { slow.closeAllConnections(); slow.close(() => r()); }));
  const dead = await freePort();
  const port = await freePort();
  const loc = (p: string, target: string, extra = '') => `location ${p} { include ${snippets}/protect.conf; proxy_pass http://${target}; ${extra} }`;
  local.use(
    await startNginx({
      http: `include ${snippets}/upstream.conf;
      server { listen 127.0.0.1:${port}; include ${snippets}/server.conf;
        ${loc('/premium', `127.0.0.1:${up.port}`)} ${loc('/forever', `127.0.0.1:${up.port}`)}
        ${loc('/timed/down', `127.0.0.1:${dead}`)} ${loc('/timed/garbage', `127.0.0.1:${(garbage.address() as net.AddressInfo).port}`)}
        ${loc('/timed/slow', `127.0.0.1:${(slow.address() as net.AddressInfo).port}`, 'proxy_read_timeout 1s;')} }`,
    }),
  );
  const origin = `http://127.0.0.1:${port}`;
  const buyHere = async (path: string) => {
    const r = await http1(origin + path, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 402, r.body);
    const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
    return `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
  };
  const forever = await buyHere('/forever');
  const timed = await buyHere('/timed/down');

  const expected: Record<Mode, number> = { ok: 402, slow: 402, hang: 503, throw: 503, 'garbage-hash': 503, 'garbage-quote': 503, 'garbage-undefined': 503, 'garbage-expiry': 503 };
  const failures: string[] = [];
  const timings: string[] = [];
  for (const mode of Object.keys(expected) as Mode[]) {
    state.mode = mode;
    const t0 = Date.now();
    // 40 unpaid requests at once: with a 300 ms backend they finish in well under 5 s only if l402d
    // does not serialise them; the paid ones in between never wait for the backend.
    const [unpaid, paid] = await Promise.all([
      Promise.all(Array.from({ length: 40 }, () => http1(origin + '/premium', { headers: { accept: 'application/json' }, timeoutMs: 6_000 }))),
      Promise.all(Array.from({ length: 5 }, () => http1(origin + '/forever', { headers: { authorization: forever }, timeoutMs: 6_000 }))),
    ]);
    const ms = Date.now() - t0;
    timings.push(`${mode} ${ms} ms`);
    const statuses = [...new Set(unpaid.map((r) => r.status))];
    if (ms >= 5_000) failures.push(`${mode}: took ${ms} ms`);
    if (statuses.length !== 1 || statuses[0] !== expected[mode]) failures.push(`${mode}: statuses ${statuses.join(',')} (expected ${expected[mode]})`);
    for (const r of unpaid) {
      if (r.status === 503 && r.headers['retry-after'] === undefined) failures.push(`${mode}: 503 without Retry-After`);
      if (r.headers['x-injected'] !== undefined) failures.push(`${mode}: header injection reached the client`);
      if (r.status === 402 && !/invoice="lnbcrt[0-9a-z]+"/.test(String(r.headers['www-authenticate']))) failures.push(`${mode}: 402 with a broken invoice: ${String(r.headers['www-authenticate']).slice(0, 80)}…`);
    }
    if (!paid.every((r) => r.status === 200)) failures.push(`${mode}: paid requests got ${paid.map((r) => r.status).join(',')}`);
  }
  t.diagnostic(timings.join(', '));
  assert.deepEqual(failures, []);
  state.mode = 'ok';
  assert.equal((await http1(origin + '/premium', { headers: { accept: 'application/json' } })).status, 402, 'recovers when the backend does');

  // The protected app failing is nginx's 502/504, bounded; the gate's own answers are unaffected.
  const apps: Array<[string, number]> = [['/timed/down', 502], ['/timed/garbage', 502], ['/timed/slow', 504]];
  for (const [path, status] of apps) {
    const t0 = Date.now();
    const r = await http1(origin + path, { headers: { authorization: timed }, timeoutMs: 6_000 });
    assert.equal(r.status, status, path);
    assert.ok(Date.now() - t0 < 5_000, `${path} bounded`);
  }
  assert.equal((await http1(origin + '/forever', { headers: { authorization: forever } })).status, 200);
  const logText = logs.join('');
  assert.ok(!logText.includes(TEST_ROOT_KEY) && !logText.includes(forever.split(':')[1]!), 'no secret in the logs');
});

// Found by the restart test: when l402d fails after its auth answer but before the render answer (killed,
// restarted, overloaded), nginx sends the client its raw 502 HTML: error_page 500 = @l402_unavailable only
// covers the auth subrequest, and a second error_page needs recursive_error_pages.
test('l402d failing between the auth answer and the render: the client gets the 503 problem, not a raw 502', { skip }, async (t) => {
  const local = new Cleanup();
  t.after(() => local.run());
  const fake = http.createServer((req, res) => {
    if (req.url?.startsWith('/_l402/auth')) {
      res.writeHead(401, { 'X-L402-Outcome': 'challenge', 'X-L402-Reason': 'no_credential', 'Content-Length': '0' });
      res.end();
    } else req.socket.destroy();
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
  local.add(() => new Promise<void>((r) => { fake.closeAllConnections(); fake.close(() => r()); }));
  const dir = mkdtempSync(join(tmpdir(), 'l402-render-fail-'));
  local.add(() => rmSync(dir, { recursive: true, force: true }));
  writeSnippets(parseConfig(`listen: 127.0.0.1:${(fake.address() as net.AddressInfo).port}\nlightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n`, { env: {} }), dir);
  const up = local.use(await startCountingUpstream());
  const port = await freePort();
  local.use(await startNginx({ http: `include ${dir}/upstream.conf; server { listen 127.0.0.1:${port}; include ${dir}/server.conf; location /premium { include ${dir}/protect.conf; proxy_pass http://127.0.0.1:${up.port}; } }` }));
  const r = await http1(`http://127.0.0.1:${port}/premium`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 503, r.body.slice(0, 200));
  assert.equal(r.headers['retry-after'], '5');
  assert.equal(up.hits, 0);
});

// The restart test cannot tell a graceful stop from an abrupt one: nginx retries a reset GET on the other
// process either way. What only a graceful stop gives: a request l402d is already deciding (perhaps having
// claimed a single-use credential) gets its answer instead of a reset that nginx would replay elsewhere.
test('close(): a request in flight gets its answer, an idle keep-alive connection is closed, new connections are refused', async (t) => {
  const local = new Cleanup();
  t.after(() => local.run());
  const dir = mkdtempSync(join(tmpdir(), 'l402-graceful-'));
  local.add(() => rmSync(dir, { recursive: true, force: true }));
  const wallet = DevWallet.open(dir);
  local.add(() => wallet.close());
  const port = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${port}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nstore: { type: memory }\n${ROUTES_YAML}`, { env: {} });
  const gate = await startGate(cfg, { log: createLogger('error', new PassThrough()), backend: faultyBackend(wallet, { mode: 'slow' }) });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  local.add(() => agent.destroy());
  const original = { 'x-original-uri': '/premium', 'x-l402-uri': '/premium', 'x-original-method': 'GET', accept: 'application/json' };
  const auth = (a: http.Agent) => request(`http://127.0.0.1:${port}/_l402/auth`, original, a);
  // One connection left idle in the pool, then a render in flight (its invoice takes 300 ms).
  assert.equal((await auth(agent)).status, 401);
  const idle = [...Object.values(agent.freeSockets).flat()][0]!;
  assert.ok(idle, 'a kept-alive connection is idle');
  const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));
  const inFlight = request(`http://127.0.0.1:${port}/_l402/render`, { ...original, 'x-l402-outcome': 'challenge', 'x-l402-reason': 'no_credential' }, new http.Agent({ keepAlive: false }));
  await sleep(100);
  const closed = gate.close();
  const answer = await inFlight;
  assert.equal(answer.status, 402, 'the in-flight request was answered, not reset');
  assert.match(JSON.parse(answer.body).invoice, /^lnbcrt/);
  await idleClosed;
  await assert.rejects(auth(new http.Agent({ keepAlive: false })), /ECONNREFUSED/);
  await closed;
});

// ---------------------------------------------------------------------------------------------
// Security checks
// ---------------------------------------------------------------------------------------------

test('secret comparisons go through crypto.timingSafeEqual (macaroon signature, preimage, metrics token)', async () => {
  const original = crypto.timingSafeEqual;
  const seen: number[] = [];
  crypto.timingSafeEqual = ((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    seen.push(a.byteLength);
    return original(a, b);
  }) as typeof original;
  // ESM named imports of node:crypto are live bindings: this makes src/ see the spy.
  syncBuiltinESMExports();
  try {
    const key = crypto.randomBytes(32);
    const m = mintMacaroon(key, Buffer.from('id'), 'x', ['route=/premium']);
    assert.equal(verifySignature(m, key), true);
    assert.equal(verifySignature({ ...m, signature: Buffer.alloc(32) }, key), false);
    assert.equal(seen.length, 2, 'verifySignature compares with timingSafeEqual');
    const pre = crypto.randomBytes(32);
    assert.equal(preimageMatches(pre, createHash('sha256').update(pre).digest()), true);
    assert.equal(preimageMatches(Buffer.alloc(32), createHash('sha256').update(pre).digest()), false);
    assert.equal(seen.length, 4, 'preimageMatches compares with timingSafeEqual');
    const log = createLogger('silent');
    const server = createMetricsServer({ render: async () => 'x 1\n' } as never, 'metrics-token-0123456789', log);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const before = seen.length;
      assert.equal((await http1(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
      assert.equal((await http1(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: 'Bearer metrics-token-0123456789' } })).status, 200);
      assert.equal(seen.length - before, 2, 'the metrics token is compared with timingSafeEqual');
    } finally {
      server.close();
    }
  } finally {
    crypto.timingSafeEqual = original;
    syncBuiltinESMExports();
  }
});

test('header size limits through nginx: long credentials, long URIs and many headers never cause a 5xx or a pass', { skip }, async () => {
  const { origin, upstream } = cluster;
  upstream.reset();
  const cred = await buy(origin, cluster.wallet);
  const pad = (n: number) => 'A'.repeat(n);
  const results: string[] = [];
  const check = async (what: string, path: string, headers: Record<string, string>, allowed: number[]) => {
    const r = await http1(origin + path, { headers: { accept: 'application/json', ...headers }, timeoutMs: 5_000 });
    if (!allowed.includes(r.status)) results.push(`${what}: ${r.status}`);
  };
  // Authorization just under nginx's 8k header line: reaches l402d, which refuses it (401), bounded.
  await check('8100-byte Authorization', '/premium', { authorization: `L402 ${pad(8100 - 70)}:${'00'.repeat(32)}` }, [401]);
  // Over nginx's line limit: nginx itself answers 400.
  await check('9000-byte Authorization', '/premium', { authorization: `L402 ${pad(9000)}:${'00'.repeat(32)}` }, [400]);
  // A valid credential padded with many macaroons (discharges) is refused, not crashed.
  await check('5 macaroons', '/premium', { authorization: `L402 ${Array(5).fill(cred.macaroon).join(',')}:${cred.preimage}` }, [401]);
  // 150 ordinary headers (Node keeps the first 200 it sees; nginx forwards all).
  const many: Record<string, string> = {};
  for (let i = 0; i < 150; i++) many[`x-h-${i}`] = 'v'.repeat(20);
  await check('150 headers', '/premium', many, [402]);
  // Over nginx's 8k request line buffer.
  await check('9 KiB URI', `/premium/${'p'.repeat(9_000)}`, {}, [414, 400]);
  assert.deepEqual(results, []);
  assert.equal(upstream.hits, 0, 'nothing passed');
});

// Found here: a single-use credential binds the exact path, so the challenge (macaroon twice in
// WWW-Authenticate, again in the body) grows with the URI. Past ~1.1k characters l402d's answer no longer
// fits nginx's default proxy_buffer_size (4k): "upstream sent too big header" -> 502. Past ~3.8k the macaroon
// would also exceed what l402d accepts back (MAX_MACAROON_BYTES 4096): an invoice that buys nothing.
test('long URIs on a single-use route: the challenge is usable, or refused (4xx) before any invoice is minted', { skip }, async () => {
  const { origin, wallet, upstream } = cluster;
  const problems: string[] = [];
  for (const n of [1_500, 3_000, 5_000, 7_000]) {
    const path = `/premium/${'p'.repeat(n)}`;
    const r = await http1(origin + path, { headers: { accept: 'application/json' } });
    if (r.status === 402) {
      const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
      const auth = `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
      upstream.reset();
      const paid = await http1(origin + path, { headers: { authorization: auth, accept: 'application/json' } });
      if (paid.status !== 200) problems.push(`${n}-char path: sold a credential that then got ${paid.status} ${paid.body.slice(0, 120)}`);
    } else if (!(r.status >= 400 && r.status < 500)) {
      problems.push(`${n}-char path: ${r.status} instead of a challenge or a client error (nginx: ${cluster.nginx.errorLog().split('\n').filter((l) => /\[(error|crit)\]/.test(l)).slice(-1)[0]?.replace(/, client:.*/, '') ?? '-'})`);
    }
  }
  assert.deepEqual(problems, []);
});
