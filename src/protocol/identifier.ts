// The L402 spec's version-0 identifier: u16 version || payment hash || token id (66 bytes, big-endian).
// lnget and Aperture decode exactly this layout, so we mint it. The token id is opaque to them; ours carries,
// in its first byte, how many caveats l402d minted (see newTokenId).
import { randomBytes } from 'node:crypto';

export interface TokenIdentifier {
  version: 0;
  paymentHash: Buffer;
  tokenId: Buffer;
}

export const IDENTIFIER_BYTES = 66;

export function encodeIdentifier(paymentHash: Buffer, tokenId: Buffer): Buffer {
  if (paymentHash.length !== 32 || tokenId.length !== 32) throw new Error('payment hash and token id must be 32 bytes');
  const out = Buffer.alloc(IDENTIFIER_BYTES);
  out.writeUInt16BE(0, 0);
  paymentHash.copy(out, 2);
  tokenId.copy(out, 34);
  return out;
}

/** Returns undefined for anything that is not a version-0, 66-byte identifier. */
export function decodeIdentifier(id: Buffer): TokenIdentifier | undefined {
  if (id.length !== IDENTIFIER_BYTES || id.readUInt16BE(0) !== 0) return undefined;
  return { version: 0, paymentHash: Buffer.from(id.subarray(2, 34)), tokenId: Buffer.from(id.subarray(34, 66)) };
}

/** At most this many caveats are minted (services, route, path, method, uses, expiry). */
export const MAX_MINTED_CAVEATS = 16;

/**
 * A fresh token id: byte 0 is the number of caveats l402d mints into the macaroon, the other 31 bytes random.
 * The identifier roots the HMAC chain, so a holder can change neither it nor those first caveats: whatever a
 * holder appends comes after them, and what was sold is read from that minted prefix only.
 */
export function newTokenId(mintedCaveats: number): Buffer {
  if (!Number.isInteger(mintedCaveats) || mintedCaveats < 1 || mintedCaveats > MAX_MINTED_CAVEATS) throw new Error('minted caveat count out of range');
  const id = randomBytes(32);
  id[0] = mintedCaveats;
  return id;
}

/** How many of a macaroon's caveats l402d minted (the rest were appended by a holder). */
export function mintedCaveatCount(tokenId: Buffer): number {
  return tokenId[0] ?? 0;
}
