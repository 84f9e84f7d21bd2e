import { ConfigError, loadConfigFile, parseConfig, type GateConfig } from '../policy/config.js';
import { DEFAULT_CONFIG_YAML } from './defaults.js';

/** --config FILE, else $L402_CONFIG, else the embedded development defaults. */
export function resolveConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { config: GateConfig; source: string } {
  const path = file ?? env.L402_CONFIG;
  if (path) return { config: loadConfigFile(path, env), source: path };
  return { config: parseConfig(DEFAULT_CONFIG_YAML, { source: '(embedded defaults)', env }), source: '(embedded defaults)' };
}

export { ConfigError };
