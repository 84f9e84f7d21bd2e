// Prometheus metrics that add up across every l402d process sharing a store: each process counts
// locally and flushes deltas to the store once a second; a scrape renders the store's totals. ngx_l402's
// counter names, plus labels, plus two latency histograms. Process metrics come from prom-client.
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Store } from '../store/store.js';
import type { Logger } from '../util/log.js';
import type { Decision } from '../policy/decide.js';
import { runGuarded } from './process-policy.js';

type Labels = Record<string, string>;

const HELP: Record<string, [string, 'counter' | 'histogram']> = {
  l402_requests_total: ['Requests that reached a paid route', 'counter'],
  l402_challenges_issued_total: ['402 challenges (and 401s with a fresh challenge) sent', 'counter'],
  l402_payments_valid_total: ['Requests allowed with a valid payment', 'counter'],
  l402_payments_invalid_total: ['Requests refused for an invalid or used credential', 'counter'],
  l402_payments_missing_total: ['Requests without a payment credential', 'counter'],
  l402_payments_lightning_total: ['Requests allowed with a Lightning (L402) payment', 'counter'],
  l402_payments_cashu_total: ['Requests allowed with a Cashu payment', 'counter'],
  l402_revenue_msat_total: ['Revenue in msat, counted once per sale (a credential\'s first acceptance, or a Cashu payment), by route and rail', 'counter'],
  l402_sales_total: ['Sales (a credential\'s first acceptance, or a Cashu payment), by route and rail', 'counter'],
  l402_invoices_generated_total: ['Invoices created', 'counter'],
  l402_mpp_session_closes_total: ['MPP sessions closed by their client, by route and refund status (succeeded, failed, skipped)', 'counter'],
  l402_mpp_session_refunded_msat_total: ['msat refunded to MPP session clients on close (refunds that succeeded)', 'counter'],
  l402_invoices_generation_errors_total: ['Invoice creations that failed', 'counter'],
  l402_rate_limited_total: ['Requests refused by the invoice rate limit', 'counter'],
  l402_unavailable_total: ['Requests answered 503 (store or backend down)', 'counter'],
  l402_dry_run_requests_total: ['Requests on dry-run routes', 'counter'],
  l402_dry_run_would_block_total: ['Dry-run requests that enforcement would have refused', 'counter'],
  l402_dry_run_would_allow_total: ['Dry-run requests that enforcement would have allowed', 'counter'],
  l402_dry_run_rate_limited_total: ['Dry-run requests that would have been rate limited', 'counter'],
  l402_dry_run_challenge_errors_total: ['Dry-run challenges that could not be minted', 'counter'],
  l402_dry_run_price_msat_sum: ['Sum of prices of dry-run requests, msat', 'counter'],
  l402_decision_duration_seconds: ['Time to decide a request', 'histogram'],
  l402_backend_duration_seconds: ['Time of Lightning backend calls', 'histogram'],
};

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function series(name: string, labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length === 0 ? name : `${name}{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}`;
}

/** Series order: by name and labels, histogram buckets by numeric `le` (+Inf last), as Prometheus expects. */
function compareSeries(a: string, b: string): number {
  const le = /,?le="([^"]+)"/;
  const ka = a.replace(le, '');
  const kb = b.replace(le, '');
  if (ka !== kb) return ka < kb ? -1 : 1;
  const num = (s: string) => {
    const m = le.exec(s);
    return m ? (m[1] === '+Inf' ? Infinity : Number(m[1])) : -1;
  };
  return num(a) - num(b);
}

export class Metrics {
  private pending = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private readonly registry = new Registry();

  constructor(private readonly store: Store, private readonly log: Logger) {
    collectDefaultMetrics({ register: this.registry, labels: { pid: String(process.pid) } });
  }

  start(): void {
    this.timer = setInterval(() => runGuarded(this.log, 'metrics flush', () => this.flush()), 1000).unref();
  }

