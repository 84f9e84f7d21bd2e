import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, loadConfigFile, parseConfig, type GateConfig } from '../config/config.js';
import { DEFAULT_CONFIG_YAML } from './defaults.js';

/** --config FILE, else $L402_CONFIG, else the embedded development defaults (`explicit` false). */
export function resolveConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { config: GateConfig; source: string; explicit: boolean } {
  const path = file ?? env.L402_CONFIG;
  if (path) return { config: loadConfigFile(path, env), source: path, explicit: true };
  return { config: parseConfig(DEFAULT_CONFIG_YAML, { source: '(embedded defaults)', env }), source: '(embedded defaults)', explicit: false };
}

/** Where a command without --config (or $L402_CONFIG) would read and write: said, so nobody mistakes it for the gate's. */
export function embeddedDefaultsNote(config: GateConfig): string {
  return `no --config and no $L402_CONFIG: the embedded development defaults (data dir ${config.dataDir}, ${describeStore(config)})`;
}

/** The store a config names, for messages: where a command reads and writes. Never a password. */
export function describeStore(config: GateConfig): string {
  const s = config.store;
  if (s.type === 'sqlite') return `sqlite ${resolve(s.path)}`;
  if (s.type === 'memory') return 'memory (inside the l402d process only)';
  // userinfo and query (passwords) left out: everything up to the last '@', since a password written
  // unencoded may itself hold '/', '@' or '?'
  const noQuery = s.url.replace(/\?.*$/, '');
  const at = s.url.lastIndexOf('@');
  const url = at < 0 ? noQuery : `${/^[a-z+]+:(\/\/)?/i.exec(s.url)?.[0] ?? ''}${s.url.slice(at + 1).replace(/\?.*$/, '')}`;
  return `redis ${url} (prefix ${s.prefix})`;
}

/**
 * For commands that use only part of the config (nginx-conf): `${VAR}`s that are not set get a distinct
 * placeholder each, so an unset secret of another section (a backend password) does not stop them.
 * `placeholders` maps each placeholder to its variable: the caller refuses output that contains one. When
 * a placeholder itself does not validate, the config is loaded with the real environment, whose error
 * names the unset variable.
 */
export function resolveConfigAllowingUnsetVars(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { config: GateConfig; source: string; placeholders: Map<string, string> } {
  const path = file ?? env.L402_CONFIG;
  const none = new Map<string, string>();
  if (!path) return { ...resolveConfig(undefined, env), placeholders: none };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { config: loadConfigFile(path, env), source: path, placeholders: none };
  }
  const unset = [...new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!))].filter((n) => env[n] === undefined);
  if (unset.length === 0) return { config: loadConfigFile(path, env), source: path, placeholders: none };
  // 64 hex characters: passes as a secret, a token or a file name; fails as a number, a URL or an address.
  const placeholders = new Map(unset.map((n) => [createHash('sha256').update(`l402d unset variable ${n}`).digest('hex'), n] as const));
  const withPlaceholders: NodeJS.ProcessEnv = { ...env };
  for (const [p, n] of placeholders) withPlaceholders[n] = p;
  let config: GateConfig;
  try {
    config = loadConfigFile(path, withPlaceholders);
  } catch {
    return { config: loadConfigFile(path, env), source: path, placeholders: none };
  }
  return { config, source: path, placeholders };
}

export { ConfigError };
