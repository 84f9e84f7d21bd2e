// L402 credentials parsed from an Authorization value before, by its exact text. A reusable credential is
// sent on every request it pays for, and parsing it (scheme, base64 of the macaroon, hex of the preimage) was
// a measurable share of each decision. Parsing is a pure function of the text, so the answer is the same;
// nothing is believed because it was seen before (the signature, caveats and preimage are checked by the
// decision, see verified-macaroons.ts). Bounded: a flood of distinct values only cycles the memory.
import { parseCredential, type CredentialHeaders, type CredentialParse } from '../protocol/l402-header.js';

/** Longer values are parsed every time (credentials we mint are well under this). */
const MAX_VALUE_LENGTH = 4096;
const MAX_ENTRIES = 4096;

const parsed = new Map<string, CredentialParse & { kind: 'l402' }>();

/** parseCredential, answered from memory for an Authorization value that parsed as an L402 credential before. */
export function parseCredentialRemembered(h: CredentialHeaders): CredentialParse {
  const auth = h.authorization;
  const known = auth === undefined ? undefined : parsed.get(auth);
  if (known) return known;
  const p = parseCredential(h);
  if (p.kind === 'l402' && p.credential.source === 'authorization' && auth !== undefined && auth.length <= MAX_VALUE_LENGTH) {
    if (parsed.size >= MAX_ENTRIES) parsed.delete(parsed.keys().next().value!);
    parsed.set(auth, p);
  }
  return p;
}
