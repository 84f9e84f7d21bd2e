// Bounded waits for tests: poll until a condition holds, a LIFO cleanup stack. One sleep and one withTimeout
// for the whole repo: src/util/timeout.ts (re-exported here for tests).
import { sleep, withTimeout } from '../../src/util/timeout.js';

export { sleep, withTimeout } from '../../src/util/timeout.js';

/** Default bound for every wait in the support modules. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Last `lines` lines of a text (for error messages). */
export function tail(text: string, lines = 40): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * Polls `check` every `intervalMs` until it returns a truthy value (which is returned), or
 * throws `Error("timed out after Nms waiting for <what>")` plus `details()` when given.
 * Errors thrown by `check` count as "not yet" (the last one is quoted in the timeout error).
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; details?: () => string } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      if (err instanceof FatalWaitError) throw err;
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      let msg = `timed out after ${timeoutMs}ms waiting for ${what}`;
      if (lastErr) msg += `\nlast error: ${String((lastErr as Error)?.message ?? lastErr)}`;
      const extra = opts.details?.();
      if (extra) msg += `\n${extra}`;
      throw new Error(msg);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/** Thrown from a waitFor() check to abort the wait immediately (e.g. the process died). */
export class FatalWaitError extends Error {}

/**
 * A LIFO stack of async stoppers. Register everything you start, then call `run()` from
 * `t.after()` / `after()` so it runs even when the test fails. `run()` calls every stopper
 * (last registered first), even if some throw, then throws an AggregateError of failures.
 */
export class Cleanup {
  private readonly stack: Array<{ name: string; fn: () => unknown }> = [];

  /** Registers an arbitrary stopper. */
  add(fn: () => unknown, name = `cleanup #${this.stack.length + 1}`): void {
    this.stack.push({ name, fn });
  }

  /** Registers `resource.stop()` and returns the resource, e.g. `cleanup.use(await startRedis())`. */
  use<R extends { stop(): unknown }>(resource: R, name?: string): R {
    this.add(() => resource.stop(), name);
    return resource;
  }

  /** Runs all stoppers in reverse order; idempotent (the stack is emptied). */
  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.stack.length > 0) {
      const { name, fn } = this.stack.pop()!;
      try {
        await withTimeout(Promise.resolve().then(fn), DEFAULT_TIMEOUT_MS + 5_000, `cleanup step ${name}`);
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
  }
}
