// What the operator console shows, as JSON: earnings over time by route and by rail, the latest payments and
// revocations, from the store's ledger (so `l402d stats` and every l402d process show the same numbers).
// Credentials are named by a short prefix of their token id only: never a token id, macaroon or preimage whole.
import { EARNINGS_BUCKET_MS, retentionStart, revocationLive, saleCredential, type EarningsRow, type Ledger, type Revocation, type Sale } from '../store/ledger.js';
import { storeKeys } from '../policy/store-keys.js';

export const HOURS = 24;
export const DAYS = 30;
const DAY_MS = 86_400_000;
/** Characters of a token id (or payment hash) the console shows: enough to tell credentials apart, never the whole. */
export const ID_PREFIX = 12;

export interface Series {
  /** Unix ms at the bucket's start, oldest first. */
  starts: number[];
  /** Per route (or rail): msat per bucket, in the order of `starts`. */
  by: Record<string, number[]>;
}

export interface ConsoleData {
  generated_at: string;
  unit: 'msat';
  totals: {
    /** Over the retained earnings (SALES_RETENTION_DAYS). */
    since: string;
    msat: number;
    sales: number;
    by_route: Array<{ route: string; msat: number; sales: number }>;
    by_rail: Array<{ rail: string; msat: number; sales: number }>;
  };
  last_24h: { msat: number; sales: number; by_route: Series; by_rail: Series };
  last_30d: { msat: number; sales: number; by_route: Series; by_rail: Series };
  latest_payments: Array<{ at: string; route: string; rail: string; amount_msat: number; access?: string; credential: string; revoked: boolean }>;
  revocations: { count: number; latest: Array<{ at: string; credential: string; until?: string }> };
  /**
   * Prepaid balances (access: balance) with credit left, among the credentials of the latest BALANCE_SCAN sales:
   * what each has left now (read from the store) and what was credited to it.
   */
  balances: { supported: boolean; open: Array<{ credential: string; route: string; balance_msat: number; credited_msat: number; since: string; revoked: boolean }> };
  backend?: { kind: string; description: string; ok: boolean; detail: string; checked_at: string };
  store?: { kind: string; ok: boolean; detail?: string };
}

/** A short, non-secret name for a credential: its kind and the first characters of its id. */
export function credentialLabel(id: string): string {
  if (id.startsWith('cashu:')) return 'cashu';
  const ngx = /^ngx_l402:([0-9a-f]+)$/.exec(id);
  if (ngx) return `ngx_l402:${ngx[1]!.slice(0, ID_PREFIX)}…`;
  return `${id.slice(0, ID_PREFIX)}…`;
}

function series(rows: EarningsRow[], starts: number[], width: number, key: 'route' | 'rail'): Series {
  const by: Record<string, number[]> = {};
  for (const r of rows) {
    const i = starts.findIndex((s) => r.bucket >= s && r.bucket < s + width);
    if (i < 0) continue;
    (by[r[key]] ??= starts.map(() => 0))[i]! += r.msat;
  }
  return { starts, by };
}

function window(rows: EarningsRow[], count: number, width: number, now: number) {
  const last = now - (now % width);
  const starts = Array.from({ length: count }, (_, i) => last - (count - 1 - i) * width);
  const inside = rows.filter((r) => r.bucket >= starts[0]!);
  return {
    msat: inside.reduce((a, r) => a + r.msat, 0),
    sales: inside.reduce((a, r) => a + r.sales, 0),
    by_route: series(inside, starts, width, 'route'),
    by_rail: series(inside, starts, width, 'rail'),
  };
}

function group<K extends 'route' | 'rail'>(rows: EarningsRow[], key: K): Array<Record<K, string> & { msat: number; sales: number }> {
  const m = new Map<string, { msat: number; sales: number }>();
  for (const r of rows) {
    const e = m.get(r[key]) ?? { msat: 0, sales: 0 };
    e.msat += r.msat;
    e.sales += r.sales;
    m.set(r[key], e);
  }
  return [...m].sort((a, b) => b[1].msat - a[1].msat || (a[0] < b[0] ? -1 : 1)).map(([k, v]) => ({ [key]: k, ...v }) as Record<K, string> & { msat: number; sales: number });
}

/** How many of the latest sales the open-balances section looks through. */
export const BALANCE_SCAN = 1000;
/** At most this many open balances are listed (the largest first). */
export const BALANCES_SHOWN = 50;

