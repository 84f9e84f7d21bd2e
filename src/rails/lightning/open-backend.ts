import type { GateConfig } from '../../policy/config.js';
import type { LightningBackend } from './backend.js';
import { DevWallet } from './dev-wallet.js';

export function openBackend(cfg: GateConfig): LightningBackend {
  switch (cfg.lightning.type) {
    case 'dev':
      return DevWallet.open(cfg.dataDir);
  }
}
