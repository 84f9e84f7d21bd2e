// P2PK verification throughput of the Cashu rail, on one core. `npm run bench` (BENCH_ONLY=cashu) runs this
// file under `taskset -c 0` so garbage-collector helper threads cannot borrow the second core; alone:
//   taskset -c 0 node --import tsx bench/cashu-p2pk.ts [--proofs 400] [--rounds 3]
// Prints proofs/second for: the local check (lock + DLEQ) alone, batched per token; the same without
// DLEQ; full rail.accept() (decode, checks, DLEQ, store claims, SQLite insert) against a loopback mint
// peer; and cashu-ts's own hasValidDleq as the same-run baseline. The goal is >= 1,500 proofs/s.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Amount,
  blindMessage,
  createBlindSignature,
  createDLEQProof,
  createP2PKsecret,
  createRandomSecretKey,
  getEncodedToken,
  getPubKeyFromPrivKey,
  hasValidDleq,
  pointFromHex,
  unblindSignature,
  type Proof,
} from '@cashu/cashu-ts';
import { CashuMintPeer } from '../test/peers/cashu-mint.js';
import { cashuConfigSchema, createCashuRail } from '../src/rails/cashu/index.js';
import { MintDirectory, type KnownKeyset } from '../src/rails/cashu/mint-client.js';
import { checkTokenProofs, verifyP2pkProofs } from '../src/rails/cashu/verify.js';
import { warmGenerator } from '../src/rails/cashu/secp256k1.js';
import { WalletDb } from '../src/rails/cashu/wallet-db.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { createLogger } from '../src/util/log.js';

