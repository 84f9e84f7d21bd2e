// LNC's Noise handshake ("Brontide" over the mailbox): Noise_XXeke+SPAKE2 for the pairing connection and
// Noise_KK for every later one, both on secp256k1 / ChaCha20-Poly1305 / SHA-256 with the prologue
// "lightning-node-connect". In the XX pattern the initiator's first ephemeral key travels masked as
// e + pw·N (SPAKE2), pw being the scrypt-stretched pairing phrase and N a fixed point; only a responder
// that knows the phrase recovers e, so only it can finish the handshake. Curve operations are
// @noble/curves', symmetric ones node:crypto's. After the handshake every message is sent as an
// encrypted 2-byte length (18 bytes with its tag) followed by the encrypted body; each direction's key
// is ratcheted forward (HKDF with the chaining key as salt) every 1000 messages.
import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';

export const PROLOGUE = Buffer.from('lightning-node-connect');
/** SPAKE2 generator N: the first x = SHA-256(u64be(i) || "Lightning Node Connect") on the curve (even y). */
export const SPAKE2_N_HEX = '0254a58cd0f31c008fd0bc9b2dd5ba586144933829f6da33ac4130b555fb5ea32c';
const MAC = 16;
const KEY_ROTATION_INTERVAL = 1000;
/** Version-0 responders pad their act-two payload to this many bytes. */
const ACT_TWO_V0_PAYLOAD = 500;
export const MAX_HANDSHAKE_VERSION = 2;
/** Largest auth payload we accept in act two (the macaroon; Go allows far more, we need far less). */
const MAX_AUTH_DATA = 1024 * 1024;

export type Pattern = 'XX' | 'KK';
const PROTOCOL_NAME: Record<Pattern, string> = {
  XX: 'Noise_XXeke+SPAKE2_secp256k1_ChaChaPoly_SHA256',
  KK: 'Noise_KK_secp256k1_ChaChaPoly_SHA256',
};

const Point = secp256k1.ProjectivePoint;
const ORDER = secp256k1.CURVE.n;

export class NoiseError extends Error {
  override readonly name = 'NoiseError';
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** 64 bytes of HKDF-SHA256(ikm, salt, info = ""), split in two. */
function hkdf2(ikm: Buffer, salt: Buffer): [Buffer, Buffer] {
  const out = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.alloc(0), 64));
  return [out.subarray(0, 32), out.subarray(32, 64)];
}

export function publicKeyOf(priv: Buffer): Buffer {
  return Buffer.from(secp256k1.getPublicKey(priv, true));
}

export function newPrivateKey(): Buffer {
  return Buffer.from(secp256k1.utils.randomPrivateKey());
}

/** SHA-256 of the compressed point priv·pub (lnd's keychain ECDH). */
export function ecdh(pub: Buffer, priv: Buffer): Buffer {
  return sha256(Buffer.from(secp256k1.getSharedSecret(priv, pub, true)));
}

function parsePoint(bytes: Buffer, what: string): InstanceType<typeof Point> {
  try {
    const p = Point.fromHex(bytes);
    p.assertValidity();
    return p;
  } catch {
    throw new NoiseError(`${what} is not a valid secp256k1 point`);
  }
}

function pwScalar(stretched: Buffer): bigint {
  const pw = BigInt('0x' + stretched.toString('hex')) % ORDER;
  if (pw === 0n) throw new NoiseError('degenerate pairing secret');
  return pw;
}

/** SPAKE2 mask: e + pw·N (compressed). */
export function ekeMask(ephemeralPub: Buffer, stretched: Buffer): Buffer {
  const n = Point.fromHex(SPAKE2_N_HEX).multiply(pwScalar(stretched));
  return Buffer.from(parsePoint(ephemeralPub, 'ephemeral key').add(n).toRawBytes(true));
}

/** Inverse of ekeMask: me − pw·N. */
export function ekeUnmask(masked: Buffer, stretched: Buffer): Buffer {
  const n = Point.fromHex(SPAKE2_N_HEX).multiply(pwScalar(stretched));
  const e = parsePoint(masked, 'masked ephemeral key').subtract(n);
  if (e.equals(Point.ZERO)) throw new NoiseError('masked ephemeral key unmasks to infinity');
  return Buffer.from(e.toRawBytes(true));
}

/** One direction's AEAD state: ChaCha20-Poly1305, 96-bit nonce = 4 zero bytes || u64le counter. */
export class CipherState {
  private nonce = 0;
  constructor(private key: Buffer = Buffer.alloc(32), private salt: Buffer = Buffer.alloc(32)) {}

