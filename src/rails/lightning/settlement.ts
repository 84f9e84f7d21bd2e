// Auto-detect settlement: "has this invoice been paid?", answered by the backend, bounded in time and
// cached in the store. Only a settled marker is cached, never the preimage (whoever reads the store
// must not be able to build credentials from it).
import type { Store } from '../../store/store.js';
import { withTimeout } from '../../util/timeout.js';
import type { LightningBackend } from './backend.js';
import { preimageMatches } from '../../protocol/caveats.js';
import { storeKeys } from '../../policy/store-keys.js';

export const settledKey = storeKeys.settled;

export function createSettlementCheck(backend: LightningBackend, store: Store, opts: { timeoutMs: number; storeTimeoutMs: number; cacheSecs: number }) {
  const lookup = backend.lookupInvoice?.bind(backend);
  if (!lookup) return undefined;
  const check = async (paymentHash: Buffer): Promise<boolean> => {
    const key = settledKey(paymentHash);
    if ((await withTimeout(store.get(key), opts.storeTimeoutMs, 'store get')) === '1') return true;
    const state = await withTimeout(lookup(paymentHash, AbortSignal.timeout(opts.timeoutMs)), opts.timeoutMs, 'lookupInvoice');
    // A backend that claims settlement must prove it with the preimage.
    if (state.state !== 'settled' || !preimageMatches(state.preimage, paymentHash)) return false;
    await withTimeout(store.set(key, '1', opts.cacheSecs), opts.storeTimeoutMs, 'store set');
    return true;
  };
  // Concurrent questions about one invoice share one lookup: a storm of requests carrying the same unpaid
  // macaroon (auto-detect, the payment page's status) or x402 invoice costs the node one call at a time, not one
  // each. Nothing is remembered once it is answered (a payment made meanwhile is seen by the next question).
  const inFlight = new Map<string, Promise<boolean>>();
  return (paymentHash: Buffer): Promise<boolean> => {
    const id = paymentHash.toString('hex');
    let p = inFlight.get(id);
    if (!p) {
      p = check(paymentHash).finally(() => inFlight.delete(id));
      inFlight.set(id, p);
    }
    return p;
  };
}
