// L402 credentials parsed from an Authorization value before, by its exact text. A reusable credential is
// sent on every request it pays for, and parsing it (scheme, base64 of the macaroon, hex of the preimage) was
// a measurable share of each decision. Parsing is a pure function of the text, so the answer is the same;
// nothing is believed because it was seen before (the signature, caveats and preimage are checked by the
// decision, see verified-macaroons.ts). Bounded: a flood of distinct values only cycles the memory.
import { parseCredential, type CredentialHeaders, type CredentialParse } from '../protocol/l402-header.js';

/** Longer values are parsed every time (credentials we mint are well under this). */
const MAX_VALUE_LENGTH = 4096;
/** Rough heap bound of the memory: the text (2 bytes a character at most), the decoded bytes, the objects. */
const MAX_BYTES = 4 * 1024 * 1024;
const ENTRY_OVERHEAD_BYTES = 200;

const parsed = new Map<string, { p: CredentialParse & { kind: 'l402' }; size: number }>();
let held = 0;

/**
 * parseCredential, answered from memory for an Authorization value that parsed as an L402 credential before.
 * `remember: false` (a route that sells single-use credentials, each sent once) parses without keeping it:
 * kept, each would outlive two young-generation collections only to be evicted later, and copying those
 * was about half of what a single-use decision left for the collector.
 */
export function parseCredentialRemembered(h: CredentialHeaders, remember = true): CredentialParse {
  const auth = h.authorization;
  const known = auth === undefined ? undefined : parsed.get(auth);
  if (known) return known.p;
  const p = parseCredential(h);
  if (remember && p.kind === 'l402' && p.credential.source === 'authorization' && auth !== undefined && auth.length <= MAX_VALUE_LENGTH) {
    const size = auth.length * 2 + p.credential.macaroon.length + ENTRY_OVERHEAD_BYTES;
    parsed.set(auth, { p, size });
    held += size;
    for (const [k, e] of parsed) {
      if (held <= MAX_BYTES) break;
      parsed.delete(k);
      held -= e.size;
    }
  }
  return p;
}
