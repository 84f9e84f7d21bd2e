// The dev wallet's master key: file I/O at the edge, so protocol/root-key.ts stays pure (node:crypto only).
import { randomBytes } from 'node:crypto';
import { parseRootKey } from '../protocol/root-key.js';
import { readOrCreatePrivateFile } from '../util/private-file.js';

/** Dev-only convenience: a generated key kept in the data dir with 0600 permissions. */
export function loadOrCreateDevRootKey(path: string): Buffer {
  return parseRootKey(readOrCreatePrivateFile(path, () => randomBytes(32).toString('hex') + '\n'), path);
}
