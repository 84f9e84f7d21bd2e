// What an LNC pairing leaves behind: our static private key and the node's static public key. With both,
// later connections run the KK handshake on a stream id derived from the two keys, so a restart needs no
// new pairing phrase (a phrase is good for one pairing). The file is a secret (whoever has the private
// key can act as this client): 0600 in a 0700 directory, replaced atomically, never logged. It also
// records a one-way tag of the phrase it was paired with, so a new phrase in the config starts a new
// pairing instead of reusing keys of an old session.
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { newPrivateKey } from './noise.js';

export const SESSION_FILE = 'lnc-session.json';

export interface LncSession {
  localPriv: Buffer;
  remotePub: Buffer | undefined;
}

export function sessionPath(dataDir: string): string {
  return join(dataDir, SESSION_FILE);
}

/** One-way tag binding the stored keys to the phrase and mailbox they were paired with. */
export function pairingTag(entropy: Buffer, mailbox: string): string {
  return createHmac('sha256', entropy).update(`l402d lnc session\0${mailbox.toLowerCase()}`).digest('hex');
}

interface Stored {
  v: 1;
  pairing: string;
  local_key: string;
  remote_key?: string;
}

function write(path: string, data: Stored): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify(data) + '\n');
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}

function isHex(v: unknown, bytes: number): v is string {
  return typeof v === 'string' && v.length === bytes * 2 && /^[0-9a-f]+$/.test(v);
}

/**
 * The session for this phrase: the stored one when it matches, else a fresh local key (written before
 * it is used, so a crash mid-pairing cannot leave the node knowing a key we lost). `fresh` says which.
 */
export function loadOrCreateSession(path: string, tag: string): LncSession & { fresh: boolean; replaced: boolean } {
  let replaced = false;
  try {
    const raw = JSON.parse(readFileSync(path, 'utf8')) as Partial<Stored>;
    if (raw.v === 1 && raw.pairing === tag && isHex(raw.local_key, 32)) {
      try {
        chmodSync(path, 0o600);
      } catch {
        // best effort: a read-only data dir still works
      }
      return {
        localPriv: Buffer.from(raw.local_key, 'hex'),
        remotePub: isHex(raw.remote_key, 33) ? Buffer.from(raw.remote_key, 'hex') : undefined,
        fresh: false,
        replaced: false,
      };
    }
    replaced = true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') replaced = true; // unreadable or corrupt: start over, without quoting it
  }
  const localPriv = newPrivateKey();
  write(path, { v: 1, pairing: tag, local_key: localPriv.toString('hex') });
  return { localPriv, remotePub: undefined, fresh: true, replaced };
}

/** Records the node's static key after a successful pairing. */
export function saveRemoteKey(path: string, tag: string, s: LncSession): void {
  write(path, { v: 1, pairing: tag, local_key: s.localPriv.toString('hex'), ...(s.remotePub ? { remote_key: s.remotePub.toString('hex') } : {}) });
}
