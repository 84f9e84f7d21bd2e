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

/** Where a session of another phrase or mailbox is kept aside: beside the file, named by its tag. */
export function archivedSessionPath(path: string, tag: string): string {
  return `${path}.${tag.slice(0, 16)}`;
}

/** The stored session, if the file holds a well-formed one; undefined if absent or corrupt. */
function readStored(path: string): { stored?: Stored; corrupt: boolean } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { corrupt: false };
    // Never replaced on a read error: the keys in it may be the only way back to a paired session.
    throw new Error(`lightning: cannot read the LNC session file ${path} (${code ?? 'read failed'}): give l402d read and write access to it, or remove it to pair again with a new phrase`);
  }
  try {
    const raw = JSON.parse(text) as Partial<Stored>;
    if (raw.v === 1 && typeof raw.pairing === 'string' && /^[0-9a-f]{64}$/.test(raw.pairing) && isHex(raw.local_key, 32)) return { stored: raw as Stored, corrupt: false };
  } catch {
    // corrupt: below
  }
  return { corrupt: true };
}

/**
 * The session for this phrase: the stored one when it matches, else one kept aside earlier for this phrase
 * and mailbox (a mistyped phrase or mailbox in the config, then corrected, gets its paired session back:
 * a phrase pairs only once), else a fresh local key (written before it is used, so a crash mid-pairing
 * cannot leave the node knowing a key we lost). A stored session of another phrase or mailbox is never
 * destroyed: it is kept aside (`archived`), 0600 like the file.
 */
export function loadOrCreateSession(path: string, tag: string): LncSession & { fresh: boolean; replaced: boolean; restored: boolean; archived?: string } {
  const toSession = (st: Stored): LncSession => ({
    localPriv: Buffer.from(st.local_key, 'hex'),
    remotePub: isHex(st.remote_key, 33) ? Buffer.from(st.remote_key, 'hex') : undefined,
  });
  const current = readStored(path);
  if (current.stored?.pairing === tag) {
    try {
      chmodSync(path, 0o600);
    } catch {
      // best effort: a read-only data dir still works
    }
    return { ...toSession(current.stored), fresh: false, replaced: false, restored: false };
  }
  let archived: string | undefined;
  if (current.stored) {
    archived = archivedSessionPath(path, current.stored.pairing);
    renameSync(path, archived);
  }
  const keptPath = archivedSessionPath(path, tag);
  const kept = readStored(keptPath);
  if (kept.stored?.pairing === tag) {
    renameSync(keptPath, path);
    chmodSync(path, 0o600);
    return { ...toSession(kept.stored), fresh: false, replaced: !!current.stored || current.corrupt, restored: true, archived };
  }
  const localPriv = newPrivateKey();
  write(path, { v: 1, pairing: tag, local_key: localPriv.toString('hex') });
  return { localPriv, remotePub: undefined, fresh: true, replaced: !!current.stored || current.corrupt, restored: false, archived };
}

/** Records the node's static key after a successful pairing. */
export function saveRemoteKey(path: string, tag: string, s: LncSession): void {
  write(path, { v: 1, pairing: tag, local_key: s.localPriv.toString('hex'), ...(s.remotePub ? { remote_key: s.remotePub.toString('hex') } : {}) });
}
