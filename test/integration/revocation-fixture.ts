// Shared by the revocation tests: the l402d command line, buying a credential through nginx, and one revocation
// checked against both bounds (every l402d process within a second; nginx's auth cache within max_secs).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { sleep } from '../../src/util/timeout.js';
import { http1, waitFor } from './harness.js';
import { l402dArgs } from './gate-process.js';
import type { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { decodeMacaroonBase64 } from '../../src/protocol/macaroon.js';
import { decodeIdentifier } from '../../src/protocol/identifier.js';
import type { Ledger } from '../../src/store/ledger.js';

/** nginx reuses a "paid" answer at most this long (the config under test). */
export const CACHE_SECS = 4;
/** Every l402d process refuses a revoked credential this soon after the command returns. */
export const REVOKE_BOUND_MS = 1000;


/** Runs the l402d command line (async: the gates keep serving meanwhile). */
export function l402d(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, l402dArgs(...args), { env: { ...process.env, L402_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function buy(origin: string, wallet: DevWallet, path: string) {
  const r = await http1(origin + path, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 402, r.body);
  const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
  const id = decodeIdentifier(decodeMacaroonBase64(b.macaroon).identifier)!;
  return { auth: `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`, macaroon: b.macaroon, tokenId: id.tokenId.toString('hex'), paymentHash: id.paymentHash.toString('hex') };
}

export function get(origin: string, path: string, auth: string) {
  return http1(origin + path, { headers: { authorization: auth, accept: 'application/json' } });
}

export async function revokeAndCheck(o: { origin: string; config: string; env: NodeJS.ProcessEnv; wallet: DevWallet; up: { hits: number }; form: 'token id' | 'payment hash' | 'macaroon'; ledger: Ledger; first: boolean }) {
  const { origin, wallet } = o;
  const c = await buy(origin, wallet, '/forever');
  const bystander = await buy(origin, wallet, '/forever');
  // Used through both processes (nginx spreads requests), and kept in nginx's auth cache under this key.
  for (let i = 0; i < 4; i++) assert.equal((await get(origin, '/forever', c.auth)).status, 200);
  assert.equal((await get(origin, '/forever', bystander.auth)).status, 200);
  // The sale is recorded once, whichever process saw it first (read from the store as the CLI does).
  await waitFor('the sale recorded', async () => (await o.ledger.findSale(c.tokenId)) !== undefined, { timeoutMs: 15_000, intervalMs: 100 });
  if (o.first) {
    const list = await l402d(['token', 'list', '--json', '--config', o.config], o.env);
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as Array<{ id: string; paymentHash: string; route: string; amountMsat: number; revoked: boolean }>;
    assert.deepEqual(rows.filter((x) => x.id === c.tokenId).map((x) => [x.paymentHash, x.route, x.amountMsat, x.revoked]), [[c.paymentHash, '/forever', 2000, false]]);
    assert.ok(!list.stdout.includes(c.macaroon) && !list.stdout.includes(c.auth.split(':')[1]!), 'no macaroon or preimage in token list');
  }
  const arg = o.form === 'token id' ? c.tokenId : o.form === 'payment hash' ? c.paymentHash : c.macaroon;
  // The cached key is used all along, so nginx holds a fresh "paid" answer for it when the revocation lands.
  const cached: Array<{ sent: number; status: number }> = [];
  let stop = false;
  const hammer = (async () => {
    while (!stop) {
      const sent = Date.now();
      cached.push({ sent, status: (await get(origin, '/forever', c.auth)).status });
      await sleep(50);
    }
  })();
  const r = await l402d(['token', 'revoke', arg, '--config', o.config], o.env);
  const revokedAt = Date.now();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^revoked: ${c.tokenId} \\(route /forever, first used `));
  assert.match(r.stdout, new RegExp(`cached answer for up to nginx_cache.max_secs \\(${CACHE_SECS} s\\)`));
  assert.ok(!r.stdout.includes(c.macaroon) && !r.stderr.includes(c.macaroon), 'the macaroon is not echoed');
  // Past the processes' bound: requests nginx has not cached (another URI of the route) reach l402d, and
  // every process refuses them (several requests, spread over both processes and nginx's two workers).
  await sleep(Math.max(0, revokedAt + REVOKE_BOUND_MS + 50 - Date.now()));
  for (let i = 0; i < 8; i++) {
    const x = await get(origin, `/forever?fresh=${o.form.replace(' ', '-')}-${i}`, c.auth);
    assert.equal(x.status, 401, `${o.form}, fresh key ${i}: ${x.status} ${x.body}`);
    const body = JSON.parse(x.body) as { reason: string; type: string; detail: string; macaroon?: string };
    assert.equal(body.reason, 'revoked');
    assert.equal(body.type, 'urn:l402:problem:revoked');
    assert.match(body.detail, /revoked/);
    // A fresh challenge comes with it: the client can buy again.
    assert.match(String(x.headers['www-authenticate']), /^L402 macaroon="/);
  }
  // Past nginx's bound too: the answer it cached before the revocation is gone.
  await sleep(Math.max(0, revokedAt + CACHE_SECS * 1000 + 300 - Date.now()));
  stop = true;
  await hammer;
  const hits = o.up.hits;
  assert.ok(cached.some((x) => x.sent < revokedAt && x.status === 200), 'the credential was in use up to the revocation');
  const late = cached.filter((x) => x.sent > revokedAt + CACHE_SECS * 1000 && x.status !== 401);
  assert.deepEqual(late, [], `${o.form}: nginx served the revoked credential longer than nginx_cache.max_secs`);
  for (let i = 0; i < 4; i++) assert.equal((await get(origin, '/forever', c.auth)).status, 401, `${o.form}: nginx's cached answer outlived nginx_cache.max_secs`);
  assert.equal(o.up.hits, hits, 'nothing reached the upstream with the revoked credential');
  // Nobody else is affected.
  assert.equal((await get(origin, '/forever', bystander.auth)).status, 200);
  assert.equal((await get(origin, `/forever?other=${o.form.replace(' ', '-')}`, bystander.auth)).status, 200);
  if (!o.first) return;
  const show = await l402d(['token', 'show', c.paymentHash, '--json', '--config', o.config], o.env);
  assert.equal(show.code, 0, show.stderr);
  const shown = JSON.parse(show.stdout) as { sale: { id: string; route: string; amountMsat: number }; revoked: { value: string } | null };
  assert.equal(shown.sale.id, c.tokenId);
  assert.equal(shown.sale.amountMsat, 2000);
  // Stored by payment hash: it refuses every scheme that presents the payment (the macaroon, the cookie, MPP).
  assert.equal(shown.revoked?.value, c.paymentHash);
  const again = await l402d(['token', 'revoke', c.tokenId, '--config', o.config], o.env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^already revoked: /);
}
