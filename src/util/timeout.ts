import { setTimeout as delay } from 'node:timers/promises';

/** Rejects when `p` has not settled after `ms`; every outside call on a request path goes through this. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Resolves after `ms` (rejects with an AbortError when `signal` aborts first). `ref: false` does not keep the
 * process alive for it. The one sleep of the repo: tests and benches import it too.
 */
export function sleep(ms: number, o: { signal?: AbortSignal; ref?: boolean } = {}): Promise<void> {
  return delay(ms, undefined, { signal: o.signal, ref: o.ref ?? true });
}
