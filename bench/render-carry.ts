// Would carrying the auth answer's decision to the render call (issue 11) pay for itself? nginx calls
// /_l402/auth, then on a refusal /_l402/render with the same request; the render takes the outcome and reason
// nginx hands it (X-L402-Outcome/-Reason, from auth_request_set) and re-derives the rest. This times, in one
// process and one run, what a render costs today and the part of it a carried decision could skip (the route
// lookup; on an auto-detect route's "not paid yet", the macaroon's parse and signature check), against what
// carrying costs (an HMAC over the request identity and the decision on the auth side, its check on the
// render side). It also measures 402s per second through nginx with today's code, for scale.
// Usage: node --import tsx bench/render-carry.ts
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseConfig } from '../src/config/config.js';
import { Gate } from '../src/server/gate.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { DevWallet } from '../src/rails/lightning/dev/dev-wallet.js';
import { createLogger } from '../src/util/log.js';
import { parseRootKey, signedByTokenKey } from '../src/protocol/root-key.js';
import { parseCredential } from '../src/protocol/l402-header.js';
import { decodeMacaroon } from '../src/protocol/macaroon.js';
import { decodeIdentifier } from '../src/protocol/identifier.js';
import {
  Cleanup, appUpstream, freePort, http1, machine, machineBusy, measure, protectedLocation, requireBenchTools, startBenchNginx,
  startGateProc, table, tmp, writeSuffixedSnippets, ROOT_KEY, SECS, WARMUP_SECS, startUpstream,
} from './lib.js';

const ROUTES = `lightning: { type: dev }
routes:
  - { match: /single, amount_msat: 1000 }
  - { match: /auto, amount_msat: 1000, auto_detect_payment: true }
`;

/** Microseconds per call of `fn`, over `n` calls after a warm-up of n/10. */
async function usEach(n: number, fn: () => unknown): Promise<number> {
  for (let i = 0; i < n / 10; i++) await fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return ((performance.now() - t0) * 1000) / n;
}

