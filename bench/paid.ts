// Paid path: the same route and the same app behind nginx (a) without the gate, (f) with an auth_request to a Node
// server that answers 200 without deciding anything (the floor of any gate in a Node process), (b) with the gate and a
// reusable (timed) credential — with nginx's auth cache (the default) and without it (every request asks
// l402d) — and (c) with single-use credentials (one store claim each: SQLite, Redis). Throughput and latency
// under saturation (wrk -c32), and latency at a moderate load, for 1 and 2 nginx workers, all as ratios
// of (a) measured in the same run. Usage: node --import tsx bench/paid.ts
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { RedisStore } from '../src/store/redis-store.js';
import {
  Cleanup, appUpstream, buy, freePort, machine, machineBusy, measure, mintCredentials, protectedLocation, ratio, requireBenchTools,
  startBenchNginx, startGateProc, startRedis, startUpstream, table, tmp, writeSuffixedSnippets, SECS, WARMUP_SECS,
  type GateProc, type WrkResult, type YoungGc,
} from './lib.js';

const ROUTES = `lightning: { type: dev }
routes:
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 3600 }
  - { match: /single, amount_msat: 1000 }
`;
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 32);
/** Moderate load: 8 connections, each pausing 8 ms between requests (about 1k req/s at most). */
const MODERATE_SECS = Number(process.env.BENCH_MODERATE_SECS ?? 3);
const MODERATE = { threads: 1, connections: 8, delayMs: 8, secs: MODERATE_SECS };

/**
 * One store claim, measured in-process: what (c) adds at best. One at a time (a claim's latency), and 32 in
 * flight at once as under load (claims of one event-loop turn share a commit or a write: the cost per claim).
 */
async function storeRoundTrip(dir: string, redisUrl?: string): Promise<Array<{ store: string; alone: number; concurrent: number }>> {
  const n = 3_000;
  const time = async (claim: (k: string) => Promise<boolean>, inFlight: number) => {
    for (let i = 0; i < 200; i++) await claim(`warm:${inFlight}:${i}:${Math.random()}`);
    const t0 = performance.now();
    for (let i = 0; i < n; i += inFlight) await Promise.all(Array.from({ length: inFlight }, (_, j) => claim(`rt:${inFlight}:${i + j}:${Math.random()}`)));
    return ((performance.now() - t0) / n) * 1000;
  };
  const out: Array<{ store: string; alone: number; concurrent: number }> = [];
  const sqlite = new SqliteStore(join(dir, 'rt.db'));
  out.push({ store: 'SQLite claimOnce', alone: await time((k) => sqlite.claimOnce(k, 600), 1), concurrent: await time((k) => sqlite.claimOnce(k, 600), 32) });
  await sqlite.close();
  if (redisUrl) {
    const redis = new RedisStore(redisUrl, 'rt:', 1000);
    await redis.ping();
    out.push({ store: 'Redis claimOnce (loopback)', alone: await time((k) => redis.claimOnce(k, 600), 1), concurrent: await time((k) => redis.claimOnce(k, 600), 32) });
    await redis.close();
  }
  return out;
}

