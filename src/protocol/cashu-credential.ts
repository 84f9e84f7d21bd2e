// Where a Cashu token arrives: the NUT-24 `X-Cashu` request header, or `Authorization: Cashu <token>`
// (ngx_l402's clients). Only the shape is checked here; the rail decodes and verifies.

export type CashuCredential =
  | { kind: 'none' }
  | { kind: 'token'; token: string; via: 'x-cashu' | 'authorization' }
  /** A Cashu credential was offered but cannot be a token: answer 400 (NUT-24) with `reason`. */
  | { kind: 'malformed'; via: 'x-cashu' | 'authorization'; reason: string };

export interface CashuCredentialHeaders {
  'x-cashu'?: string | string[];
  authorization?: string | string[];
}

import { trimOws } from './ows.js';

// cashuB is base64url; cashuA (V3, deprecated) is often standard base64 with padding.
const TOKEN_RE = /^cashu[AB][A-Za-z0-9_\-+/]+={0,2}$/;
const AUTH_RE = /^cashu[ \t]+(\S+)\s*$/i;

export const DEFAULT_MAX_TOKEN_BYTES = 32_768;

function check(value: string, via: 'x-cashu' | 'authorization', maxBytes: number): CashuCredential {
  let v = trimOws(value);
  // Wallets copy tokens as URIs; NUT-00 allows the `cashu:` scheme.
  if (/^cashu:/i.test(v) && !/^cashu[AB]/.test(v)) v = v.slice(6).replace(/^\/\//, '');
  if (v.length > maxBytes) return { kind: 'malformed', via, reason: `token is larger than ${maxBytes} bytes` };
  if (/^creq/i.test(v)) return { kind: 'malformed', via, reason: 'X-Cashu carries a payment request, not a token' };
  if (!TOKEN_RE.test(v)) return { kind: 'malformed', via, reason: 'not a Cashu token (expected cashuB… or cashuA…)' };
  return { kind: 'token', token: v, via };
}

/**
 * The Cashu credential in a request, if any. `X-Cashu` wins over `Authorization`. An `Authorization`
 * header with another scheme (L402, LSAT, Bearer…) is not ours and yields `none`.
 */
export function parseCashuCredential(headers: CashuCredentialHeaders, maxBytes = DEFAULT_MAX_TOKEN_BYTES): CashuCredential {
  const x = headers['x-cashu'];
  if (x !== undefined) {
    if (Array.isArray(x)) {
      if (x.length > 1) return { kind: 'malformed', via: 'x-cashu', reason: 'more than one X-Cashu header' };
      if (x.length === 1) return check(x[0]!, 'x-cashu', maxBytes);
    } else if (trimOws(x) !== '') {
      return check(x, 'x-cashu', maxBytes);
    }
  }
  const a = headers.authorization;
  const auth = Array.isArray(a) ? (a.length === 1 ? a[0] : undefined) : a;
  if (auth === undefined) return { kind: 'none' };
  const trimmed = trimOws(auth);
  if (!/^cashu(\s|$)/i.test(trimmed)) return { kind: 'none' };
  const m = AUTH_RE.exec(trimmed);
  if (!m) return { kind: 'malformed', via: 'authorization', reason: 'Authorization: Cashu needs exactly one token' };
  return check(m[1]!, 'authorization', maxBytes);
}