  inc(name: keyof typeof HELP, labels: Labels = {}, n = 1): void {
    const k = series(name, labels);
    this.pending.set(k, (this.pending.get(k) ?? 0) + n);
  }

  observe(name: 'l402_decision_duration_seconds' | 'l402_backend_duration_seconds', labels: Labels, seconds: number): void {
    for (const le of BUCKETS) if (seconds <= le) this.inc(name as never, { ...labels, le: String(le) }, 1);
    this.inc(name as never, { ...labels, le: '+Inf' }, 1);
    this.pending.set(series(`${name}_sum`, labels), (this.pending.get(series(`${name}_sum`, labels)) ?? 0) + seconds);
    this.pending.set(series(`${name}_count`, labels), (this.pending.get(series(`${name}_count`, labels)) ?? 0) + 1);
  }

  /** The counters and latency of one decision. */
  countDecision(d: Decision, seconds: number): void {
    const route = 'route' in d && d.route ? d.route.id : 'none';
    this.observe('l402_decision_duration_seconds', { outcome: d.outcome }, seconds);
    this.inc('l402_requests_total', { route });
    if (d.outcome === 'allow' && d.reason === 'dry_run') {
      const r = d.dryRun;
      this.inc('l402_dry_run_requests_total', { route });
      this.inc(r.wouldReturn === 200 ? 'l402_dry_run_would_allow_total' : 'l402_dry_run_would_block_total', { route });
      if (r.wouldReturn === 429) this.inc('l402_dry_run_rate_limited_total', { route });
      this.inc('l402_dry_run_price_msat_sum', { route }, d.route.amountMsat);
      return;
    }
    switch (d.outcome) {
      case 'allow':
        this.inc('l402_payments_valid_total', { route, rail: d.rail });
        this.inc(d.rail === 'cashu' ? 'l402_payments_cashu_total' : 'l402_payments_lightning_total', { route });
        break;
      case 'cashu_rejected':
        this.inc('l402_payments_invalid_total', { route, reason: 'cashu_rejected' });
        break;
      case 'challenge':
        this.inc('l402_payments_missing_total', { route });
        break;
      case 'invalid':
        this.inc('l402_payments_invalid_total', { route, reason: d.reason });
        break;
      case 'rate_limited':
        this.inc('l402_rate_limited_total', { route });
        break;
      case 'unavailable':
        this.inc('l402_unavailable_total', { route, reason: d.reason });
        break;
    }
  }

  /** Moves local deltas to the store; on failure they are kept (bounded) for the next try. */
  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.store.addCounters([...batch]);
    } catch (e) {
      if (this.pending.size + batch.size < 50_000) for (const [k, n] of batch) this.pending.set(k, (this.pending.get(k) ?? 0) + n);
      this.log.warn({ err: (e as Error).message }, 'metrics flush failed; will retry');
    }
  }

  async render(): Promise<string> {
    await this.flush();
    const rows = (await this.store.readCounters()).sort(([a], [b]) => compareSeries(a, b));
    const byFamily = new Map<string, string[]>();
    for (const [k, v] of rows) {
      const metric = k.split('{')[0]!;
      const family = metric.replace(/_(sum|count)$/, '') in HELP && HELP[metric.replace(/_(sum|count)$/, '')]![1] === 'histogram' ? metric.replace(/_(sum|count)$/, '') : metric;
      if (!(family in HELP)) continue;
      const line = HELP[family]![1] === 'histogram' && metric === family ? `${k.replace(family, `${family}_bucket`)} ${v}` : `${k} ${v}`;
      (byFamily.get(family) ?? byFamily.set(family, []).get(family)!).push(line);
    }
    let out = '';
    for (const [name, [help, type]] of Object.entries(HELP)) {
      out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
      const lines = byFamily.get(name);
      if (lines) out += lines.join('\n') + '\n';
      else if (type === 'counter') out += `${name} 0\n`;
    }
    return out + (await this.registry.metrics());
  }

  stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    return this.flush();
  }
}