export async function runRenderCarry(): Promise<string[]> {
  const out: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'l402-bench-carry-'));
  const wallet = DevWallet.open(dir);
  const store = new SqliteStore(join(dir, 'state.db'));
  try {
    const cfg = parseConfig(`listen: 127.0.0.1:1\ndata_dir: ${dir}\nroot_key: ${ROOT_KEY}\n${ROUTES}`, { env: {} });
    const rootKeys = [parseRootKey(ROOT_KEY)];
    const gate = new Gate({ config: cfg, store, backend: wallet, rootKeys, log: createLogger('silent') });
    const headers = { accept: 'application/json', 'x-l402-scheme': 'http', 'x-l402-host': '127.0.0.1' };
    const request = (path: string, h: Record<string, string>) => ({ ...gate.requestFrom(path, 'GET', '127.0.0.1', h), uri: path, requestId: randomBytes(16).toString('hex') });

    // A macaroon for an unpaid auto-detect invoice: decide() says payment_pending and the render repeats the invoice.
    const first = await gate.render('challenge', 'no_credential', request('/auto', headers), headers);
    const mac = /macaroon="([^"]+)"/.exec(first.headers.find(([k]) => k === 'WWW-Authenticate')![1])![1]!;
    const pendingHeaders = { ...headers, authorization: `L402 ${mac}` };
    const pending = await gate.render('challenge', 'payment_pending', request('/auto', pendingHeaders), pendingHeaders);
    if (!pending.headers.some(([k, v]) => k === 'WWW-Authenticate' && v.includes(mac))) throw new Error('the pending render did not repeat the invoice');

    const n = 2_000;
    const renderChallenge = await usEach(n, () => gate.render('challenge', 'no_credential', request('/single', headers), headers));
    const renderPending = await usEach(n, () => gate.render('challenge', 'payment_pending', request('/auto', pendingHeaders), pendingHeaders));
    // What a carried decision could replace.
    const lookup = await usEach(n * 50, () => gate.routes.lookup('/single'));
    const reverify = await usEach(n * 10, () => {
      const parsed = parseCredential({ authorization: `L402 ${mac}` });
      if (parsed.kind !== 'l402') throw new Error('not parsed');
      const m = decodeMacaroon(parsed.credential.macaroon);
      const id = decodeIdentifier(m.identifier)!;
      return signedByTokenKey(m, id.tokenId, rootKeys);
    });
    // What carrying costs: the auth answer signs the decision for this request, the render checks it.
    const carryKey = createHmac('sha256', rootKeys[0]!).update('l402 render carry').digest();
    const reqId = randomBytes(16).toString('hex');
    const sign = () => {
      const exp = Math.floor(Date.now() / 1000) + 5;
      const tag = createHmac('sha256', carryKey).update(`${exp}\n${reqId}\nGET\n/single\nchallenge\nno_credential\n0`).digest('base64url');
      return `${exp}.challenge.no_credential.0.${tag}`;
    };
    const carried = sign();
    const signUs = await usEach(n * 10, sign);
    const verifyUs = await usEach(n * 10, () => {
      const [exp, outcome, reason, route, tag] = carried.split('.');
      if (Number(exp) < Date.now() / 1000) return false;
      const want = createHmac('sha256', carryKey).update(`${exp}\n${reqId}\nGET\n/single\n${outcome}\n${reason}\n${route}`).digest();
      const got = Buffer.from(tag!, 'base64url');
      return got.length === want.length && timingSafeEqual(got, want);
    });
    const carry = signUs + verifyUs;
    out.push(table('Render work a carried decision could skip, in-process, one core (us per request)', [
      { path: 'challenge (no credential)', 'render today': renderChallenge, 'skippable': lookup, 'carry costs (sign + check)': carry, 'net saving': lookup - carry, 'share of render': `${(((lookup - carry) / renderChallenge) * 100).toFixed(2)}%` },
      { path: 'auto-detect, not paid yet', 'render today': renderPending, 'skippable': lookup + reverify, 'carry costs (sign + check)': carry, 'net saving': lookup + reverify - carry, 'share of render': `${(((lookup + reverify - carry) / renderPending) * 100).toFixed(2)}%` },
    ]));
  } finally {
    await store.close();
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }

  // For scale: what one 402 costs end to end today (auth + render + nginx).
  requireBenchTools();
  const cleanup = new Cleanup();
  try {
    const sdir = tmp(cleanup, 'l402-bench-carry-nginx-');
    const app = await startUpstream(cleanup);
    const gate = await startGateProc(cleanup, `log: { level: info }\n${ROUTES}`, { name: 'l402d dev wallet' });
    const sn = writeSuffixedSnippets(gate.cfg, join(sdir, 'sn'), '');
    const port = await freePort();
    await startBenchNginx(cleanup, 1, `${appUpstream(app.port)}
      include ${sn}/upstream.conf;
      server { listen 127.0.0.1:${port}; access_log off; include ${sn}/server.conf; ${protectedLocation('/single', sn)} ${protectedLocation('/auto', sn)} }`);
    // An auto-detect macaroon whose invoice is not paid: every request is decided "payment_pending" and rendered.
    const first = await http1(`http://127.0.0.1:${port}/auto`, { headers: { accept: 'application/json' } });
    const pendingMac = (JSON.parse(first.body) as { macaroon: string }).macaroon;
    const busy = await machineBusy();
    out.push(`machine busy before the run ${(busy * 100).toFixed(0)}% (shared machine)`);
    console.log(out[out.length - 1]);
    const rows: Array<Record<string, string | number>> = [];
    for (const [label, path, auth] of [['challenge (no credential)', '/single', undefined], ['auto-detect, not paid yet', '/auto', `L402 ${pendingMac}`]] as const) {
      const r = await measure(`http://127.0.0.1:${port}${path}`, { connections: 32, countStatus: true, auth });
      const ok = (r.statuses['402'] ?? 0) / SECS;
      rows.push({ 'wrk -c32, dev wallet': label, '402/s': ok, 'us of machine per 402 (2 cores)': 2e6 / ok, 'p50 ms': r.p50, 'p99 ms': r.p99, 'other statuses': r.requests - (r.statuses['402'] ?? 0) });
    }
    out.push(table(`402s through nginx x1, today's code (${SECS}s after ${WARMUP_SECS}s warm-up)`, rows));
  } finally {
    await cleanup.run();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(machine());
  await runRenderCarry();
}
