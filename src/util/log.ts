import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Standard output, written asynchronously: a decision logged on every request must not wait for the write
 * (a synchronous write per line cost more than the decision itself). Lines are batched into writes of at most
 * 4 KiB (PIPE_BUF), whole lines only, so workers sharing one stdout never interleave within a line; pino
 * flushes what is left when the process exits. If stdout stops draining, lines past 16 MiB are dropped rather
 * than growing the heap.
 */
function stdoutDestination(): NodeJS.WritableStream {
  return pino.destination({ dest: 1, sync: false, minLength: 0, maxWrite: 4096, maxLength: 16 * 1024 * 1024 }) as unknown as NodeJS.WritableStream;
}

/**
 * Structured logs. We never pass credentials to the logger; the redact list is a second line of defence
 * in case a header object or config ever slips into a log call.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = stdoutDestination()): Logger {
  return pino(
    {
      level,
      base: { svc: 'l402d' },
      redact: {
        paths: [
          'root_key', 'rootKey', 'preimage', 'macaroon', 'authorization', 'headers.authorization', 'headers.cookie',
          'req.headers.authorization', 'config.rootKey', 'config.previousRootKeys', 'config.ngxL402RootKey', '*.rootKey', '*.ngxL402RootKey', '*.preimage', '*.macaroon',
        ],
        censor: '[redacted]',
      },
    },
    destination as never,
  );
}
