// The LNC pairing phrase: 10 words from the BIP-39 English list (lnd's aezeed uses the same list),
// 11 bits each, packed big-endian into 14 bytes (the last 2 bits stay zero). Those 14 bytes are the
// "passphrase entropy": hashed with SHA-512 they name the first mailbox stream, and stretched with
// scrypt (N=2^16, r=8, p=1, the entropy as its own salt) they mask the first handshake message.
import { createHash, scrypt } from 'node:crypto';
import { wordlist } from '@scure/bip39/wordlists/english.js';

export const PAIRING_WORDS = 10;
export const ENTROPY_BYTES = 14;
const BITS_PER_WORD = 11;

let wordIndex: Map<string, number> | undefined;
function indexOf(word: string): number | undefined {
  if (!wordIndex) wordIndex = new Map(wordlist.map((w, i) => [w, i]));
  return wordIndex.get(word);
}

/** Positions (1-based) of words that are not in the list; empty when the phrase is well formed. */
export function unknownWordPositions(phrase: string): number[] {
  return phrase.split(' ').flatMap((w, i) => (indexOf(w.toLowerCase()) === undefined ? [i + 1] : []));
}

/** The 14 entropy bytes of a normalised phrase (single spaces). Throws without quoting the phrase. */
export function phraseToEntropy(phrase: string): Buffer {
  const words = phrase.split(' ');
  if (words.length !== PAIRING_WORDS) throw new Error(`the pairing phrase must have ${PAIRING_WORDS} words`);
  const out = Buffer.alloc(ENTROPY_BYTES);
  let bit = 0;
  for (const w of words) {
    const idx = indexOf(w.toLowerCase());
    if (idx === undefined) throw new Error('the pairing phrase has a word that is not in the LNC word list');
    for (let b = BITS_PER_WORD - 1; b >= 0; b--, bit++) {
      if ((idx >> b) & 1) out[bit >> 3]! |= 0x80 >> (bit & 7);
    }
  }
  return out;
}

/** scrypt(entropy, salt = entropy, N = 65536, r = 8, p = 1, 32 bytes), off the event loop. */
export function stretchEntropy(entropy: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(entropy, entropy, 32, { N: 1 << 16, r: 8, p: 1, maxmem: 256 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The 64-byte session id of the pairing (first) connection: SHA-512 of the raw entropy. */
export function pairingSid(entropy: Buffer): Buffer {
  return createHash('sha512').update(entropy).digest();
}
