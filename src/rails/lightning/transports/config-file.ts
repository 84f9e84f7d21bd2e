// Files a backend's config points at (TLS and CA certificates, macaroons, password, rune and URI files): resolved against
// the config file's directory (`~` is the home directory), read at start, errors naming the key and path.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

export function resolveConfigPath(p: string, configDir: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return isAbsolute(p) ? p : resolve(configDir, p);
}

/** Why a read failed, in words for the common cases, keeping the error code for searching. */
function readFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? `permission denied for uid ${process.getuid?.() ?? '?'}` : code === 'EISDIR' ? 'is a directory' : undefined;
  return why ? `${why} (${code})` : (code ?? (e as Error).message);
}

/** Never includes the file's contents in an error (they may be secrets). */
export function readConfigFile(key: string, p: string, configDir: string, makeError: (message: string) => Error = (m) => new Error(m)): Buffer {
  const full = resolveConfigPath(p, configDir);
  try {
    return readFileSync(full);
  } catch (e) {
    throw makeError(`lightning.${key}: cannot read ${key} ${full}: ${readFailure(e)}`);
  }
}
