// cashu-ts Wallet objects (swap, melt) per mint, fed from our verified keyset cache, with NUT-13
// deterministic outputs whose counters live in the wallet database (so change and swap outputs are
// restorable from the seed, and several processes never reuse a counter).
import { AsyncLocalStorage } from 'node:async_hooks';
import { Mint, Wallet, type CounterSource, type KeyChainCache, type MintKeyset, type RequestFn } from '@cashu/cashu-ts';
import { cashuRequestFn, type MintDirectory } from './mint-client.js';
import type { WalletDb } from './wallet-db.js';

const sends = new AsyncLocalStorage<{ sent: boolean }>();

/**
 * Runs a wallet operation and tells afterwards whether any request of it left for the mint. When one did
 * and its answer is missing or unusable, the mint may have acted on it (a timeout, a cut connection, a
 * proxy's 502 after the mint committed, an answer cashu-ts refuses): only then is the outcome unknown.
 */
export function trackSends<T>(op: () => Promise<T>): { result: Promise<T>; sent(): boolean } {
  const flag = { sent: false };
  return { result: sends.run(flag, op), sent: () => flag.sent };
}

export class WalletPool {
  private readonly wallets = new Map<string, { wallet: Wallet; version: string }>();
  private readonly counters: CounterSource;

  constructor(
    db: WalletDb,
    private readonly directory: MintDirectory,
    private readonly seed: Uint8Array,
    private readonly unit: string,
    private readonly timeoutMs: number,
    /** Bound on cached wallets: one per accepted mint. */
    private readonly maxWallets: number,
  ) {
    this.counters = {
      reserve: async (keysetId: string, n: number) => ({ start: db.reserveCounters(keysetId, n), count: n }),
      advanceToAtLeast: async (keysetId: string, minNext: number) => db.counterAtLeast(keysetId, minNext),
    };
  }

  /** A wallet for `mint` whose keychain matches the directory's current keysets. */
  async get(mint: string, signal?: AbortSignal): Promise<Wallet> {
    const keysets = await this.directory.ensure(mint, { signal });
    const info = this.directory.info(mint) ?? (await this.directory.loadInfo(mint, signal));
    // Rebuilt when keysets appear or change state: outputs must go to a currently active keyset.
    const version = [...keysets.values()].map((k) => `${k.id}:${k.active ? 1 : 0}:${k.inputFeePpk}`).join(',');
    const cached = this.wallets.get(mint);
    if (cached && cached.version === version) return cached.wallet;
    const transport = cashuRequestFn(this.timeoutMs);
    const tracked = ((args: Parameters<RequestFn>[0]) => {
      const flag = sends.getStore();
      if (flag) flag.sent = true;
      return transport(args);
    }) as RequestFn;
    const wallet = new Wallet(new Mint(mint, { customRequest: tracked }), {
      unit: this.unit,
      bip39seed: this.seed,
      counterSource: this.counters,
    });
    const cache: KeyChainCache = {
      mintUrl: mint,
      savedAt: Date.now(),
      keysets: [...keysets.values()].map((k) => {
        const meta: MintKeyset = { id: k.id, unit: k.unit, active: k.active, input_fee_ppk: k.inputFeePpk };
        if (k.finalExpiry !== undefined) meta.final_expiry = k.finalExpiry;
        return { ...meta, keys: k.keys };
      }),
    };
    wallet.loadMintFromCache(info, cache);
    this.wallets.delete(mint);
    this.wallets.set(mint, { wallet, version });
    if (this.wallets.size > this.maxWallets) this.wallets.delete(this.wallets.keys().next().value!);
    return wallet;
  }
}
