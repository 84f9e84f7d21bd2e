// Memory: l402d's RSS under sustained mixed load — reusable credentials verified on every request (nginx
// cache off), single-use credentials, challenges, and hostile unpaid requests on ever-new paths — sampled
// every 250 ms. Three identical load rounds back to back: flat means round 3 ends where round 1 ended.
// Usage: node --import tsx bench/memory.ts
import { join } from 'node:path';
import {
  Cleanup, appUpstream, buy, freePort, machine, mintCredentials, protectedLocation, requireBenchTools, rssMiB,
  sleep, startBenchNginx, startGateProc, startUpstream, table, tmp, wrk, writeSuffixedSnippets, SECS,
} from './lib.js';

const ROUTES = `lightning: { type: dev }
routes:
  - { match: /timed/, amount_msat: 5000, access: timed, macaroon_timeout: 3600 }
  - { match: /single, amount_msat: 1000 }
`;
const ROUNDS = 3;

export async function runMemory(): Promise<string[]> {
  requireBenchTools();
  const cleanup = new Cleanup();
  const out: string[] = [];
  try {
    const dir = tmp(cleanup, 'l402-bench-memory-');
    const app = await startUpstream(cleanup);
    const gate = await startGateProc(cleanup, `log: { level: info }\nnginx_cache: { max_secs: 0 }\n${ROUTES}`, { name: 'l402d memory' });
    const sn = writeSuffixedSnippets(gate.cfg, join(dir, 'sn'), '');
    const port = await freePort();
    await startBenchNginx(cleanup, 1, `${appUpstream(app.port)} include ${sn}/upstream.conf; server { listen 127.0.0.1:${port}; access_log off; include ${sn}/server.conf; ${protectedLocation('/timed/', sn)} ${protectedLocation('/single', sn)} }`);
    const origin = `http://127.0.0.1:${port}`;
    const timed = await buy(origin, '/timed/x', gate.wallet);

    const samples: Array<{ t: number; mib: number }> = [];
    const t0 = Date.now();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push({ t: Date.now() - t0, mib: rssMiB(gate.pid) });
        await sleep(250);
      }
    })();
    await sleep(1_000);
    const start = rssMiB(gate.pid);
    const rows: Array<Record<string, string | number>> = [{ point: 'after start (idle)', 'RSS MiB': start, 'heap after GC MiB': (await gate.heapAfterGc()).heapUsedMiB, requests: 0 }];
    let total = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const creds = join(dir, `single-${round}.txt`);
      await mintCredentials(gate.cfg, '/single', '/single', 10_000 * SECS, creds);
      const results = await Promise.all([
        wrk(`${origin}/timed/x`, { threads: 1, connections: 8, auth: timed, secs: SECS }),
        wrk(`${origin}/single`, { threads: 1, connections: 8, credsFile: creds, secs: SECS }),
        wrk(`${origin}/single`, { threads: 1, connections: 4, secs: SECS }),
        // Unpaid requests on unique 1 KiB paths: per-path state (price lookups, logs) must stay bounded.
        wrk(`${origin}/timed/`, { threads: 1, connections: 4, secs: SECS, randomPath: `/timed/${'h'.repeat(1_000)}/` }),
      ]);
      const n = results.reduce((a, r) => a + r.requests, 0);
      total += n;
      rows.push({ point: `end of round ${round} (${SECS}s, 4 wrk clients)`, 'RSS MiB': rssMiB(gate.pid), 'heap after GC MiB': (await gate.heapAfterGc()).heapUsedMiB, requests: total });
    }
    await sleep(3_000);
    rows.push({ point: 'after 3 s idle', 'RSS MiB': rssMiB(gate.pid), 'heap after GC MiB': (await gate.heapAfterGc()).heapUsedMiB, requests: total });
    sampling = false;
    await sampler;
    const peak = Math.max(...samples.map((s) => s.mib));
    rows.push({ point: 'peak (250 ms samples)', 'RSS MiB': peak, 'heap after GC MiB': '', requests: total });
    const r1 = rows.find((r) => String(r.point).startsWith('end of round 1'))!['RSS MiB'] as number;
    const rN = rows.find((r) => String(r.point).startsWith(`end of round ${ROUNDS}`))!['RSS MiB'] as number;
    out.push(table(`l402d RSS under sustained load (${ROUNDS} rounds of ${SECS}s)`, rows));
    const h1 = rows.find((r) => String(r.point).startsWith('end of round 1'))!['heap after GC MiB'] as number;
    const hN = rows.find((r) => String(r.point).startsWith(`end of round ${ROUNDS}`))!['heap after GC MiB'] as number;
    const pct = (a: number, b: number) => `${(((b - a) / a) * 100).toFixed(1)}%`;
    out.push(`From the end of round 1 to the end of round ${ROUNDS}: RSS ${pct(r1, rN)}, heap after GC ${pct(h1, hN)} (RSS start ${start.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB)`);
    console.log(out[out.length - 1]);
  } finally {
    await cleanup.run();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(machine());
  await runMemory();
}
