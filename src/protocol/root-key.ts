// Master secret handling. Each token gets its own macaroon root key derived from the master and its token id,
// so verification is stateless and a compromised token key reveals nothing about others.
import { createHmac } from 'node:crypto';
import { verifySignature, type Macaroon } from './macaroon.js';

export class WeakKeyError extends Error {}

const MIN_BYTES = 32;
const MIN_ENTROPY_BITS = 128;

function shannonBits(s: string): number {
  const counts = new Map<string, number>();
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let perChar = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    perChar -= p * Math.log2(p);
  }
  return perChar * s.length;
}

/**
 * Accepts 64+ hex characters (decoded) or any other string of at least 32 bytes (used as raw bytes, as
 * ngx_l402's ROOT_KEY). Refuses short keys and obviously low-entropy ones ("aaaa…", "0123…0123").
 */
export function parseRootKey(text: string, name = 'root_key'): Buffer {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0 && t.length >= 64 ? Buffer.from(t, 'hex') : Buffer.from(t, 'utf8');
  // Hex shorter than 64 characters is a short hex key (e.g. `openssl rand -hex 16`), whatever its entropy as text.
  if (/^[0-9a-fA-F]+$/.test(t) && t.length < 64 && bytes.length >= MIN_BYTES && (shannonBits(t) < MIN_ENTROPY_BITS || new Set(bytes).size < 12)) {
    throw new WeakKeyError(`${name}: too short (${t.length} hex characters = ${Math.floor(t.length / 2)} bytes); use at least 32 random bytes, 64 hex characters, e.g. \`openssl rand -hex 32\``);
  }
  if (bytes.length < MIN_BYTES) throw new WeakKeyError(`${name}: too short (${bytes.length} bytes); use at least 32 random bytes, e.g. \`openssl rand -hex 32\``);
  if (shannonBits(t) < MIN_ENTROPY_BITS || new Set(bytes).size < 12) {
    throw new WeakKeyError(`${name}: too little entropy (looks repetitive); use \`openssl rand -hex 32\``);
  }
  return bytes;
}

// v2: the token id's first byte counts the caveats l402d minted (identifier.ts). A v1 token id was all random,
// so its first byte proves nothing: v1 credentials fail the signature and their holders get a fresh challenge.
const TOKEN_KEY_LABEL = Buffer.from('l402-nginx/token-root-key/v2\0', 'utf8');

export function tokenRootKey(master: Buffer, tokenId: Buffer): Buffer {
  return createHmac('sha256', master).update(TOKEN_KEY_LABEL).update(tokenId).digest();
}

/** Whether one of the master keys (current first, then those kept for a rotation) signed this token's macaroon. */
export function signedByTokenKey(mac: Macaroon, tokenId: Buffer, masters: readonly Buffer[]): boolean {
  return masters.some((k) => verifySignature(mac, tokenRootKey(k, tokenId)));
}
