// BIP-39 mnemonics with node:crypto only (the NUT-13 wallet seed). English wordlist, empty passphrase by
// default, as ngx_l402 and cdk use, so a seed moves between them.
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { ENGLISH_WORDS } from './bip39-english.js';

const INDEX = new Map(ENGLISH_WORDS.map((w, i) => [w, i]));

/** Canonical form: NFKD, lower case, single spaces. */
export function normalizeMnemonic(m: string): string {
  return m.normalize('NFKD').trim().toLowerCase().split(/\s+/).join(' ');
}

function checksumBits(entropy: Buffer): string {
  const hash = createHash('sha256').update(entropy).digest();
  const bits = [...hash].map((b) => b.toString(2).padStart(8, '0')).join('');
  return bits.slice(0, (entropy.length * 8) / 32);
}

export function entropyToMnemonic(entropy: Buffer): string {
  if (![16, 20, 24, 28, 32].includes(entropy.length)) throw new Error('BIP-39 entropy must be 16-32 bytes in steps of 4');
  const bits = [...entropy].map((b) => b.toString(2).padStart(8, '0')).join('') + checksumBits(entropy);
  const words: string[] = [];
  for (let i = 0; i < bits.length; i += 11) words.push(ENGLISH_WORDS[parseInt(bits.slice(i, i + 11), 2)]!);
  return words.join(' ');
}

/** A fresh 12-word (128-bit) mnemonic, or 24 words with strength 256. */
export function generateMnemonic(strength: 128 | 256 = 128): string {
  return entropyToMnemonic(randomBytes(strength / 8));
}

/** Why a mnemonic is invalid, or undefined when it is valid (word count, known words, checksum). */
export function mnemonicProblem(m: string): string | undefined {
  const words = normalizeMnemonic(m).split(' ');
  if (![12, 15, 18, 21, 24].includes(words.length)) return `a BIP-39 mnemonic has 12, 15, 18, 21 or 24 words, not ${words.length}`;
  let bits = '';
  for (const [i, w] of words.entries()) {
    const idx = INDEX.get(w);
    // Never echo the word itself: it is part of a secret.
    if (idx === undefined) return `word ${i + 1} is not in the BIP-39 English wordlist`;
    bits += idx.toString(2).padStart(11, '0');
  }
  const entLen = (bits.length * 32) / 33;
  const entropy = Buffer.alloc(entLen / 8);
  for (let i = 0; i < entropy.length; i++) entropy[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  if (checksumBits(entropy) !== bits.slice(entLen)) return 'the BIP-39 checksum does not match (a word is wrong or out of order)';
  return undefined;
}

/** The 64-byte BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds). */
export function mnemonicToSeed(m: string, passphrase = ''): Buffer {
  return pbkdf2Sync(Buffer.from(normalizeMnemonic(m), 'utf8'), Buffer.from('mnemonic' + passphrase.normalize('NFKD'), 'utf8'), 2048, 64, 'sha512');
}

/** ngx_l402's wallet.fingerprint: the first 16 hex characters of SHA-256(seed). Identifies, never reveals. */
export function seedFingerprint(seed: Uint8Array): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, 16);
}
