import type { GateConfig } from '../../config/config.js';
import type { Logger } from '../../util/log.js';
import { createLogger } from '../../util/log.js';
import type { LightningBackend } from '../../rails/lightning/backend.js';
import { createBackend } from '../../rails/lightning/registry.js';

export function openBackend(cfg: GateConfig, log: Logger = createLogger('silent')): Promise<LightningBackend> {
  return createBackend(cfg.lightning, { configDir: cfg.configDir, dataDir: cfg.dataDir, log, timeoutMs: cfg.timeouts.backendMs });
}