  private nonceBytes(): Buffer {
    const n = Buffer.alloc(12);
    n.writeBigUInt64LE(BigInt(this.nonce), 4);
    return n;
  }

  private advance(): void {
    this.nonce++;
    if (this.nonce === KEY_ROTATION_INTERVAL) {
      const [salt, key] = hkdf2(this.key, this.salt);
      this.salt = Buffer.from(salt);
      this.key = Buffer.from(key);
      this.nonce = 0;
    }
  }

  encrypt(ad: Buffer, plaintext: Buffer): Buffer {
    const c = createCipheriv('chacha20-poly1305', this.key, this.nonceBytes(), { authTagLength: MAC });
    c.setAAD(ad, { plaintextLength: plaintext.length });
    const out = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
    this.advance();
    return out;
  }

  /** Throws NoiseError when the tag does not verify (the nonce still advances, as in Go). */
  decrypt(ad: Buffer, ciphertext: Buffer): Buffer {
    if (ciphertext.length < MAC) throw new NoiseError('ciphertext shorter than its tag');
    const d = createDecipheriv('chacha20-poly1305', this.key, this.nonceBytes(), { authTagLength: MAC });
    d.setAAD(ad, { plaintextLength: ciphertext.length - MAC });
    d.setAuthTag(ciphertext.subarray(ciphertext.length - MAC));
    try {
      return Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - MAC)), d.final()]);
    } catch {
      throw new NoiseError('message authentication failed');
    } finally {
      this.advance();
    }
  }
}

export interface HandshakeOptions {
  initiator: boolean;
  pattern: Pattern;
  localPriv: Buffer;
  /** Required for KK; learned during XX. */
  remotePub?: Buffer;
  /** scrypt-stretched pairing entropy; required for XX. */
  stretched?: Buffer;
  /** What the responder sends the initiator in act two (LNC: "Macaroon: <hex>"). */
  authData?: Buffer;
  minVersion?: number;
  maxVersion?: number;
  /** Ephemeral key source (tests pin it to check fixed transcripts). */
  ephemeral?: () => Buffer;
}

type Token = 'e' | 'me' | 's' | 'ee' | 'es' | 'se' | 'ss';
const ACTS: Record<Pattern, Array<{ initiator: boolean; tokens: Token[] }>> = {
  XX: [
    { initiator: true, tokens: ['me'] },
    { initiator: false, tokens: ['e', 'ee', 's', 'es'] },
    { initiator: true, tokens: ['s', 'se'] },
  ],
  KK: [
    { initiator: true, tokens: ['e', 'es', 'ss'] },
    { initiator: false, tokens: ['e', 'ee', 'se'] },
  ],
};

/** Reads a handshake act from one buffer; every read is bounds-checked. */
class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  take(n: number, what: string): Buffer {
    if (this.off + n > this.buf.length) throw new NoiseError(`handshake message too short (${what})`);
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
  end(): void {
    if (this.off !== this.buf.length) throw new NoiseError('handshake message has trailing bytes');
  }
}

/** One handshake, act by act. Both roles: l402d is the initiator, the test peer the responder. */
export class Handshake {
  readonly initiator: boolean;
  readonly pattern: Pattern;
  version: number;
  remoteStatic: Buffer | undefined;
  /** Act-two payload the initiator received (the responder's auth data). */
  receivedPayload: Buffer | undefined;
  private readonly minVersion: number;
  private readonly maxVersion: number;
  private readonly localPriv: Buffer;
  private readonly localPub: Buffer;
  private readonly stretched: Buffer | undefined;
  private readonly authData: Buffer | undefined;
  private readonly ephemeral: () => Buffer;
  private localEphemeral: Buffer | undefined;
  private remoteEphemeral: Buffer | undefined;
  private ck: Buffer;
  private h: Buffer;
  private cs = new CipherState();
  private act = 0;

