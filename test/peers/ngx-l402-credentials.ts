// Credentials exactly as ngx_l402 hands them out, for migration tests: libmacaroons V1 packets
// (`<4 hex: packet length>key value\n`), location "L402", the raw 32-byte payment hash as identifier,
// signed with ROOT_KEY's raw bytes, URL-safe base64 with padding. The writer is checked byte for byte
// against go-macaroon's V1 output, and pymacaroons verifies what it writes (test/unit/ngx-l402.test.ts).
import { createHash, createHmac, randomBytes } from 'node:crypto';

const hmac = (key: Buffer, data: Buffer) => createHmac('sha256', key).update(data).digest();

function packet(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(`${key} `, 'latin1'), value, Buffer.from('\n')]);
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0'), 'latin1'), body]);
}

export function ngxL402MacaroonV1(rootKey: Buffer, identifier: Buffer, caveats: readonly string[], location = 'L402'): Buffer {
  let sig = hmac(hmac(Buffer.from('macaroons-key-generator'), rootKey), identifier);
  for (const c of caveats) sig = hmac(sig, Buffer.from(c, 'utf8'));
  return Buffer.concat([packet('location', Buffer.from(location, 'utf8')), packet('identifier', identifier), ...caveats.map((c) => packet('cid', Buffer.from(c, 'utf8'))), packet('signature', sig)]);
}

export interface NgxL402Credential {
  /** `L402 <macaroon>:<preimage>` as an ngx_l402 client sends it. */
  authorization: string;
  macaroon: Buffer;
  preimage: Buffer;
  paymentHash: Buffer;
}

/** What ngx_l402 sold for `method path` (its caveat order), paid: the preimage of a fresh payment hash. */
export function ngxL402Credential(rootKey: string, path: string, method = 'GET', opts: { expiresAt?: number; extraCaveats?: string[] } = {}): NgxL402Credential {
  const preimage = randomBytes(32);
  const paymentHash = createHash('sha256').update(preimage).digest();
  const caveats = [`RequestPath = ${path}`, `RequestMethod = ${method}`];
  if (opts.expiresAt !== undefined) caveats.push(`ExpiresAt = ${opts.expiresAt}`);
  caveats.push(...(opts.extraCaveats ?? []));
  const macaroon = ngxL402MacaroonV1(Buffer.from(rootKey, 'utf8'), paymentHash, caveats);
  return { authorization: `L402 ${macaroon.toString('base64url')}${'='.repeat((3 - (macaroon.length % 3)) % 3)}:${preimage.toString('hex')}`, macaroon, preimage, paymentHash };
}