export async function runPaid(): Promise<string[]> {
  const tools = requireBenchTools();
  const cleanup = new Cleanup();
  const out: string[] = [];
  try {
    const dir = tmp(cleanup, 'l402-bench-paid-');
    const app = await startUpstream(cleanup);
    // The floor of any gate in a Node process: nginx's auth_request to a second Node server that answers 200
    // without deciding anything (the app's keep-alive server, answering with no body as l402d's auth answer does).
    const authApp = await startUpstream(cleanup, { empty: true });
    const redis = tools.redis ? cleanup.use(await startRedis()) : undefined;
    // A: SQLite (the default store), nginx auth cache on (the default). B: Redis, nginx auth cache off.
    const gateA = await startGateProc(cleanup, `log: { level: info }\n${ROUTES}`, { name: 'l402d sqlite' });
    const gateB = await startGateProc(cleanup, `log: { level: info }\nnginx_cache: { max_secs: 0 }\n${redis ? `store: { type: redis, url: "${redis.url}" }\n` : ''}${ROUTES}`, { name: 'l402d redis' });
    // U: as B without Redis, but nginx reaches l402d over a unix socket instead of loopback TCP.
    const gateU = await startGateProc(cleanup, `log: { level: info }\nnginx_cache: { max_secs: 0 }\n${ROUTES}`, { name: 'l402d unix socket', unixSocket: true });
    // W: as B without Redis, run as two worker processes (`workers: 2`) on one address.
    const gateW = await startGateProc(cleanup, `workers: 2\nlog: { level: info }\nnginx_cache: { max_secs: 0 }\n${ROUTES}`, { name: 'l402d workers: 2' });
    const snA = writeSuffixedSnippets(gateA.cfg, join(dir, 'snA'), '');
    const snB = writeSuffixedSnippets(gateB.cfg, join(dir, 'snB'), '_b');
    const snU = writeSuffixedSnippets(gateU.cfg, join(dir, 'snU'), '_u');
    const snW = writeSuffixedSnippets(gateW.cfg, join(dir, 'snW'), '_w');
    const rt = await storeRoundTrip(dir, redis?.url);

    // l402d alone, called as nginx calls it: its own ceiling per request kind (one Node process, one core).
    const gateQuiet = await startGateProc(cleanup, `log: { level: warn }\nnginx_cache: { max_secs: 0 }\n${ROUTES}`, { name: 'l402d log warn' });
    const direct: Array<Record<string, string | number>> = [];
    {
      const port = await freePort();
      const nginx = await startBenchNginx(cleanup, 1, `${appUpstream(app.port)} include ${snA}/upstream.conf; server { listen 127.0.0.1:${port}; access_log off; include ${snA}/server.conf; ${protectedLocation('/timed/', snA)} }`);
      const timed = await buy(`http://127.0.0.1:${port}`, '/timed/x', gateA.wallet);
      await nginx.stop();
      const as = (uri: string) => ({ 'X-Original-URI': uri, 'X-L402-URI': uri, 'X-Original-Method': 'GET', 'X-L402-Client-Addr': '127.0.0.1' });
      const floor = await measure(`http://127.0.0.1:${gateA.port}/_l402/health`, { connections: CONNS });
      const drow = (name: string, r: WrkResult) => ({ 'l402d /_l402/auth, no nginx': name, 'req/s': r.rps, 'p50 ms': r.p50, 'p99 ms': r.p99, 'non-2xx': r.statusErrors + r.socketErrors, replays: r.exhausted > 0 ? 'yes' : 'no' });
      direct.push(drow('health check (HTTP floor)', floor));
      for (const [name, gate] of [['timed verify, log info', gateA], ['timed verify, log warn', gateQuiet]] as const) {
        const r = await measure(`http://127.0.0.1:${gate.port}/_l402/auth`, { connections: CONNS, auth: timed, headers: as('/timed/x') });
        direct.push(drow(name, r));
      }
      const warm = join(dir, 'direct-warm.txt');
      const run = join(dir, 'direct-run.txt');
      // A credential is verified and claimed well under the HTTP floor's rate: size the files on that.
      await mintCredentials(gateA.cfg, '/single', '/single', Math.ceil(floor.rps * 0.6 * WARMUP_SECS) + 1_000, warm);
      await mintCredentials(gateA.cfg, '/single', '/single', Math.ceil(floor.rps * 0.6 * SECS) + 1_000, run);
      const single = await measure(`http://127.0.0.1:${gateA.port}/_l402/auth`, { connections: CONNS, credsFile: run, headers: as('/single') }, warm);
      direct.push(drow('single-use verify + SQLite claim, log info', single));
    }
    await gateQuiet.stop();

    const saturated: Array<Record<string, string | number>> = [];
    const moderate: Array<Record<string, string | number>> = [];
    for (const workers of [1, 2]) {
      const portA = await freePort();
      const portB = await freePort();
      const portU = await freePort();
      const portW = await freePort();
      const nginx = await startBenchNginx(
        cleanup,
        workers,
        `${appUpstream(app.port)}
        upstream authapp { server 127.0.0.1:${authApp.port}; keepalive 64; }
        include ${snA}/upstream.conf;
        include ${snB}/upstream.conf;
        include ${snU}/upstream.conf;
        include ${snW}/upstream.conf;
        server { listen 127.0.0.1:${portA}; access_log off; include ${snA}/server.conf;
          location /bare/ { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
          location /floor/ { auth_request /_floor_auth; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
          location = /_floor_auth { internal; proxy_pass http://authapp; proxy_pass_request_body off; proxy_set_header Content-Length ""; proxy_http_version 1.1; proxy_set_header Connection ""; }
          ${protectedLocation('/timed/', snA)} ${protectedLocation('/single', snA)} }
        server { listen 127.0.0.1:${portB}; access_log off; include ${snB}/server.conf;
          ${protectedLocation('/timed/', snB)} ${protectedLocation('/single', snB)} }
        server { listen 127.0.0.1:${portU}; access_log off; include ${snU}/server.conf; ${protectedLocation('/timed/', snU)} }
        server { listen 127.0.0.1:${portW}; access_log off; include ${snW}/server.conf; ${protectedLocation('/timed/', snW)} }`,
      );
      const A = `http://127.0.0.1:${portA}`;
      const B = `http://127.0.0.1:${portB}`;
      const timedA = await buy(A, '/timed/x', gateA.wallet);
      const timedB = await buy(B, '/timed/x', gateB.wallet);
      const U = `http://127.0.0.1:${portU}`;
      const timedU = await buy(U, '/timed/x', gateU.wallet);
      const W = `http://127.0.0.1:${portW}`;
      const timedW = await buy(W, '/timed/x', gateW.wallet);
      const busy = await machineBusy();

      const a = await measure(`${A}/bare/x`, { connections: CONNS });
      const floor = await measure(`${A}/floor/x`, { connections: CONNS });
      const bCache = await measure(`${A}/timed/x`, { connections: CONNS, auth: timedA });
      const bNoCache = await measure(`${B}/timed/x`, { connections: CONNS, auth: timedB });
      const bUnix = await measure(`${U}/timed/x`, { connections: CONNS, auth: timedU });
      const bWorkers = await measure(`${W}/timed/x`, { connections: CONNS, auth: timedW });
      // Fresh single-use credentials for warm-up and run at (b)'s rate, plus a margin: never a replay.
      const creds = async (gate: typeof gateA, name: string, rate: number) => {
        const warm = join(dir, `${name}-warm-${workers}.txt`);
        const run = join(dir, `${name}-run-${workers}.txt`);
        await mintCredentials(gate.cfg, '/single', '/single', Math.ceil(rate * WARMUP_SECS * 2) + 1_000, warm);
        await mintCredentials(gate.cfg, '/single', '/single', Math.ceil(rate * SECS * 2) + 1_000, run);
        return { warm, run };
      };
      const cA = await creds(gateA, 'sqlite', bNoCache.rps);
      const cSqlite = await measure(`${A}/single`, { connections: CONNS, credsFile: cA.run }, cA.warm);
      let cRedis: WrkResult | undefined;
      if (redis) {
        const cB = await creds(gateB, 'redis', bNoCache.rps);
        cRedis = await measure(`${B}/single`, { connections: CONNS, credsFile: cB.run }, cB.warm);
      }
      const row = (name: string, r: WrkResult, base: WrkResult) => ({
        setup: `nginx x${workers} ${name}`,
        'req/s': r.rps,
        'vs (a)': ratio(r.rps, base.rps),
        'p50 ms': r.p50,
        'p99 ms': r.p99,
        'non-2xx': r.statusErrors + r.socketErrors,
        replays: r.exhausted > 0 ? 'yes' : 'no',
      });
      saturated.push(
        row('(a) no gate', a, a),
        row('(f) auth_request to a Node server that decides nothing', floor, a),
        row('(b) timed, nginx auth cache', bCache, a),
        row('(b) timed, l402d every request', bNoCache, a),
        row('(b) same, l402d on a unix socket', bUnix, a),
        row('(b) same, l402d workers: 2', bWorkers, a),
        row('(c) single-use, SQLite claim', cSqlite, a),
        ...(cRedis ? [row('(c) single-use, Redis claim', cRedis, a)] : []),
      );
      out.push(`nginx x${workers}: machine busy before the run ${(busy * 100).toFixed(0)}% (shared machine)`);

      // Moderate load: latency the gate adds when nothing is saturated (1 worker, as in ARCHITECTURE.md).
      if (workers === 2) {
        await nginx.stop();
        continue;
      }
      const modA = await creds(gateA, 'sqlite-moderate', 1_000 * (MODERATE_SECS / SECS));
      const modB = redis ? await creds(gateB, 'redis-moderate', 1_000 * (MODERATE_SECS / SECS)) : undefined;
      // With l402d's young-generation collections over the run (warm-up included): a request that waits
      // through a scavenge's pause has it added, so their pauses set the tail.
      const gcOf = async (gate: GateProc, run: () => Promise<WrkResult>): Promise<[WrkResult, YoungGc]> => {
        await gate.youngGc();
        const r = await run();
        return [r, await gate.youngGc()];
      };
      const ma = await measure(`${A}/bare/x`, MODERATE);
      const mf = await measure(`${A}/floor/x`, MODERATE);
      const mb = await gcOf(gateA, () => measure(`${A}/timed/x`, { ...MODERATE, auth: timedA }));
      const mbn = await gcOf(gateB, () => measure(`${B}/timed/x`, { ...MODERATE, auth: timedB }));
      const mc = await gcOf(gateA, () => measure(`${A}/single`, { ...MODERATE, credsFile: modA.run }, modA.warm));
      const mcr = modB ? await gcOf(gateB, () => measure(`${B}/single`, { ...MODERATE, credsFile: modB.run }, modB.warm)) : undefined;
      const mrow = (name: string, [r, gc]: [WrkResult, YoungGc?]) => ({
        setup: `nginx x${workers} ${name}`,
        'req/s': r.rps,
        'p50 ms': r.p50,
        'p99 ms': r.p99,
        'p50 added ms': r.p50 - ma.p50,
        'p99 added ms': r.p99 - ma.p99,
        'non-2xx': r.statusErrors + r.socketErrors,
        'l402d scavenges': gc ? gc.scavenges : '-',
        'promoted B/req': gc ? Math.round(gc.promoted / Math.max(1, r.rps * (MODERATE_SECS + WARMUP_SECS))) : '-',
        'scavenge p50/max ms': gc ? `${gc.p50Ms.toFixed(1)}/${gc.maxMs.toFixed(1)}` : '-',
        'young KB/req': gc ? (gc.allocated / 1024 / Math.max(1, r.rps * (MODERATE_SECS + WARMUP_SECS))).toFixed(1) : '-',
        'survivors KB/scavenge': gc ? Math.round(gc.survived / 1024 / Math.max(1, gc.scavenges)) : '-',
      });
      moderate.push(
        mrow('(a) no gate', [ma]),
        mrow('(f) auth_request to a Node server that decides nothing', [mf]),
        mrow('(b) timed, nginx auth cache', mb),
        mrow('(b) timed, l402d every request', mbn),
        mrow('(c) single-use, SQLite claim', mc),
        ...(mcr ? [mrow('(c) single-use, Redis claim', mcr)] : []),
      );
      await nginx.stop();
    }
    out.push(table(`Paid path, saturated (wrk -t2 -c${CONNS}, ${SECS}s after ${WARMUP_SECS}s warm-up)`, saturated));
    out.push(table(`Paid path, moderate load (wrk -t1 -c8, 8 ms pause per connection, ${MODERATE_SECS}s)`, moderate));
    out.push(table(`l402d alone, called as nginx calls it (wrk -t2 -c${CONNS}, ${SECS}s)`, direct));
    out.push(table('One single-use claim, in-process (what (c) adds at best)', rt.map((r) => ({ store: r.store, 'us/claim, one at a time': r.alone, 'us/claim, 32 in flight': r.concurrent }))));
  } finally {
    await cleanup.run();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(machine());
  await runPaid();
}
