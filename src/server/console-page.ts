// The operator console as one HTML page: charts drawn here as inline SVG, no script at all, one inline
// stylesheet allowed by its hash (CSP), light and dark colours by prefers-color-scheme. Everything it shows
// comes from ConsoleData (the same JSON /console.json serves); every text is escaped.
import { createHash } from 'node:crypto';
import type { ConsoleData, Series } from './console-data.js';
import { escapeHtml } from './payment-page.js';

const PALETTE = 8;

const CSS = `
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1d21; --muted: #55595f; --line: #d5d8dc; --card: #f4f5f7;
  --ok: #17663a; --bad: #a3161b;
  --c0: #1f6fd1; --c1: #d1621f; --c2: #2e8b3e; --c3: #8a3fc2; --c4: #b8326f; --c5: #11807f; --c6: #7a6a14; --c7: #5b6270; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #121417; --fg: #e9ebee; --muted: #a9aeb5; --line: #3a3f46; --card: #1d2126;
    --ok: #6fd59a; --bad: #ff8a8f;
    --c0: #6aa8ff; --c1: #ff9d5c; --c2: #6cd07c; --c3: #c792ff; --c4: #ff7eb6; --c5: #4fd1cf; --c6: #e0cd5a; --c7: #b3bac5; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header, main { max-width: 1040px; margin: 0 auto; padding: 16px 20px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1rem; margin: 16px 0 6px; }
p.meta, .muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 180px; }
.card .n { font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, monospace; }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 14px; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { fill: var(--muted); font-size: 11px; }
svg.chart line { stroke: var(--line); }
ul.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.9rem; }
ul.legend svg { width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px; }
${Array.from({ length: PALETTE }, (_, i) => `.c${i} { fill: var(--c${i}); }`).join('\n')}
`;

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** No script of any kind; the one inline stylesheet by its hash; nothing loaded from anywhere. */
export const CONSOLE_CSP = ["default-src 'none'", `style-src ${cspHash(CSS)}`, "img-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"].join('; ');

export const CONSOLE_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['Content-Type', 'text/html; charset=utf-8'],
  ['Content-Security-Policy', CONSOLE_CSP],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cache-Control', 'no-store'],
];

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function msatCell(n: number): string {
  return `<td class="num" data-msat="${Math.round(n)}">${fmt(n)}</td>`;
}

/** Series names in a stable order (largest first), each with its palette class. */
function order(s: Series): Array<[string, number[], string]> {
  return Object.entries(s.by)
    .sort((a, b) => b[1].reduce((x, y) => x + y, 0) - a[1].reduce((x, y) => x + y, 0) || (a[0] < b[0] ? -1 : 1))
    .map(([k, v], i) => [k, v, `c${i % PALETTE}`]);
}

/** A stacked bar chart of msat per bucket, drawn as SVG. */
export function barChart(s: Series, caption: string, label: (start: number) => string): string {
  const W = 640;
  const H = 200;
  const left = 70;
  const bottom = 22;
  const top = 10;
  const plotH = H - top - bottom;
  const n = s.starts.length;
  const bw = (W - left - 8) / Math.max(1, n);
  const rows = order(s);
  const sums = s.starts.map((_, i) => rows.reduce((a, [, v]) => a + (v[i] ?? 0), 0));
  const max = Math.max(1, ...sums);
  const parts: string[] = [];
  parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${W - 4}" y2="${top + plotH}"/>`, `<line x1="${left}" y1="${top}" x2="${W - 4}" y2="${top}"/>`);
  parts.push(`<text x="${left - 6}" y="${top + 4}" text-anchor="end">${fmt(max)}</text>`, `<text x="${left - 6}" y="${top + plotH}" text-anchor="end">0</text>`);
  s.starts.forEach((start, i) => {
    let y = top + plotH;
    for (const [name, v, cls] of rows) {
      const value = v[i] ?? 0;
      if (value <= 0) continue;
      const h = Math.max(1, (value / max) * plotH);
      y -= h;
      parts.push(`<rect class="${cls}" x="${(left + i * bw + bw * 0.1).toFixed(1)}" y="${y.toFixed(1)}" width="${(bw * 0.8).toFixed(1)}" height="${h.toFixed(1)}"><title>${escapeHtml(`${name}: ${fmt(value)} msat, ${label(start)}`)}</title></rect>`);
    }
  });
  for (const i of n > 0 ? [0, Math.floor((n - 1) / 2), n - 1] : []) {
    const anchor = i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle';
    const x = i === 0 ? left + i * bw : i === n - 1 ? left + (i + 1) * bw : left + i * bw + bw / 2;
    parts.push(`<text x="${x.toFixed(1)}" y="${H - 6}" text-anchor="${anchor}">${escapeHtml(label(s.starts[i]!))}</text>`);
  }
  const legend = rows.length
    ? `<ul class="legend">${rows.map(([name, v, cls]) => `<li><svg viewBox="0 0 12 12" aria-hidden="true"><rect class="${cls}" width="12" height="12"/></svg>${escapeHtml(name)}: ${fmt(v.reduce((a, b) => a + b, 0))} msat</li>`).join('')}</ul>`
    : '<p class="muted">No sales in this period.</p>';
  return `<figure><figcaption>${escapeHtml(caption)}</figcaption><svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(caption)}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>${legend}</figure>`;
}

const hourLabel = (t: number) => `${new Date(t).toISOString().slice(11, 16)} UTC`;
const dayLabel = (t: number) => new Date(t).toISOString().slice(5, 10);

