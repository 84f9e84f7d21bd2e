// L402/LSAT challenge formatting and credential parsing (Authorization header and gRPC metadata).
import { decodeBase64Loose } from './base64.js';
import { MAX_MACAROON_BYTES } from './macaroon.js';
import { trimOws } from './ows.js';

/** Bigger than any credential we issue; nginx's default large_client_header_buffers is 8k. */
export const MAX_AUTHORIZATION_LENGTH = 8192;
const MAX_TOKENS = 4;

export interface L402Credential {
  scheme: 'L402' | 'LSAT';
  /** Raw bytes of the first macaroon. Extra (discharge) macaroons grant nothing here and are ignored. */
  macaroon: Buffer;
  /** Absent for macaroon-only credentials (auto-detect) and gRPC metadata tokens carrying a preimage caveat. */
  preimage?: Buffer;
  /** 'cookie': the browser credential (policy/credential-cookie.ts), the same credential as a cookie. */
  source: 'authorization' | 'grpc-metadata' | 'cookie';
}

export type CredentialParse =
  | { kind: 'none' }
  | { kind: 'l402'; credential: L402Credential }
  | { kind: 'malformed'; reason: string };

export interface CredentialHeaders {
  authorization?: string;
  /**
   * Aperture's REST form (`Grpc-Metadata-Macaroon: <hex>`, the name grpc-gateway maps to gRPC metadata): a
   * hex-serialised macaroon carrying a `preimage=<hex>` caveat, read over any protocol.
   */
  grpcMetadataMacaroon?: string;
  /** gRPC metadata keys from the L402 spec: hex-serialised macaroon. */
  token?: string;
  macaroon?: string;
}

const SCHEME = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:[ \t]+(.*))?$/s;
const HEX64 = /^[0-9a-fA-F]{64}$/;
const CASHU_SCHEME = /^\s*cashu(\s|$)/i;

export function parseCredential(h: CredentialHeaders): CredentialParse {
  const auth = h.authorization;
  if (auth !== undefined && trimOws(auth) !== '') {
    const parsed = parseAuthorization(auth);
    // Another scheme in Authorization (a gRPC app's own `Bearer …`) is not ours: the L402 credential may
    // still be in the spec's metadata keys. A Cashu token there is the payment the client chose (another
    // module reads it), so it is not overridden by metadata.
    if (parsed.kind !== 'none' || CASHU_SCHEME.test(auth)) return parsed;
  }
  // Aperture's order: Authorization, then Grpc-Metadata-Macaroon, then the gRPC metadata keys.
  for (const meta of [h.grpcMetadataMacaroon, h.token ?? h.macaroon]) {
    if (meta === undefined || trimOws(meta) === '') continue;
    const hex = trimOws(meta);
    if (hex.length > MAX_MACAROON_BYTES * 2 || !/^([0-9a-fA-F]{2})+$/.test(hex)) return { kind: 'malformed', reason: 'macaroon metadata must be hex' };
    return { kind: 'l402', credential: { scheme: 'L402', macaroon: Buffer.from(hex, 'hex'), source: 'grpc-metadata' } };
  }
  return { kind: 'none' };
}

export function parseAuthorization(value: string): CredentialParse {
  if (value.length > MAX_AUTHORIZATION_LENGTH) return { kind: 'malformed', reason: 'authorization header too long' };
  const m = SCHEME.exec(trimOws(value));
  if (!m) return { kind: 'malformed', reason: 'authorization header is not "<scheme> <credentials>"' };
  const scheme = m[1]!.toUpperCase();
  // Other schemes (Basic, Bearer, ...) are not ours: the request is simply unpaid.
  if (scheme !== 'L402' && scheme !== 'LSAT') return { kind: 'none' };
  const rest = (m[2] ?? '').trim();
  if (rest === '') return { kind: 'malformed', reason: `${scheme} credential is empty` };
  const parts = rest.split(':');
  if (parts.length > 2) return { kind: 'malformed', reason: 'expected <macaroon>:<preimage>' };
  const tokens = parts[0]!.split(',').map((t) => t.trim());
  if (tokens.length > MAX_TOKENS || tokens.some((t) => t === '')) return { kind: 'malformed', reason: 'bad macaroon list' };
  const macs: Buffer[] = [];
  for (const t of tokens) {
    const b = decodeBase64Loose(t, MAX_MACAROON_BYTES);
    if (!b) return { kind: 'malformed', reason: 'macaroon is not base64' };
    macs.push(b);
  }
  let preimage: Buffer | undefined;
  if (parts.length === 2) {
    const p = parts[1]!.trim();
    if (!HEX64.test(p)) return { kind: 'malformed', reason: 'preimage must be 64 hex characters' };
    preimage = Buffer.from(p, 'hex');
  }
  return { kind: 'l402', credential: { scheme: scheme as 'L402' | 'LSAT', macaroon: macs[0]!, preimage, source: 'authorization' } };
}

function quoted(v: string): string {
  // base64 and bech32 never contain quotes or backslashes; refuse rather than emit a broken header.
  if (/["\\\r\n]/.test(v)) throw new Error('challenge parameter contains a forbidden character');
  return `"${v}"`;
}

/**
 * First header: `L402 macaroon="…", invoice="…"` (what lnget, lsat-js, Alby, Fewsats parse: macaroon first),
 * then the current spec's `version="0", token="…"` after them. Optional legacy LSAT challenge second.
 */
export function formatChallenges(macaroonB64: string, invoice: string, opts: { lsat: boolean }): string[] {
  const out = [`L402 macaroon=${quoted(macaroonB64)}, invoice=${quoted(invoice)}, version="0", token=${quoted(macaroonB64)}`];
  if (opts.lsat) out.push(`LSAT macaroon=${quoted(macaroonB64)}, invoice=${quoted(invoice)}`);
  return out;
}
