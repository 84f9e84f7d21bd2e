import type { GateConfig } from '../../config/config.js';
import { MemoryStore } from '../../store/memory-store.js';
import { RedisStore } from '../../store/redis-store.js';
import { SqliteStore } from '../../store/sqlite-store.js';
import type { Store } from '../../store/store.js';

export function openStore(cfg: GateConfig): Store {
  const s = cfg.store;
  if (s.type === 'memory') return new MemoryStore();
  if (s.type === 'sqlite') return new SqliteStore(s.path, s.durability, { backgroundCheckpoints: true });
  return new RedisStore(s.url, s.prefix, cfg.timeouts.storeMs);
}
