// libmacaroons V2 binary codec and HMAC chain on node:crypto.
// Hand-written because it sits on the paid hot path (the `macaroon` npm package verifies ~4x slower);
// that package, Go gopkg.in/macaroon.v2 and pymacaroons are the test oracles for byte compatibility.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { decodeBase64Loose } from './base64.js';

export interface Caveat {
  /** First-party: the predicate bytes. Third-party: the caveat id. */
  id: Buffer;
  /** Present only on third-party caveats; we never mint those, and verification refuses them. */
  verificationId?: Buffer;
  location?: string;
}

export interface Macaroon {
  location: string;
  identifier: Buffer;
  caveats: Caveat[];
  signature: Buffer;
}

export class MacaroonFormatError extends Error {}

const KEY_GENERATOR = Buffer.from('macaroons-key-generator', 'utf8');
const V2 = 2;
const FIELD_EOS = 0;
const FIELD_LOCATION = 1;
const FIELD_IDENTIFIER = 2;
const FIELD_VID = 4;
const FIELD_SIGNATURE = 6;
/** Larger than any macaroon we mint; bounds work on hostile input. */
export const MAX_MACAROON_BYTES = 4096;
const MAX_CAVEATS = 64;

function hmac(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Same derivation as libmacaroons, go-macaroon and pymacaroons, so their verifiers accept our macaroons. */
export function deriveMacaroonKey(rootKey: Buffer): Buffer {
  return hmac(KEY_GENERATOR, rootKey);
}

export function signatureFor(rootKey: Buffer, identifier: Buffer, caveats: readonly Caveat[]): Buffer {
  let sig = hmac(deriveMacaroonKey(rootKey), identifier);
  for (const c of caveats) {
    if (c.verificationId) throw new MacaroonFormatError('third-party caveats are not supported');
    sig = hmac(sig, c.id);
  }
  return sig;
}

export function mintMacaroon(rootKey: Buffer, identifier: Buffer, location: string, predicates: readonly string[]): Macaroon {
  const caveats = predicates.map((p) => ({ id: Buffer.from(p, 'utf8') }));
  return { location, identifier, caveats, signature: signatureFor(rootKey, identifier, caveats) };
}

/** Adds a first-party caveat the way a client attenuates a macaroon (no root key needed). */
export function attenuate(m: Macaroon, predicate: string): Macaroon {
  const id = Buffer.from(predicate, 'utf8');
  return { ...m, caveats: [...m.caveats, { id }], signature: hmac(m.signature, id) };
}

/** Constant-time check of the whole HMAC chain. Third-party caveats make it fail (fail closed). */
export function verifySignature(m: Macaroon, rootKey: Buffer): boolean {
  if (m.caveats.some((c) => c.verificationId)) return false;
  const expected = signatureFor(rootKey, m.identifier, m.caveats);
  return m.signature.length === expected.length && timingSafeEqual(m.signature, expected);
}

function putUvarint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function field(chunks: Buffer[], type: number, data: Buffer): void {
  const head: number[] = [type];
  putUvarint(head, data.length);
  chunks.push(Buffer.from(head), data);
}

export function encodeMacaroon(m: Macaroon): Buffer {
  const chunks: Buffer[] = [Buffer.from([V2])];
  if (m.location) field(chunks, FIELD_LOCATION, Buffer.from(m.location, 'utf8'));
  field(chunks, FIELD_IDENTIFIER, m.identifier);
  chunks.push(Buffer.from([FIELD_EOS]));
  for (const c of m.caveats) {
    if (c.location) field(chunks, FIELD_LOCATION, Buffer.from(c.location, 'utf8'));
    field(chunks, FIELD_IDENTIFIER, c.id);
    if (c.verificationId) field(chunks, FIELD_VID, c.verificationId);
    chunks.push(Buffer.from([FIELD_EOS]));
  }
  chunks.push(Buffer.from([FIELD_EOS]));
  field(chunks, FIELD_SIGNATURE, m.signature);
  return Buffer.concat(chunks);
}

/** Standard base64 with padding: what Aperture, lnget and the L402 spec put in headers. */
export function encodeMacaroonBase64(m: Macaroon): string {
  return encodeMacaroon(m).toString('base64');
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  byte(): number {
    const b = this.buf[this.pos];
    if (b === undefined) throw new MacaroonFormatError('truncated macaroon');
    this.pos++;
    return b;
  }
  uvarint(): number {
    let n = 0;
    let mul = 1;
    for (let i = 0; i < 4; i++) {
      const b = this.byte();
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
    }
    throw new MacaroonFormatError('field length too large');
  }
  bytes(len: number): Buffer {
    if (this.pos + len > this.buf.length) throw new MacaroonFormatError('truncated macaroon field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  /** Reads a section of fields up to EOS; returns them in order. */
  section(): Array<{ type: number; data: Buffer }> {
    const fields: Array<{ type: number; data: Buffer }> = [];
    let last = 0;
    for (;;) {
      const type = this.byte();
      if (type === FIELD_EOS) return fields;
      if (type <= last) throw new MacaroonFormatError('macaroon fields out of order');
      last = type;
      fields.push({ type, data: this.bytes(this.uvarint()) });
    }
  }
}

function toUtf8(b: Buffer): string {
  const s = b.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(b)) throw new MacaroonFormatError('location is not UTF-8');
  return s;
}

export function decodeMacaroon(buf: Buffer): Macaroon {
  if (buf.length > MAX_MACAROON_BYTES) throw new MacaroonFormatError('macaroon too large');
  const r = new Reader(buf);
  if (r.byte() !== V2) throw new MacaroonFormatError('not a V2 binary macaroon');
  const head = r.section();
  let location = '';
  let identifier: Buffer | undefined;
  for (const f of head) {
    if (f.type === FIELD_LOCATION) location = toUtf8(f.data);
    else if (f.type === FIELD_IDENTIFIER) identifier = Buffer.from(f.data);
    else throw new MacaroonFormatError(`unexpected field ${f.type} in macaroon header`);
  }
  if (!identifier) throw new MacaroonFormatError('macaroon has no identifier');
  const caveats: Caveat[] = [];
  for (;;) {
    const fields = r.section();
    if (fields.length === 0) break;
    if (caveats.length >= MAX_CAVEATS) throw new MacaroonFormatError('too many caveats');
    const c: Partial<Caveat> = {};
    for (const f of fields) {
      if (f.type === FIELD_LOCATION) c.location = toUtf8(f.data);
      else if (f.type === FIELD_IDENTIFIER) c.id = Buffer.from(f.data);
      else if (f.type === FIELD_VID) c.verificationId = Buffer.from(f.data);
      else throw new MacaroonFormatError(`unexpected field ${f.type} in caveat`);
    }
    if (!c.id) throw new MacaroonFormatError('caveat has no identifier');
    caveats.push(c as Caveat);
  }
  // The signature is a single field with no EOS after it (libmacaroons/go-macaroon V2 layout).
  if (r.byte() !== FIELD_SIGNATURE) throw new MacaroonFormatError('macaroon has no signature');
  const sigData = r.bytes(r.uvarint());
  if (sigData.length !== 32) throw new MacaroonFormatError('macaroon signature must be 32 bytes');
  if (!r.done) throw new MacaroonFormatError('trailing bytes after macaroon');
  return { location, identifier, caveats, signature: Buffer.from(sigData) };
}

/** Accepts standard or URL-safe base64, padded or not (clients differ). */
export function decodeMacaroonBase64(text: string): Macaroon {
  const raw = decodeBase64Loose(text, MAX_MACAROON_BYTES);
  if (!raw) throw new MacaroonFormatError('macaroon is not valid base64');
  return decodeMacaroon(raw);
}

export function caveatPredicates(m: Macaroon): string[] {
  return m.caveats.map((c) => c.id.toString('utf8'));
}
