import { setTimeout as delay } from 'node:timers/promises';

export interface TimeoutOptions {
  /** Gives up early when this aborts, rejecting with `abortError()`. */
  signal?: AbortSignal;
  /** The rejection on timeout (default: "<what> timed out after <ms> ms"). */
  timeoutError?: () => Error;
  abortError?: () => Error;
  /** Runs once when the wait is given up (timeout or abort): closes what `p` may still open later. */
  onGiveUp?: () => void;
}

/** Rejects when `p` has not settled after `ms`; every outside call on a request path goes through this. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, o?: TimeoutOptions): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const t = new Promise<never>((_, reject) => {
    const giveUp = (e: Error): void => {
      o?.onGiveUp?.();
      reject(e);
    };
    if (o?.signal?.aborted) return giveUp(o.abortError?.() ?? new Error(`${what} aborted`));
    timer = setTimeout(() => giveUp(o?.timeoutError?.() ?? new Error(`${what} timed out after ${ms} ms`)), ms);
    if (o?.signal) {
      onAbort = () => giveUp(o.abortError?.() ?? new Error(`${what} aborted`));
      o.signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  return Promise.race([p, t]).finally(() => {
    clearTimeout(timer);
    if (onAbort) o?.signal?.removeEventListener('abort', onAbort);
  });
}

/**
 * Resolves after `ms` (rejects with an AbortError when `signal` aborts first). `ref: false` does not keep the
 * process alive for it. The one sleep of the repo: tests and benches import it too.
 */
export function sleep(ms: number, o: { signal?: AbortSignal; ref?: boolean } = {}): Promise<void> {
  return delay(ms, undefined, { signal: o.signal, ref: o.ref ?? true });
}
