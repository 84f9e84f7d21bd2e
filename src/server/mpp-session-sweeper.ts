// The server-initiated close of idle MPP sessions (draft-lightning-session-00, "Server-Initiated Close"): each
// l402d process watches the sessions it opened or served, and closes those idle for their route's
// session_idle_secs exactly as a client's close (marked closing first, the unspent part refunded once). Bounded:
// at most MAX_WATCHED sessions (the oldest forgotten first). On start it also watches the sessions among the
// latest SCAN_SALES sales (each session's open is a sale under its id), so a restart or reload forgets none
// of those; an older one is closed, with its refund, when its client next presents it (the render calls
// expireSession then). A session this process used is not looked up again before its idle timeout can have
// passed since that use: a pass reads only the sessions that may be idle, not every one it watches.
import type { RouteConfig } from '../policy/route-config.js';
import { expireSession, type SessionLedgerDeps } from '../policy/mpp-session-ledger.js';

const MAX_WATCHED = 100_000;
/** How many of the latest sales the start-up scan looks through for sessions to watch. */
export const SCAN_SALES = 1000;

export class SessionSweeper {
  /** Session id -> its route and the earliest time (ms) it can be idle as far as this process knows. */
  private readonly watched = new Map<string, { route: RouteConfig; notBefore: number }>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly ledgerFor: (route: RouteConfig) => SessionLedgerDeps,
    /** Told of each server-initiated close (for the log and metrics). */
    private readonly onClosed: (sessionId: string, route: RouteConfig, r: { refundSats: number; refundStatus: string }) => void,
    private readonly onError: (e: Error) => void,
  ) {}

  /** How often to look: a quarter of the shortest idle timeout, between 1 and 30 seconds. */
  static intervalMs(routes: readonly RouteConfig[]): number | undefined {
    const idle = routes.map((r) => r.sessionIdleSecs ?? 0).filter((s) => s > 0);
    if (idle.length === 0) return undefined;
    return Math.min(30_000, Math.max(1000, Math.floor((Math.min(...idle) * 1000) / 4)));
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.sweep().catch((e: unknown) => this.onError(e instanceof Error ? e : new Error(String(e)))), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Watches the sessions among recent sales (`{ id, route }`, the route by id): a sale whose id is not a
   * session's is dropped by the first sweep (expireSession finds no open session for it).
   */
  watchSales(sales: ReadonlyArray<{ id: string; route: string; access?: string }>, routes: readonly RouteConfig[]): void {
    for (const sale of sales) {
      if (sale.access !== 'balance' || !/^[0-9a-f]{64}$/.test(sale.id)) continue;
      const route = routes.find((r) => r.id === sale.route);
      // Not used here yet: looked up by the next pass (it may have been idle for long).
      if (route?.sessionIdleSecs) this.add(sale.id, route, 0);
    }
  }

  /** The session was used (opened, drawn on, topped up) by this process now. */
  watch(sessionId: string, route: RouteConfig): void {
    if (route.sessionIdleSecs) this.add(sessionId, route, Date.now() + route.sessionIdleSecs * 1000);
  }

  private add(id: string, route: RouteConfig, notBefore: number): void {
    this.watched.delete(id);
    if (this.watched.size >= MAX_WATCHED) this.watched.delete(this.watched.keys().next().value!);
    this.watched.set(id, { route, notBefore });
  }

  /** One pass: each watched session that is idle is closed (once, whichever process gets there first). */
  async sweep(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const now = Date.now();
      for (const [id, { route, notBefore }] of [...this.watched]) {
        if (notBefore > now) continue;
        try {
          const r = await expireSession(this.ledgerFor(route), id);
          if (r === 'active') continue;
          this.watched.delete(id);
          if (r !== 'not_open') this.onClosed(id, route, r);
        } catch (e) {
          this.onError(e as Error);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