/** Runs this file pinned to one core (when taskset exists) and returns its report lines. */
export async function runCashuP2pk(): Promise<string[]> {
  console.log('\n== Cashu P2PK verification, one core ==');
  const self = fileURLToPath(import.meta.url);
  const node = [process.execPath, '--import', 'tsx', self];
  const pinned = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const r = spawnSync(pinned ? 'taskset' : node[0]!, pinned ? ['-c', '0', ...node] : node.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = ['== Cashu P2PK verification, one core ==', ...(r.stdout ?? '').trimEnd().split('\n')];
  console.log(lines.slice(1).join('\n'));
  if (r.status !== 0) throw new Error(`bench/cashu-p2pk.ts exited with ${r.status}`);
  return lines;
}

async function measure(): Promise<void> {
  const arg = (name: string, def: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  const N = arg('proofs', 400);
  const ROUNDS = arg('rounds', 3);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  const dir = mkdtempSync(join(tmpdir(), 'cashu-bench-'));
  const mint = await CashuMintPeer.start({ dataDir: join(dir, 'mint') });
  try {
    const ks = mint.activeKeyset();
    const gatePriv = hex(createRandomSecretKey());
    const gatePub = hex(getPubKeyFromPrivKey(Buffer.from(gatePriv, 'hex')));

    // Proofs as a payer's wallet would hold them after a P2PK send: locked secret, C, DLEQ with r. Built from
    // the mint's keys directly (no HTTP) so generation stays quick.
    process.stdout.write(`generating ${N} P2PK proofs with DLEQ... `);
    let t0 = performance.now();
    const proofs: Proof[] = [];
    for (let i = 0; i < N; i++) {
      const amount = 2 ** (i % 8);
      const secret = createP2PKsecret(gatePub);
      const bm = blindMessage(new TextEncoder().encode(secret));
      const priv = ks.priv[String(amount)]!;
      const sig = createBlindSignature(bm.B_, priv, ks.id);
      const dleq = createDLEQProof(bm.B_, priv);
      const C = unblindSignature(sig.C_, bm.r, pointFromHex(ks.pub[String(amount)]!));
      proofs.push({ id: ks.id, amount: Amount.from(amount), secret, C: C.toHex(true), dleq: { e: hex(dleq.e), s: hex(dleq.s), r: bm.r.toString(16).padStart(64, '0') } });
    }
    console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const keysets = new Map<string, KnownKeyset>([[ks.id, { id: ks.id, unit: 'sat', active: true, inputFeePpk: 0, keys: ks.pub }]]);
    const db = new WalletDb(join(dir, 'dir.db'));
    const directory = new MintDirectory(db, 2000);
    t0 = performance.now();
    warmGenerator();
    for (const k of Object.values(ks.pub).slice(0, 8)) directory.tables.get(k);
    console.log(`one-time tables (generator + 8 mint keys): ${(performance.now() - t0).toFixed(0)} ms`);

    // Baseline, measured first in this run: the library path (noble over BigInt, complete formulas).
    let baseline = 0;
    const report = (label: string, count: number, ms: number, cpuUs: number) => {
      const rate = (count * 1000) / ms;
      baseline ||= rate;
      console.log(
        `${label.padEnd(58)} ${Math.round(rate).toString().padStart(6)} proofs/s  ${(rate / baseline).toFixed(1).padStart(5)}x  (cpu/wall ${(cpuUs / 1000 / ms).toFixed(2)})`,
      );
    };
    {
      const sample = proofs.slice(0, Math.min(60, N));
      const start = performance.now();
      const cpu0 = process.cpuUsage();
      for (const p of sample) if (!hasValidDleq(p, { id: ks.id, keys: ks.pub })) throw new Error('reference DLEQ failed');
      const cpu = process.cpuUsage(cpu0);
      console.log(`\n${''.padEnd(58)} ${'rate'.padStart(15)}  vs baseline`);
      report('baseline: cashu-ts hasValidDleq (DLEQ only)', sample.length, performance.now() - start, cpu.user + cpu.system);
    }

    const local = (perToken: number, requireDleq: boolean) => {
      // NUT-12: a DLEQ that is present is always verified, so the no-DLEQ case needs proofs without one.
      const input = requireDleq ? proofs : proofs.map(({ dleq: _d, ...p }) => p as Proof);
      let best = 0;
      let bestCpu = 0;
      for (let r = 0; r < ROUNDS; r++) {
        const cpu0 = process.cpuUsage();
        const start = performance.now();
        for (let i = 0; i < input.length; i += perToken) {
          const chunk = input.slice(i, i + perToken);
          const checked = checkTokenProofs(chunk, keysets, { unit: 'sat', priceUnits: 1, maxProofs: 1000, nowSecs: Math.floor(Date.now() / 1000) });
          verifyP2pkProofs(checked, directory, { ourPubkey: gatePub, requireDleq, nowSecs: Math.floor(Date.now() / 1000), minLocktimeSecs: 0 });
        }
        const ms = performance.now() - start;
        const cpu = process.cpuUsage(cpu0);
        if (!best || ms < best) {
          best = ms;
          bestCpu = cpu.user + cpu.system;
        }
      }
      report(`local check, ${perToken} proof(s)/token${requireDleq ? ', DLEQ' : ', no DLEQ: lock checks only (the rail then swaps)'}`, proofs.length, best, bestCpu);
    };
    console.log(`local checks: best of ${ROUNDS} rounds over ${N} proofs`);
    for (const k of [1, 4, 8]) local(k, true);
    local(4, false);

    // End to end: rail.accept() with fresh tokens (every proof pays once), best of ROUNDS: each round is a
    // new rail with its own store and wallet, so the same proofs are fresh again and the JIT is warm.
    const log = createLogger('silent');
    const tokens: string[] = [];
    for (let i = 0; i < proofs.length; i += 4) tokens.push(getEncodedToken({ mint: mint.url, unit: 'sat', proofs: proofs.slice(i, i + 4) }));
    for (const storeKind of ['memory', 'sqlite'] as const) {
      let best = { ms: 0, cpu: 0, replayMs: 0 };
      for (let r = 0; r < ROUNDS; r++) {
        const sub = `${storeKind}-${r}`;
        const store = storeKind === 'memory' ? new MemoryStore() : new SqliteStore(join(dir, `store-${sub}.db`));
        const cfg = cashuConfigSchema.parse({ mode: 'p2pk', mints: [mint.url], p2pk: { private_key: gatePriv, min_locktime_secs: 0 } });
        const rail = await createCashuRail(cfg, { store, dataDir: join(dir, `gate-${sub}`), log });
        await rail.accept(tokens[0]!, 1000, { routeId: 'warm' }); // warms key tables
        const cpu0 = process.cpuUsage();
        const start = performance.now();
        let ok = 0;
        for (const t of tokens.slice(1)) if ((await rail.accept(t, 1000, { routeId: 'bench' })).ok) ok++;
        const ms = performance.now() - start;
        const cpu = process.cpuUsage(cpu0);
        if (ok !== tokens.length - 1) throw new Error(`only ${ok}/${tokens.length - 1} tokens accepted`);
        const replayStart = performance.now();
        for (const t of tokens.slice(1)) if ((await rail.accept(t, 1000, { routeId: 'bench' })).ok) throw new Error('replay accepted');
        const replayMs = performance.now() - replayStart;
        if (!best.ms || ms < best.ms) best = { ms, cpu: cpu.user + cpu.system, replayMs };
        await rail.close();
        await store.close();
      }
      report(`rail.accept(), 4 proofs/token, ${storeKind} store`, (tokens.length - 1) * 4, best.ms, best.cpu);
      console.log(`${'  replays of the same tokens refused'.padEnd(58)} ${Math.round(((tokens.length - 1) * 4000) / best.replayMs).toString().padStart(6)} proofs/s`);
    }
    db.close();
    console.log('\ngoal: >= 1500 proofs/s on one core for P2PK verification');
  } finally {
    await mint.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await measure();
