import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured logs. We never pass credentials to the logger; the redact list is a second line of defence
 * in case a header object or config ever slips into a log call.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
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
