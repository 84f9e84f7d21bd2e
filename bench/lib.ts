// Shared pieces of the benchmarks: processes (app, l402d, nginx, Redis) on loopback, wrk runs, credential
// minting, RSS sampling and ratio tables. Every bench measures its own baseline in the same run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { get as httpGet } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Cleanup, freePort, http1, requireTool, startNginx, startRedis, waitFor, type NginxHandle, type RedisHandle } from '../test/integration/harness.js';
import { parseConfig, type GateConfig } from '../src/config/config.js';
import { nginxSnippets } from '../src/cli/nginx-conf.js';
import { createChallenge } from '../src/policy/challenge.js';
import { parseRootKey } from '../src/protocol/root-key.js';
import type { LightningBackend } from '../src/rails/lightning/backend.js';
import { DevWallet } from '../src/rails/lightning/dev/dev-wallet.js';

export { Cleanup, freePort, http1, startRedis, type NginxHandle, type RedisHandle };

const HERE = fileURLToPath(new URL('.', import.meta.url));
export const WRK_LUA = join(HERE, 'wrk.lua');
export const ROOT_KEY = '9d2e4f6a8b0c1d3e5f7a9b1c3d5e7f90a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0';

/** Seconds per measurement (BENCH_SECS, default 4), and a short warm-up before each. */
export const SECS = Number(process.env.BENCH_SECS ?? 4);
export const WARMUP_SECS = Number(process.env.BENCH_WARMUP_SECS ?? 1);

export { sleep } from '../src/util/timeout.js';
import { sleep } from '../src/util/timeout.js';

export function requireBenchTools(): { wrk: string; nginx: string; redis?: string } {
  const wrk = requireTool('wrk');
  const nginx = requireTool('nginx');
  if (!wrk || !nginx) throw new Error('the benchmarks need wrk and nginx (Debian: apt-get install wrk nginx-light)');
  return { wrk, nginx, redis: requireTool('redis-server') };
}

export function tmp(cleanup: Cleanup, prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanup.add(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

export interface Proc {
  pid: number;
  port: number;
  stderr(): string;
  stop(): Promise<void>;
  /** l402d only (bench/gate-main.ts): heap after a full GC, in MiB. */
  heapAfterGc(): Promise<{ heapUsedMiB: number; rssMiB: number }>;
  /** l402d only (bench/gate-main.ts): its young-generation collections since the last call (or its start). */
  youngGc(): Promise<YoungGc>;
}

/** What l402d's young-generation collections did over a while (V8's GCProfiler, main thread). */
export interface YoungGc {
  scavenges: number;
  /** Bytes that survived into the old generation. */
  promoted: number;
  /** Bytes the young generation held when the scavenges began, summed (about what was allocated). */
  allocated: number;
  /** Bytes still in the young generation after them, summed (the survivors they copied). */
  survived: number;
  /** Pause of each scavenge, ms: median and longest. */
  p50Ms: number;
  maxMs: number;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function spawnNode(args: string[], port: number): Proc {
  // BENCH_CPU_PROF=<dir>: each spawned Node process writes a V8 CPU profile there when it exits. BENCH_NODE_FLAGS:
  // more node/V8 flags for each of them (e.g. a young-generation size, to compare its pauses in the same run).
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, `--cpu-prof-interval=${process.env.BENCH_CPU_PROF_INTERVAL ?? 1000}`] : [];
  const extra = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...prof, ...extra, '--expose-gc', '--import', 'tsx', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let err = '';
  let pending = '';
  const memReports: Array<{ heapUsed: number; rss: number }> = [];
  const gcReports: YoungGc[] = [];
  child.stderr!.on('data', (b: Buffer) => {
    err = (err + b.toString()).slice(-8_000);
    pending += b.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith('MEM ')) memReports.push(JSON.parse(l.slice(4)) as { heapUsed: number; rss: number });
      if (l.startsWith('YOUNGGC ')) gcReports.push(JSON.parse(l.slice(8)) as YoungGc);
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    pid: child.pid!,
    port,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000).then(() => child.kill('SIGKILL'))]);
      children.delete(child);
    },
    async heapAfterGc() {
      const seen = memReports.length;
      child.kill('SIGUSR2');
      const m = await waitFor('l402d memory report', () => memReports[seen], { timeoutMs: 5_000 });
      return { heapUsedMiB: m.heapUsed / 2 ** 20, rssMiB: m.rss / 2 ** 20 };
    },
    async youngGc() {
      const seen = gcReports.length;
      child.kill('SIGWINCH');
      return waitFor('l402d GC report', () => gcReports[seen], { timeoutMs: 5_000 });
    },
  };
}

