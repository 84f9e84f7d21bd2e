// The balance operations of the stores that run them in-process (memory; SQLite inside one immediate
// transaction), over a synchronous key-value view. Redis runs the same steps as Lua scripts (redis-store.ts).
// Keys: the balance itself at `key` (decimal msat), its credit marks at `key:credit:<id>`, its draws at
// `key:draw:<id>` (value `<msat>|<owner>`).

export interface SyncKv {
  get(key: string): string | undefined;
  /** `ttlSecs` undefined: no expiry. */
  set(key: string, value: string, ttlSecs?: number): void;
  /** Sets the value of a live key, its expiry unchanged. */
  update(key: string, value: string): void;
  del(key: string): void;
}

export const creditMark = (key: string, creditId: string) => `${key}:credit:${creditId}`;
export const drawMark = (key: string, drawId: string) => `${key}:draw:${drawId}`;

const msat = (v: string | undefined) => (v === undefined ? 0 : Number(v) || 0);

export function creditSync(kv: SyncKv, key: string, amountMsat: number, creditId: string, ttlSecs?: number): { credited: boolean; balanceMsat: number } {
  const now = msat(kv.get(key));
  if (kv.get(creditMark(key, creditId)) !== undefined) return { credited: false, balanceMsat: now };
  const next = now + amountMsat;
  kv.set(key, String(next), ttlSecs);
  kv.set(creditMark(key, creditId), String(amountMsat), ttlSecs);
  return { credited: true, balanceMsat: next };
}

export function drawSync(kv: SyncKv, key: string, amountMsat: number, drawId: string, owner: string, holdSecs: number): { ok: boolean; balanceMsat: number } {
  const now = msat(kv.get(key));
  const mark = kv.get(drawMark(key, drawId));
  if (mark !== undefined) {
    const had = msat(mark.split('|')[0]);
    if (amountMsat <= had) {
      kv.set(drawMark(key, drawId), `${had}|${owner}`, holdSecs);
      return { ok: true, balanceMsat: now };
    }
    // The same request at a higher price (an internal redirect to a dearer route of the plan): the difference.
    const more = amountMsat - had;
    if (now < more) {
      // Not served at that price: what it drew before goes back with the record.
      kv.del(drawMark(key, drawId));
      if (kv.get(key) === undefined) return { ok: false, balanceMsat: 0 };
      kv.update(key, String(now + had));
      return { ok: false, balanceMsat: now + had };
    }
    kv.update(key, String(now - more));
    kv.set(drawMark(key, drawId), `${amountMsat}|${owner}`, holdSecs);
    return { ok: true, balanceMsat: now - more };
  }
  if (now < amountMsat) return { ok: false, balanceMsat: now };
  kv.update(key, String(now - amountMsat));
  kv.set(drawMark(key, drawId), `${amountMsat}|${owner}`, holdSecs);
  return { ok: true, balanceMsat: now - amountMsat };
}

export function refundSync(kv: SyncKv, key: string, drawId: string, owner: string | undefined): { refunded: boolean; balanceMsat: number } {
  const now = msat(kv.get(key));
  const mark = kv.get(drawMark(key, drawId));
  if (mark === undefined) return { refunded: false, balanceMsat: now };
  const bar = mark.indexOf('|');
  if (owner !== undefined && mark.slice(bar + 1) !== owner) return { refunded: false, balanceMsat: now };
  kv.del(drawMark(key, drawId));
  // A balance that expired meanwhile is not brought back.
  if (kv.get(key) === undefined) return { refunded: false, balanceMsat: 0 };
  const next = now + msat(mark.slice(0, bar));
  kv.update(key, String(next));
  return { refunded: true, balanceMsat: next };
}
