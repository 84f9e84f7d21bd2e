// What l402d does with an error that nothing caught. Every request path and background task catches its own
// errors and fails closed locally (a 500/503 for that request, a logged error for a timer); this is the net
// under them. One l402d serves every protected route, so its death is an outage for all of them:
//
// - An unhandled promise rejection is a task that failed after its caller stopped waiting for it. Node's default
//   (since v15) ends the process. The process's state is as it was (a promise settles, nothing half-done in
//   between), and every decision already fails closed, so l402d logs it as an error and keeps serving.
// - An uncaught exception was thrown out of a callback in the middle of whatever it was doing: a claim taken and
//   not answered, a stream half written, a handler never run again. That state is unknown, so l402d logs it and
//   exits non-zero (EXIT_UNCAUGHT): its supervisor (systemd's Restart=on-failure, the cluster primary for
//   `workers: N`) starts a fresh process, and nginx retries the requests in flight on another one.
//
// Neither log line carries the error's message: an unexpected error may quote its input (JSON.parse does), and
// that input may be a credential. The error's kind, code and where it was thrown are what a bug report needs.
import type { Logger } from '../util/log.js';

/** The exit code after an uncaught exception (EX_SOFTWARE: an internal software error). */
export const EXIT_UNCAUGHT = 70;

const FRAMES = 8;

/** An error as something safe to log: its kind, code and stack frames, never its message. */
export function errorShape(e: unknown): { kind: string; code?: string; at?: string[] } {
  if (!(e instanceof Error)) return { kind: e === null ? 'null' : typeof e };
  const code = (e as NodeJS.ErrnoException).code;
  const at = (e.stack ?? '')
    .split('\n')
    .filter((l) => /^\s+at /.test(l))
    .slice(0, FRAMES)
    .map((l) => l.trim().slice(0, 300));
  return { kind: e.name || 'Error', ...(typeof code === 'string' ? { code: code.slice(0, 64) } : {}), ...(at.length ? { at } : {}) };
}

/**
 * Runs a background task's step (a timer's callback): a throw or a rejection is logged as an error, never
 * left to crash the process. The next tick of the timer runs again.
 */
export function runGuarded(log: Logger, task: string, step: () => unknown): void {
  try {
    const r = step();
    if (r instanceof Promise) r.catch((e: unknown) => log.error({ event: 'background_task_failed', task, err: errorShape(e) }, `${task} failed (tried again on its next run)`));
  } catch (e) {
    log.error({ event: 'background_task_failed', task, err: errorShape(e) }, `${task} failed (tried again on its next run)`);
  }
}

let installed: { rejection: (e: unknown) => void; exception: (e: unknown) => void } | undefined;

/** Installs the policy above for this process (once; `l402d start` and each worker call it). */
export function installProcessPolicy(log: Logger, exit: (code: number) => void = (code) => process.exit(code)): void {
  if (installed) return;
  const rejection = (e: unknown) => {
    log.error({ event: 'unhandled_rejection', err: errorShape(e) }, 'an asynchronous task failed with nothing to catch it; l402d keeps serving (please report it)');
  };
  const exception = (e: unknown) => {
    try {
      log.fatal({ event: 'uncaught_exception', err: errorShape(e) }, `uncaught exception: l402d exits (code ${EXIT_UNCAUGHT}) for its supervisor to start a fresh process (please report it)`);
      log.flush?.();
    } finally {
      exit(EXIT_UNCAUGHT);
    }
  };
  process.on('unhandledRejection', rejection);
  process.on('uncaughtException', exception);
  installed = { rejection, exception };
}