  constructor(o: HandshakeOptions) {
    this.initiator = o.initiator;
    this.pattern = o.pattern;
    this.minVersion = o.minVersion ?? 0;
    this.maxVersion = o.maxVersion ?? MAX_HANDSHAKE_VERSION;
    if (o.pattern === 'KK') this.minVersion = Math.max(this.minVersion, 2);
    if (this.maxVersion < this.minVersion) throw new NoiseError('no handshake version left to speak');
    this.version = o.initiator ? this.minVersion : this.maxVersion;
    this.localPriv = o.localPriv;
    this.localPub = publicKeyOf(o.localPriv);
    this.remoteStatic = o.remotePub;
    this.stretched = o.stretched;
    this.authData = o.authData;
    this.ephemeral = o.ephemeral ?? newPrivateKey;
    if (o.pattern === 'XX' && !o.stretched) throw new NoiseError('XX needs the stretched pairing secret');
    if (o.pattern === 'KK' && !o.remotePub) throw new NoiseError('KK needs the remote static key');
    this.h = sha256(Buffer.from(PROTOCOL_NAME[o.pattern]));
    this.ck = this.h;
    this.mixHash(PROLOGUE);
    if (o.pattern === 'KK') {
      // Pre-messages: initiator's static key, then the responder's.
      const [i, r] = o.initiator ? [this.localPub, o.remotePub!] : [o.remotePub!, this.localPub];
      this.mixHash(i);
      this.mixHash(r);
    }
  }

  get done(): boolean {
    return this.act === ACTS[this.pattern].length;
  }

  /** True when the next act is ours to write. */
  get ourTurn(): boolean {
    return !this.done && ACTS[this.pattern][this.act]!.initiator === this.initiator;
  }

  private mixHash(data: Buffer): void {
    this.h = sha256(this.h, data);
  }

  private mixKey(input: Buffer): void {
    const [ck, k] = hkdf2(input, this.ck);
    this.ck = Buffer.from(ck);
    this.cs = new CipherState(Buffer.from(k));
  }

  private encryptAndHash(pt: Buffer): Buffer {
    const ct = this.cs.encrypt(this.h, pt);
    this.mixHash(ct);
    return ct;
  }

  private decryptAndHash(ct: Buffer): Buffer {
    const pt = this.cs.decrypt(this.h, ct);
    this.mixHash(ct);
    return pt;
  }

  private dh(token: 'ee' | 'es' | 'se' | 'ss'): Buffer {
    const need = (b: Buffer | undefined, what: string): Buffer => {
      if (!b) throw new NoiseError(`handshake out of order: no ${what}`);
      return b;
    };
    const le = (): Buffer => need(this.localEphemeral, 'local ephemeral');
    const re = (): Buffer => need(this.remoteEphemeral, 'remote ephemeral');
    const rs = (): Buffer => need(this.remoteStatic, 'remote static');
    switch (token) {
      case 'ee': return ecdh(re(), le());
      case 'ss': return ecdh(rs(), this.localPriv);
      case 'es': return this.initiator ? ecdh(rs(), le()) : ecdh(re(), this.localPriv);
      case 'se': return this.initiator ? ecdh(re(), this.localPriv) : ecdh(rs(), le());
    }
  }

  writeAct(): Buffer {
    if (!this.ourTurn) throw new NoiseError('not our turn to write');
    const actNum = this.act + 1;
    const parts: Buffer[] = [Buffer.from([this.version])];
    for (const t of ACTS[this.pattern][this.act]!.tokens) {
      switch (t) {
        case 'e': {
          this.localEphemeral = this.ephemeral();
          const pub = publicKeyOf(this.localEphemeral);
          this.mixHash(pub);
          parts.push(pub);
          break;
        }
        case 'me': {
          this.localEphemeral = this.ephemeral();
          const pub = publicKeyOf(this.localEphemeral);
          // The transcript gets the unmasked key: a responder without the phrase fails the next MAC.
          this.mixHash(pub);
          parts.push(ekeMask(pub, this.stretched!));
          break;
        }
        case 's':
          parts.push(this.encryptAndHash(this.localPub));
          break;
        default:
          this.mixKey(this.dh(t));
      }
    }
    if (actNum === 2) {
      const payload = this.authData ?? Buffer.alloc(0);
      if (this.version === 0) {
        if (payload.length + 2 > ACT_TWO_V0_PAYLOAD) throw new NoiseError('auth data too large for handshake version 0');
        const padded = Buffer.alloc(ACT_TWO_V0_PAYLOAD);
        if (this.authData) {
          padded.writeUInt16BE(payload.length, 0);
          payload.copy(padded, 2);
        }
        parts.push(this.encryptAndHash(padded));
      } else {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(payload.length, 0);
        parts.push(this.encryptAndHash(len), this.encryptAndHash(payload));
      }
    } else {
      parts.push(this.encryptAndHash(Buffer.alloc(0)));
    }
    this.act++;
    return Buffer.concat(parts);
  }

