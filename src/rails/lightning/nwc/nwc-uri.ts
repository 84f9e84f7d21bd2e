// Parses a Nostr Wallet Connect (NIP-47) connection URI. The URI carries the client's secret key, so no
// error raised here ever quotes the input: a message names the part that is wrong, never its value.
import { getPublicKey } from 'nostr-tools/pure';
import { getConversationKey } from 'nostr-tools/nip44';

export class NwcUriError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NwcUriError';
  }
}

export interface NwcConnection {
  /** x-only public key of the wallet service, 64 lower-case hex characters. */
  walletPubkey: string;
  /** Relay URLs in URI order, de-duplicated; ws:// or wss:// only. */
  relays: string[];
  /** The client secret key (32 bytes). Never log or print it. */
  secret: Uint8Array;
  /** Public key derived from `secret`; the wallet service knows the connection by it. */
  clientPubkey: string;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const SCHEME = /^nostr\+walletconnect:(?:\/\/)?/i;

/** Host (with port) of a relay URL: what describe() and errors may show. */
export function relayHost(url: string): string {
  try {
    return new URL(url).host || 'invalid-relay';
  } catch {
    return 'invalid-relay';
  }
}

function parseRelay(raw: string, index: number): string {
  const value = raw.trim();
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // The thrown TypeError carries the input in `.input`: never let it travel.
    throw new NwcUriError(`NWC URI: relay #${index + 1} is not a valid URL`);
  }
  if (url.protocol !== 'wss:' && url.protocol !== 'ws:') {
    throw new NwcUriError(`NWC URI: relay #${index + 1} (${url.host || 'no host'}) must be a wss:// or ws:// URL, not ${url.protocol}`);
  }
  if (!url.hostname) throw new NwcUriError(`NWC URI: relay #${index + 1} has no host`);
  if (url.username || url.password) throw new NwcUriError(`NWC URI: relay #${index + 1} (${url.host}) must not carry user:password`);
  return url.href;
}

/**
 * Validates and splits `nostr+walletconnect://<wallet pubkey>?relay=…&relay=…&secret=…[&lud16=…]`.
 * Throws NwcUriError with a message that is safe to log.
 */
export function parseNwcUri(input: unknown): NwcConnection {
  if (typeof input !== 'string' || input.trim() === '') throw new NwcUriError('NWC URI: missing (expected nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<hex>)');
  const text = input.trim();
  const scheme = SCHEME.exec(text);
  if (!scheme) throw new NwcUriError('NWC URI: must start with nostr+walletconnect://');
  const rest = text.slice(scheme[0].length);
  const q = rest.indexOf('?');
  if (q < 0) throw new NwcUriError('NWC URI: has no query string (relay and secret parameters are required)');
  const walletPubkey = rest.slice(0, q).replace(/\/+$/, '');
  if (!HEX64.test(walletPubkey)) {
    throw new NwcUriError(`NWC URI: the wallet service public key must be 64 hex characters (x-only), got ${walletPubkey.length} characters`);
  }
  const params = new URLSearchParams(rest.slice(q + 1));

  const secrets = params.getAll('secret');
  if (secrets.length === 0) throw new NwcUriError('NWC URI: secret parameter is missing');
  if (secrets.length > 1) throw new NwcUriError('NWC URI: secret parameter is given more than once');
  const secretHex = secrets[0]!.trim();
  if (!HEX64.test(secretHex)) throw new NwcUriError('NWC URI: secret must be 64 hex characters (a 32-byte key)');
  const secret = Uint8Array.from(Buffer.from(secretHex, 'hex'));
  let clientPubkey: string;
  try {
    clientPubkey = getPublicKey(secret);
  } catch {
    throw new NwcUriError('NWC URI: secret is not a valid secp256k1 secret key');
  }

  const rawRelays = params.getAll('relay');
  if (rawRelays.length === 0) throw new NwcUriError('NWC URI: at least one relay parameter (wss://…) is required');
  const relays: string[] = [];
  rawRelays.forEach((r, i) => {
    const url = parseRelay(r, i);
    if (!relays.includes(url)) relays.push(url);
  });

  const pubkey = walletPubkey.toLowerCase();
  try {
    // Doing the ECDH now proves the wallet key is a point on the curve, so a typo fails at start.
    getConversationKey(secret, pubkey);
  } catch {
    throw new NwcUriError('NWC URI: the wallet service public key is not a valid secp256k1 x-only key');
  }
  return { walletPubkey: pubkey, relays, secret, clientPubkey };
}
