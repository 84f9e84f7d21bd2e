// Secret files (keys, seeds): created 0600 in a 0700 directory, atomically, so a concurrent reader sees no
// file or a whole one, and when two processes race to create one, both end up using the same file.
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Creates `path` with `content` unless it already exists (then the existing file wins). */
export function createPrivateFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/** The file's text, creating it first with `make()` when it does not exist. */
export function readOrCreatePrivateFile(path: string, make: () => string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  createPrivateFile(path, make());
  return readFileSync(path, 'utf8');
}