/**
 * What is left on the balance a sale's credential names: an L402 balance credential's (by token id) or an MPP
 * session's (by session id: its sales are recorded under it). Both are 32 random bytes, so an id is one or the
 * other; a closed session's balance is drained (0: not listed).
 */
export function balanceLeft(store: { getBalance(key: string): Promise<number> }): (id: string) => Promise<number> {
  return async (id) => {
    const [l402, session] = await Promise.all([store.getBalance(storeKeys.balance(id)), store.getBalance(storeKeys.mppSessionBalance(id))]);
    return l402 + session;
  };
}

/** The balance a sale credited: its credential's token id (top-ups are recorded as `<token id>:<kind>:<id>`). */
function balanceOwner(s: Sale): string | undefined {
  return s.access === 'balance' && /^[0-9a-f]{64}$/.test(saleCredential(s)) ? saleCredential(s) : undefined;
}

async function openBalances(sales: Sale[], balanceOf: (tokenId: string) => Promise<number>, isRevoked: (s: Sale) => boolean): Promise<ConsoleData['balances']['open']> {
  const byToken = new Map<string, { route: string; credited: number; since: number; revoked: boolean }>();
  for (const s of sales) {
    const t = balanceOwner(s);
    if (t === undefined) continue;
    const e = byToken.get(t) ?? { route: s.route, credited: 0, since: s.at, revoked: false };
    e.credited += s.amountMsat;
    e.since = Math.min(e.since, s.at);
    if (s.id === t) e.revoked = isRevoked(s);
    byToken.set(t, e);
  }
  const rows = await Promise.all([...byToken].map(async ([t, e]) => ({ t, e, left: await balanceOf(t) })));
  return rows
    .filter((r) => r.left > 0)
    .sort((a, b) => b.left - a.left || (a.t < b.t ? -1 : 1))
    .slice(0, BALANCES_SHOWN)
    .map((r) => ({ credential: credentialLabel(r.t), route: r.e.route, balance_msat: r.left, credited_msat: r.e.credited, since: new Date(r.e.since).toISOString(), revoked: r.e.revoked }));
}

export async function consoleData(ledger: Ledger, o: { payments?: number; now?: number; balanceOf?: (tokenId: string) => Promise<number> } = {}): Promise<ConsoleData> {
  const now = o.now ?? Date.now();
  const since = retentionStart(now);
  const [rows, sales, revoked, scanned] = await Promise.all([ledger.earnings(since), ledger.recentSales(o.payments ?? 20), ledger.revocations(), o.balanceOf ? ledger.recentSales(BALANCE_SCAN) : Promise.resolve([])]);
  const live: Revocation[] = revoked.list.filter((r) => revocationLive(r, now));
  const revokedValues = new Set(live.map((r) => r.value));
  const isRevoked = (s: Sale) => revokedValues.has(saleCredential(s)) || (s.paymentHash !== undefined && revokedValues.has(s.paymentHash));
  return {
    generated_at: new Date(now).toISOString(),
    unit: 'msat',
    totals: {
      since: new Date(since).toISOString(),
      msat: rows.reduce((a, r) => a + r.msat, 0),
      sales: rows.reduce((a, r) => a + r.sales, 0),
      by_route: group(rows, 'route'),
      by_rail: group(rows, 'rail'),
    },
    last_24h: window(rows, HOURS, EARNINGS_BUCKET_MS, now),
    // UTC days: hourly rows fold into them exactly (an hour divides a day).
    last_30d: window(rows, DAYS, DAY_MS, now),
    latest_payments: sales.map((s) => ({
      at: new Date(s.at).toISOString(),
      route: s.route,
      rail: s.rail,
      amount_msat: s.amountMsat,
      ...(s.access ? { access: s.access } : {}),
      credential: credentialLabel(s.id),
      revoked: (s.rail === 'lightning' || s.access === 'balance') && isRevoked(s),
    })),
    revocations: {
      count: live.length,
      latest: live.slice(0, 20).map((r) => ({ at: new Date(r.at).toISOString(), credential: credentialLabel(r.value), ...(r.until !== undefined ? { until: new Date(r.until * 1000).toISOString() } : {}) })),
    },
    balances: { supported: o.balanceOf !== undefined, open: o.balanceOf ? await openBalances(scanned, o.balanceOf, isRevoked) : [] },
  };
}