export function consolePage(d: ConsoleData, o: { service: string }): string {
  const totalsTable = (kind: 'route' | 'rail', rows: Array<{ msat: number; sales: number } & Record<string, unknown>>) =>
    `<table id="by-${kind}"><thead><tr><th>${kind === 'route' ? 'Route' : 'Rail'}</th><th class="num">Sales</th><th class="num">Earned (msat)</th></tr></thead><tbody>${
      rows.length ? rows.map((r) => `<tr><td>${escapeHtml(String(r[kind]))}</td><td class="num">${fmt(r.sales)}</td>${msatCell(r.msat)}</tr>`).join('') : '<tr><td colspan="3" class="muted">No sales yet.</td></tr>'
    }</tbody></table>`;
  const payments = d.latest_payments.length
    ? `<table id="payments-table"><thead><tr><th>Time (UTC)</th><th>Route</th><th>Rail</th><th>Access</th><th>Credential</th><th class="num">Amount (msat)</th><th>State</th></tr></thead><tbody>${d.latest_payments
        .map(
          (p) =>
            `<tr><td>${escapeHtml(p.at.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(p.route)}</td><td>${escapeHtml(p.rail)}</td><td>${escapeHtml(p.access ?? '')}</td><td><code>${escapeHtml(p.credential)}</code></td>${msatCell(p.amount_msat)}<td>${p.revoked ? '<span class="bad">revoked</span>' : ''}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p class="muted">No payments yet.</p>';
  const revocations = d.revocations.count
    ? `<table id="revocations-table"><thead><tr><th>Revoked (UTC)</th><th>Credential</th><th>Kept until</th></tr></thead><tbody>${d.revocations.latest
        .map((r) => `<tr><td>${escapeHtml(r.at.replace('T', ' ').slice(0, 19))}</td><td><code>${escapeHtml(r.credential)}</code></td><td>${escapeHtml(r.until ? r.until.replace('T', ' ').slice(0, 19) : 'for ever')}</td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="muted">No credential is revoked.</p>';
  const balances = d.balances.open.length
    ? `<table id="balances-table"><thead><tr><th>Credential</th><th>Route</th><th class="num">Left (msat)</th><th class="num">Credited (msat)</th><th>Since (UTC)</th><th>State</th></tr></thead><tbody>${d.balances.open
        .map((x) => `<tr><td><code>${escapeHtml(x.credential)}</code></td><td>${escapeHtml(x.route)}</td>${msatCell(x.balance_msat)}${msatCell(x.credited_msat)}<td>${escapeHtml(x.since.replace('T', ' ').slice(0, 19))}</td><td>${x.revoked ? '<span class="bad">revoked</span>' : ''}</td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="muted">No prepaid balance has credit left.</p>';
  const b = d.backend;
  const health = `<table id="health-table"><tbody>${
    b ? `<tr><th>Lightning backend</th><td>${escapeHtml(b.kind)} <span class="muted">${escapeHtml(b.description)}</span></td><td class="${b.ok ? 'ok' : 'bad'}">${b.ok ? 'ok' : 'not usable'}</td><td>${escapeHtml(b.detail)}</td></tr>` : ''
  }${d.store ? `<tr><th>Store</th><td>${escapeHtml(d.store.kind)}</td><td class="${d.store.ok ? 'ok' : 'bad'}">${d.store.ok ? 'ok' : 'not reachable'}</td><td>${escapeHtml(d.store.detail ?? '')}</td></tr>` : ''}</tbody></table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark"><meta http-equiv="refresh" content="60">
<title>l402d console: ${escapeHtml(o.service)}</title><style>${CSS}</style></head>
<body><header><h1>l402d console</h1><p class="meta">Service <code>${escapeHtml(o.service)}</code>, generated ${escapeHtml(d.generated_at.replace('T', ' ').slice(0, 19))} UTC. Amounts in msat (1 sat = 1,000 msat). The same data: <code>/console.json</code>, <code>l402d stats</code>.</p></header>
<main>
<section id="earnings"><h2>Earnings</h2>
<div class="cards"><div class="card" id="total-all"><div class="muted">Since ${escapeHtml(d.totals.since.slice(0, 10))}</div><div class="n" data-msat="${d.totals.msat}">${fmt(d.totals.msat)}</div><div class="muted">${fmt(d.totals.sales)} sales</div></div>
<div class="card" id="total-24h"><div class="muted">Last 24 hours</div><div class="n" data-msat="${d.last_24h.msat}">${fmt(d.last_24h.msat)}</div><div class="muted">${fmt(d.last_24h.sales)} sales</div></div>
<div class="card" id="total-30d"><div class="muted">Last 30 days</div><div class="n" data-msat="${d.last_30d.msat}">${fmt(d.last_30d.msat)}</div><div class="muted">${fmt(d.last_30d.sales)} sales</div></div></div>
<h3>By route</h3>${totalsTable('route', d.totals.by_route)}
<h3>By rail</h3>${totalsTable('rail', d.totals.by_rail)}
</section>
<section id="over-time"><h2>Earnings over time</h2><div class="charts">
${barChart(d.last_24h.by_route, 'Last 24 hours by route (msat per hour)', hourLabel)}
${barChart(d.last_24h.by_rail, 'Last 24 hours by rail (msat per hour)', hourLabel)}
${barChart(d.last_30d.by_route, 'Last 30 days by route (msat per day)', dayLabel)}
${barChart(d.last_30d.by_rail, 'Last 30 days by rail (msat per day)', dayLabel)}
</div></section>
<section id="payments"><h2>Latest payments</h2>${payments}</section>
<section id="revocations"><h2>Revocations</h2><p class="muted">${fmt(d.revocations.count)} in force. Revoke with <code>l402d token revoke</code>.</p>${revocations}</section>
<section id="health"><h2>Backend health</h2>${health}</section>
<section id="balances"><h2>Open balances</h2>${balances}</section>
</main></body></html>
`;
}
