// The L402 spec's version-0 identifier: u16 version || payment hash || token id (66 bytes, big-endian).
// lnget and Aperture decode exactly this layout, so we mint it.
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