/** The bench app; `{ empty: true }`: a 200 with no body, the (f) floor's auth server (see upstream.ts). */
export async function startUpstream(cleanup: Cleanup, o: { empty?: boolean } = {}): Promise<Proc> {
  const port = await freePort();
  const p = spawnNode([join(HERE, 'upstream.ts'), String(port), ...(o.empty ? ['--empty'] : [])], port);
  cleanup.add(() => p.stop(), 'app');
  await waitFor('bench upstream', async () => (await http1(`http://127.0.0.1:${port}/`)).status === 200, { details: () => p.stderr() });
  return p;
}

export interface GateProc extends Proc {
  cfg: GateConfig;
  dir: string;
  wallet: DevWallet;
}

let built = false;
/** Compiles src/ to dist/ once per bench process: l402d runs as shipped (bench/gate-main.ts). */
export function ensureBuilt(): void {
  if (built || process.env.BENCH_FROM === 'src') return;
  const r = spawnSync(process.execPath, [join(HERE, '..', 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(HERE, '..', 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('the build (tsc -p tsconfig.json) failed');
  built = true;
}

/** l402d as its own process (so its CPU and RSS are its own), from a YAML fragment plus routes. */
export async function startGateProc(cleanup: Cleanup, yaml: string, opts: { slowBackendMs?: number; name?: string; unixSocket?: boolean } = {}): Promise<GateProc> {
  ensureBuilt();
  const dir = tmp(cleanup, 'l402-bench-gate-');
  const port = await freePort();
  // A unix socket: nginx reaches l402d without TCP (`listen: unix:/path`); the health wait still needs a port.
  const listen = opts.unixSocket ? `unix:${join(dir, 'l402d.sock')}` : `127.0.0.1:${port}`;
  const text = `listen: ${listen}\ndata_dir: ${dir}\nroot_key: ${ROOT_KEY}\n${yaml}`;
  const file = join(dir, 'l402.yaml');
  writeFileSync(file, text);
  const cfg = parseConfig(text, { env: {} });
  const args = [join(HERE, 'gate-main.ts'), file];
  if (opts.slowBackendMs) args.push('--slow-backend-ms', String(opts.slowBackendMs));
  const p = spawnNode(args, port);
  cleanup.add(() => p.stop(), opts.name ?? 'l402d');
  const healthy = opts.unixSocket
    ? () => new Promise<boolean>((ok) => httpGet({ socketPath: join(dir, 'l402d.sock'), path: '/_l402/health' }, (r) => ok(r.resume().statusCode === 200)).on('error', () => ok(false)))
    : async () => (await http1(`http://127.0.0.1:${port}/_l402/health`)).status === 200;
  await waitFor(`l402d (${opts.name ?? 'bench'})`, healthy, { timeoutMs: 20_000, details: () => p.stderr() });
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  return { ...p, cfg, dir, wallet };
}

/**
 * The generated nginx snippets, renamed with `suffix` so several l402d instances can sit in one nginx
 * (each snippet set declares `upstream l402d` and the auth cache zone).
 */
export function writeSuffixedSnippets(cfg: GateConfig, dir: string, suffix: string): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(nginxSnippets(cfg))) {
    const renamed = suffix
      ? text
          .replace(/\bl402d\b(?=[;\s])/g, `l402d${suffix}`)
          .replace(/http:\/\/l402d\b/g, `http://l402d${suffix}`)
          .replace(/keys_zone=l402_auth:/g, `keys_zone=l402_auth${suffix}:`)
          .replace(/proxy_cache l402_auth;/g, `proxy_cache l402_auth${suffix};`)
          .replace(/l402_auth_cache\b/g, `l402_auth_cache${suffix}`)
          .replace(/@l402_render\b/g, `@l402_render${suffix}`)
          .replace(/@l402_unavailable\b/g, `@l402_unavailable${suffix}`)
      : text;
    writeFileSync(join(dir, name), renamed);
  }
  return dir;
}

/** A protected location for one l402d snippet set, proxying to the shared keep-alive `app` upstream. */
export function protectedLocation(path: string, snippets: string): string {
  return `location ${path} { include ${snippets}/protect.conf; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }`;
}

export function appUpstream(port: number): string {
  return `upstream app { server 127.0.0.1:${port}; keepalive 64; }`;
}

export async function startBenchNginx(cleanup: Cleanup, workers: number, http: string): Promise<NginxHandle> {
  return cleanup.use(await startNginx({ workers, http }), `nginx x${workers}`);
}

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

/** Buys a credential the way a client does: 402 through nginx, pay with the gate's dev wallet. */
export async function buy(origin: string, path: string, wallet: DevWallet): Promise<string> {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  if (r.status !== 402) throw new Error(`expected 402 for ${path}, got ${r.status}: ${r.body.slice(0, 200)}`);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  return `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
}

/**
 * Single-use credentials exactly as l402d mints them, without an invoice round trip each: l402d verifies a
 * preimage-bearing credential without the Lightning backend, so a local random preimage is enough.
 * Writes one Authorization value per line.
 */
export async function mintCredentials(cfg: GateConfig, match: string, path: string, n: number, file: string): Promise<void> {
  const route = cfg.routes.find((r) => r.match === match);
  if (!route) throw new Error(`no route ${match}`);
  const rootKey = parseRootKey(ROOT_KEY);
  const lines: string[] = [];
  let preimage = randomBytes(32);
  const backend: LightningBackend = {
    kind: 'local',
    createInvoice: async () => ({ bolt11: 'lnbcrt1local', paymentHash: createHash('sha256').update(preimage).digest(), expiresAt: Math.floor(Date.now() / 1000) + 3600 }),
    describe: () => 'local',
    close: async () => {},
  };
  for (let i = 0; i < n; i++) {
    preimage = randomBytes(32);
    const c = await createChallenge(route, { path, method: 'GET', amountMsat: route.amountMsat }, {
      backend, rootKey, service: cfg.service, location: cfg.service, memo: '', invoiceExpirySecs: 3600, backendTimeoutMs: 1000,
    });
    lines.push(`L402 ${c.macaroon}:${preimage.toString('hex')}`);
  }
  writeFileSync(file, lines.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

export interface WrkResult {
  requests: number;
  rps: number;
  /** Latency percentiles in milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  /** HTTP answers >= 400 (wrk's own count). */
  statusErrors: number;
  socketErrors: number;
  /** Times a thread ran out of fresh credentials (then replayed). */
  exhausted: number;
  statuses: Record<string, number>;
}

export interface WrkOptions {
  threads?: number;
  connections?: number;
  secs?: number;
  auth?: string;
  credsFile?: string;
  countStatus?: boolean;
  delayMs?: number;
  randomPath?: string;
  /** Extra headers, e.g. X-Original-URI to call l402d directly as nginx does. */
  headers?: Record<string, string>;
}

export function wrk(url: string, o: WrkOptions = {}): Promise<WrkResult> {
  const threads = o.threads ?? 2;
  const env: NodeJS.ProcessEnv = { ...process.env, L402_THREADS: String(threads) };
  if (o.auth) env.L402_AUTH = o.auth;
  if (o.credsFile) env.L402_CREDS = o.credsFile;
  if (o.countStatus) env.L402_COUNT_STATUS = '1';
  if (o.delayMs !== undefined) env.L402_DELAY_MS = String(o.delayMs);
  if (o.randomPath) env.L402_RANDOM_PATH = o.randomPath;
  if (o.headers) env.L402_HEADERS = Object.entries(o.headers).map(([k, v]) => `${k}: ${v}`).join('|');
  const secs = o.secs ?? SECS;
  const args = ['-t', String(threads), '-c', String(o.connections ?? 32), '-d', `${secs}s`, '--timeout', '5s', '-s', WRK_LUA, url];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (secs + 30) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) return reject(new Error(`wrk ${args.join(' ')} failed (${code}):\n${out.slice(-2000)}`));
      const j = JSON.parse(line.slice(9)) as Record<string, number> & { statuses: Record<string, number> };
      resolve({
        requests: j.requests!,
        rps: j.requests! / (j.duration_us! / 1e6),
        p50: j.p50! / 1000,
        p90: j.p90! / 1000,
        p99: j.p99! / 1000,
        max: j.max! / 1000,
        mean: j.mean! / 1000,
        statusErrors: j.status_errors!,
        socketErrors: j.connect! + j.read! + j.write! + j.timeout!,
        exhausted: j.exhausted!,
        statuses: j.statuses,
      });
    });
    child.on('error', reject);
  });
}

/**
 * A short unmeasured run first (JIT, connection pools, caches), then the measured one. Single-use runs
 * need their own fresh credentials for the warm-up (`warmCredsFile`), or the measured run would replay.
 */
export async function measure(url: string, o: WrkOptions = {}, warmCredsFile?: string): Promise<WrkResult> {
  if (o.credsFile && !warmCredsFile && WARMUP_SECS > 0) throw new Error('single-use runs need separate warm-up credentials');
  if (WARMUP_SECS > 0) await wrk(url, { ...o, secs: WARMUP_SECS, credsFile: warmCredsFile ?? o.credsFile });
  return wrk(url, o);
}

// ---------------------------------------------------------------------------------------------
// RSS, machine, tables
// ---------------------------------------------------------------------------------------------

/** Resident set size of a process in MiB (Linux /proc). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Busy CPU fraction of the whole machine over `ms` (others' load shows up here: the box is shared). */
export async function machineBusy(ms = 500): Promise<number> {
  const read = () => readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const a = read();
  await sleep(ms);
  const b = read();
  const d = b.map((v, i) => v - a[i]!);
  const idle = d[3]! + (d[4] ?? 0);
  const total = d.reduce((x, y) => x + y, 0);
  return total > 0 ? 1 - idle / total : 0;
}

export function machine(): string {
  const cpu = cpus();
  // nginx -v and wrk -v print to stderr (wrk also exits 1).
  const ver = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  };
  return [
    `${cpu.length} x ${cpu[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `node ${process.version}, ${ver('nginx', ['-v']).replace('nginx version: ', '')}, ${ver('wrk', ['-v']).split('\n')[0]?.split(' [')[0] ?? 'wrk'}, ${ver('redis-server', ['--version']).split(' sha=')[0] ?? ''}`,
  ].join('\n');
}

export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return '-';
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

/** Prints rows as an aligned text table (also valid Markdown). */
export function table(title: string, rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return `${title}\n(no rows)\n`;
  const cols = Object.keys(rows[0]!);
  const cells = rows.map((r) => cols.map((c) => (typeof r[c] === 'number' ? fmt(r[c] as number) : String(r[c] ?? ''))));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (v: string[]) => `| ${v.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join(' | ')} |`;
  const out = [`\n${title}`, line(cols), `|${w.map((n, i) => (i === 0 ? '-'.repeat(n + 2) : '-'.repeat(n + 1) + ':')).join('|')}|`, ...cells.map(line)].join('\n');
  console.log(out);
  return out;
}

export function ratio(x: number, base: number): string {
  return base > 0 ? `${(x / base).toFixed(2)}x` : '-';
}
