// cashu-ts Wallet objects (swap, melt) per mint, fed from our verified keyset cache, with NUT-13
// deterministic outputs whose counters live in the wallet database (so change and swap outputs are
// restorable from the seed, and several processes never reuse a counter).
import { Mint, Wallet, type CounterSource, type KeyChainCache, type MintKeyset } from '@cashu/cashu-ts';
import { cashuRequestFn, type MintDirectory } from './mint-client.js';
import type { WalletDb } from './wallet-db.js';

export class WalletPool {
  private readonly wallets = new Map<string, { wallet: Wallet; version: string }>();
  private readonly counters: CounterSource;

  constructor(
    db: WalletDb,
    private readonly directory: MintDirectory,
    private readonly seed: Uint8Array,
    private readonly unit: string,
    private readonly timeoutMs: number,
    /** Bound on cached wallets (any-mint standard mode meets many mints). */
    private readonly maxWallets = 32,
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
    const version = [...keysets.values()].map((k) => `${k.id}:${k.active ? 1 : 0}`).join(',');
    const cached = this.wallets.get(mint);
    if (cached && cached.version === version) return cached.wallet;
    const wallet = new Wallet(new Mint(mint, { customRequest: cashuRequestFn(this.timeoutMs) }), {
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
