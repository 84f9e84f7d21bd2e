// BIP-39 mnemonics (the NUT-13 wallet seed) from @scure/bip39. English wordlist, empty passphrase by
// default, as ngx_l402 and cdk use, so a seed moves between them. This module adds the canonical form
// and the reasons an operator sees for an invalid mnemonic (never echoing a word: it is part of a secret).
import { createHash } from 'node:crypto';
import * as bip39 from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';

const WORDS = new Set(wordlist);

/** Canonical form: NFKD, lower case, single spaces. */
export function normalizeMnemonic(m: string): string {
  return m.normalize('NFKD').trim().toLowerCase().split(/\s+/).join(' ');
}

export function entropyToMnemonic(entropy: Uint8Array): string {
  return bip39.entropyToMnemonic(entropy, wordlist);
}

/** A fresh 12-word (128-bit) mnemonic, or 24 words with strength 256. */
export function generateMnemonic(strength: 128 | 256 = 128): string {
  return bip39.generateMnemonic(wordlist, strength);
}

/** Why a mnemonic is invalid, or undefined when it is valid (word count, known words, checksum). */
export function mnemonicProblem(m: string): string | undefined {
  const words = normalizeMnemonic(m).split(' ');
  if (![12, 15, 18, 21, 24].includes(words.length)) return `a BIP-39 mnemonic has 12, 15, 18, 21 or 24 words, not ${words.length}`;
  const unknown = words.findIndex((w) => !WORDS.has(w));
  // Never echo the word itself: it is part of a secret.
  if (unknown >= 0) return `word ${unknown + 1} is not in the BIP-39 English wordlist`;
  if (!bip39.validateMnemonic(words.join(' '), wordlist)) return 'the BIP-39 checksum does not match (a word is wrong or out of order)';
  return undefined;
}

/** The 64-byte BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds). */
export function mnemonicToSeed(m: string, passphrase = ''): Buffer {
  return Buffer.from(bip39.mnemonicToSeedSync(normalizeMnemonic(m), passphrase));
}

/** ngx_l402's wallet.fingerprint: the first 16 hex characters of SHA-256(seed). Identifies, never reveals. */
export function seedFingerprint(seed: Uint8Array): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, 16);
}
