// Credentials minted by ngx_l402, accepted during a migration (opt-in: `ngx_l402_root_key`).
// ngx_l402 serialises libmacaroons V1 (length-prefixed text packets), uses the raw 32-byte payment hash as
// the identifier, signs with its ROOT_KEY's raw bytes, and binds each macaroon to one path and method
// (`RequestPath = …`, `RequestMethod = …`, optional `ExpiresAt = <unix>`). ngx_l402 let unknown caveats
// and a non-numeric expiry pass; here anything but those three well-formed caveats is refused.
import { MAX_MACAROON_BYTES, MacaroonFormatError, type Caveat, type Macaroon } from './macaroon.js';

/** A V1 macaroon starts with a packet length in hex; V2 with 0x02, JSON with '{'. */
export function looksLikeV1(buf: Buffer): boolean {
  return buf.length >= 4 && /^[0-9a-fA-F]{4}$/.test(buf.subarray(0, 4).toString('latin1'));
}

/**
 * Decodes libmacaroons V1: packets of `<4 hex digits: packet length> <key> SP <value> LF`, in the order
 * location, identifier, cid…, signature. Third-party caveats (vid, cl) are refused: ngx_l402 never made them.
 */
export function decodeMacaroonV1(buf: Buffer): Macaroon {
  if (buf.length > MAX_MACAROON_BYTES) throw new MacaroonFormatError('macaroon too large');
  const packets: Array<{ key: string; value: Buffer }> = [];
  let pos = 0;
  while (pos < buf.length) {
    if (!looksLikeV1(buf.subarray(pos))) throw new MacaroonFormatError('bad V1 packet header');
    const len = parseInt(buf.subarray(pos, pos + 4).toString('latin1'), 16);
    if (len < 7 || pos + len > buf.length) throw new MacaroonFormatError('bad V1 packet length');
    const body = buf.subarray(pos + 4, pos + len);
    const space = body.indexOf(0x20);
    if (space <= 0 || body[body.length - 1] !== 0x0a) throw new MacaroonFormatError('bad V1 packet');
    packets.push({ key: body.subarray(0, space).toString('latin1'), value: Buffer.from(body.subarray(space + 1, body.length - 1)) });
    pos += len;
  }
  const [loc, ident, ...rest] = packets;
  const sig = rest.pop();
  if (loc?.key !== 'location' || ident?.key !== 'identifier' || sig?.key !== 'signature') throw new MacaroonFormatError('V1 macaroon needs location, identifier and signature, in that order');
  if (sig.value.length !== 32) throw new MacaroonFormatError('macaroon signature must be 32 bytes');
  if (rest.length > 64) throw new MacaroonFormatError('too many caveats');
  const caveats: Caveat[] = rest.map((p) => {
    if (p.key !== 'cid') throw new MacaroonFormatError(p.key === 'vid' || p.key === 'cl' ? 'third-party caveats are not supported' : `unexpected V1 packet "${p.key.slice(0, 16)}"`);
    return { id: p.value };
  });
  const location = loc.value.toString('utf8');
  if (!Buffer.from(location, 'utf8').equals(loc.value)) throw new MacaroonFormatError('location is not UTF-8');
  return { location, identifier: ident.value, caveats, signature: sig.value };
}

export type NgxL402CaveatVerdict =
  | { ok: true; validUntil?: number }
  | { ok: false; reason: 'wrong_path' | 'wrong_method' | 'expired' | 'unknown_caveat' | 'malformed_caveat' };

const CAVEAT = /^(RequestPath|RequestMethod|ExpiresAt) = (.*)$/s;

/**
 * ngx_l402's caveats, checked strictly against this request. ngx_l402 always wrote a path and a method
 * caveat, so a macaroon without either is not one it sold.
 */
export function checkNgxL402Caveats(predicates: readonly string[], req: { path: string; method: string; now: number }): NgxL402CaveatVerdict {
  let validUntil: number | undefined;
  let pathBound = false;
  let methodBound = false;
  for (const p of predicates) {
    const m = CAVEAT.exec(p);
    if (!m) return { ok: false, reason: 'unknown_caveat' };
    const value = m[2]!;
    if (m[1] === 'RequestPath') {
      if (value !== req.path) return { ok: false, reason: 'wrong_path' };
      pathBound = true;
    } else if (m[1] === 'RequestMethod') {
      if (value !== req.method) return { ok: false, reason: 'wrong_method' };
      methodBound = true;
    } else {
      if (!/^\d{1,12}$/.test(value)) return { ok: false, reason: 'malformed_caveat' };
      const at = Number(value);
      if (req.now > at) return { ok: false, reason: 'expired' };
      validUntil = Math.min(validUntil ?? at, at);
    }
  }
  if (!pathBound || !methodBound) return { ok: false, reason: 'malformed_caveat' };
  return { ok: true, validUntil };
}

