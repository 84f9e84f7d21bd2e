// Invoice rate limits in ngx_l402's syntax ("2r/m", "10r/s", "100r/h", bare "5" = per minute), counted per
// trusted client address and route in a fixed window, only on requests that would mint an invoice.
import { isIP } from 'node:net';

export interface RateLimit {
  max: number;
  windowSecs: number;
}

const WINDOWS: Record<string, number> = { s: 1, m: 60, h: 3600 };

export function parseRateLimit(text: string): RateLimit {
  const m = /^\s*(\d{1,9})\s*(?:r\s*\/\s*([smh]))?\s*$/i.exec(text);
  if (!m || Number(m[1]) < 1) throw new Error('expected <N>r/s, <N>r/m, <N>r/h or <N> (per minute), N >= 1');
  return { max: Number(m[1]), windowSecs: WINDOWS[(m[2] ?? 'm').toLowerCase()]! };
}

/** A CIDR list; entries like "10.0.0.0/8", "::1/128" or a bare address. */
export class AddressSet {
  private readonly v4: Array<[number, number]> = [];
  private readonly v6: Array<[bigint, bigint]> = [];

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [addr, bitsText] = c.split('/');
      const kind = isIP(addr ?? '');
      if (!kind) throw new Error(`not an IP address or CIDR: ${c}`);
      const max = kind === 4 ? 32 : 128;
      const bits = bitsText === undefined ? max : Number(bitsText);
      if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`bad prefix length in ${c}`);
      if (kind === 4) {
        const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
        this.v4.push([(v4(addr!) & mask) >>> 0, mask]);
      } else {
        const mask = bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
        this.v6.push([v6(addr!) & mask, mask]);
      }
    }
  }

  has(addr: string): boolean {
    const a = addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
    const kind = isIP(a);
    if (kind === 4) return this.v4.some(([net, mask]) => ((v4(a) & mask) >>> 0) === net);
    if (kind === 6) return this.v6.some(([net, mask]) => (v6(a) & mask) === net);
    return false;
  }
}

function v4(a: string): number {
  return a.split('.').reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
}

function v6(a: string): bigint {
  const [head = '', tail] = a.split('::');
  const parse = (s: string) => (s ? s.split(':') : []).flatMap((g) => (g.includes('.') ? [(v4(g) >>> 16).toString(16), (v4(g) & 0xffff).toString(16)] : [g]));
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16) || 0), 0n);
}

/**
 * The rate-limit bucket for a client address. One IPv6 subscriber is handed a whole /64 (and picks new
 * addresses in it at will, RFC 8981), so IPv6 counts per /64 ("2001:db8:1:2::/64"); IPv4, and IPv4-mapped
 * IPv6 (::ffff:a.b.c.d) as IPv4, count per address. Anything that is not an IP address is kept as it is.
 */
export function rateLimitBucket(addr: string): string {
  const a = addr.replace(/%[^%]*$/, ''); // a zone index (fe80::1%eth0) is local to this host
  const kind = isIP(a);
  if (kind === 4) return a;
  if (kind !== 6) return addr;
  const n = v6(a);
  if (n >> 32n === 0xffffn) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
  const groups = [112n, 96n, 80n, 64n].map((s) => ((n >> s) & 0xffffn).toString(16));
  return `${groups.join(':')}::/64`;
}

/**
 * The client to count (see rateLimitBucket): nginx's $remote_addr, unless it is a trusted proxy, in which case
 * the rightmost X-Forwarded-For entry that is not itself a trusted proxy (entries left of it are client-controlled).
 */
export function clientAddress(remote: string | undefined, forwardedFor: string | undefined, trusted: AddressSet): string {
  return rateLimitBucket(forwardedClient(remote, forwardedFor, trusted));
}

function forwardedClient(remote: string | undefined, forwardedFor: string | undefined, trusted: AddressSet): string {
  let addr = (remote ?? '').trim() || 'unknown';
  if (!forwardedFor || !trusted.has(addr)) return addr;
  const hops = forwardedFor.split(',').map((h) => h.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (!isIP(hop)) return addr;
    addr = hop;
    if (!trusted.has(hop)) return hop;
  }
  return addr;
}