  readAct(msg: Buffer): void {
    if (this.done || this.ourTurn) throw new NoiseError('not our turn to read');
    const actNum = this.act + 1;
    const r = new Reader(msg);
    const version = r.take(1, 'version')[0]!;
    if (actNum <= 2) {
      if (version < this.minVersion || version > this.maxVersion) throw new NoiseError(`unsupported handshake version ${version}`);
      // The initiator follows the responder's choice.
      if (this.initiator) this.version = version;
    } else if (version !== this.version) {
      throw new NoiseError(`handshake version changed to ${version} in act three`);
    }
    for (const t of ACTS[this.pattern][this.act]!.tokens) {
      switch (t) {
        case 'e': {
          const pub = r.take(33, 'ephemeral key');
          parsePoint(pub, 'remote ephemeral key');
          this.remoteEphemeral = Buffer.from(pub);
          this.mixHash(this.remoteEphemeral);
          break;
        }
        case 'me': {
          this.remoteEphemeral = ekeUnmask(r.take(33, 'masked ephemeral key'), this.stretched!);
          this.mixHash(this.remoteEphemeral);
          break;
        }
        case 's': {
          const pub = this.decryptAndHash(r.take(33 + MAC, 'static key'));
          parsePoint(pub, 'remote static key');
          if (this.pattern === 'KK' || (this.remoteStatic && !pub.equals(this.remoteStatic))) {
            throw new NoiseError('unexpected remote static key');
          }
          this.remoteStatic = Buffer.from(pub);
          break;
        }
        default:
          this.mixKey(this.dh(t));
      }
    }
    if (actNum === 2) {
      if (version === 0) {
        const pt = this.decryptAndHash(r.take(ACT_TWO_V0_PAYLOAD + MAC, 'payload'));
        const len = pt.readUInt16BE(0);
        if (len + 2 > pt.length) throw new NoiseError('auth data length out of range');
        this.receivedPayload = len ? Buffer.from(pt.subarray(2, 2 + len)) : Buffer.alloc(0);
      } else {
        const len = this.decryptAndHash(r.take(4 + MAC, 'payload length')).readUInt32BE(0);
        if (len > MAX_AUTH_DATA) throw new NoiseError('auth data too large');
        this.receivedPayload = Buffer.from(this.decryptAndHash(r.take(len + MAC, 'payload')));
      }
    } else {
      this.decryptAndHash(r.take(MAC, 'payload'));
    }
    r.end();
    this.act++;
  }

  /** The transport ciphers; call once the handshake is done. */
  split(): NoiseTransport {
    if (!this.done) throw new NoiseError('handshake not finished');
    const [first, second] = hkdf2(Buffer.alloc(0), this.ck);
    const salt = Buffer.from(this.ck);
    const [send, recv] = this.initiator ? [first, second] : [second, first];
    return new NoiseTransport(new CipherState(Buffer.from(send), salt), new CipherState(Buffer.from(recv), Buffer.from(salt)));
  }
}

export const MAX_NOISE_MESSAGE = 0xffff;

/** Post-handshake framing: an encrypted u16 length (2 + 16 bytes), then the encrypted body. */
export class NoiseTransport {
  private inbox: Buffer = Buffer.alloc(0);
  private pendingBody: number | undefined;

  constructor(private readonly send: CipherState, private readonly recv: CipherState) {}

  /** Header and body of one message (≤ 65535 bytes); LNC writes them as two mailbox messages. */
  seal(plaintext: Buffer): [Buffer, Buffer] {
    if (plaintext.length > MAX_NOISE_MESSAGE) throw new NoiseError('message too long for one noise frame');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(plaintext.length, 0);
    const empty = Buffer.alloc(0);
    return [this.send.encrypt(empty, len), this.send.encrypt(empty, plaintext)];
  }

  /** Feeds received bytes (any split); returns every complete decrypted message. Throws on a bad tag. */
  open(bytes: Buffer): Buffer[] {
    this.inbox = this.inbox.length ? Buffer.concat([this.inbox, bytes]) : bytes;
    const out: Buffer[] = [];
    const empty = Buffer.alloc(0);
    for (;;) {
      if (this.pendingBody === undefined) {
        if (this.inbox.length < 2 + MAC) break;
        this.pendingBody = this.recv.decrypt(empty, this.inbox.subarray(0, 2 + MAC)).readUInt16BE(0) + MAC;
        this.inbox = this.inbox.subarray(2 + MAC);
      }
      if (this.inbox.length < this.pendingBody) break;
      out.push(this.recv.decrypt(empty, this.inbox.subarray(0, this.pendingBody)));
      this.inbox = this.inbox.subarray(this.pendingBody);
      this.pendingBody = undefined;
    }
    return out;
  }
}
