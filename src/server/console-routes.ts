// The console's two endpoints on the metrics listener (behind its token): /console (HTML) and /console.json.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gate } from './gate.js';
import { balanceLeft, consoleData, type ConsoleData } from './console-data.js';
import { CONSOLE_HEADERS, consolePage } from './console-page.js';
import { withTimeout } from '../util/timeout.js';
import type { Logger } from '../util/log.js';
import { errorShape } from './process-policy.js';

export const CONSOLE_PATHS = new Set(['/console', '/console.json']);

/** A backend check at most this often (page views never drive the node harder). */
const HEALTH_CACHE_MS = 15_000;
const CHECK_MS = 3000;

export interface ConsoleSource {
  data(): Promise<ConsoleData>;
  service(): string;
}

/** Reads the console's data through the running gate (the current one after a reload). */
export function gateConsoleSource(current: () => Gate): ConsoleSource {
  let health: { at: number; value: Promise<NonNullable<ConsoleData['backend']>> } | undefined;
  const backendHealth = (g: Gate) => {
    if (!health || Date.now() - health.at > HEALTH_CACHE_MS) {
      const b = g.parts.backend;
      const at = new Date().toISOString();
      const check = b.check ? withTimeout(b.check(AbortSignal.timeout(CHECK_MS)), CHECK_MS + 500, 'backend check') : Promise.resolve('no check for this backend');
      health = {
        at: Date.now(),
        // Backend messages name addresses and paths, never credentials (backend.ts).
        value: check.then(
          (detail) => ({ kind: b.kind, description: b.describe(), ok: true, detail: String(detail).slice(0, 200), checked_at: at }),
          (e: Error) => ({ kind: b.kind, description: b.describe(), ok: false, detail: String(e.message).slice(0, 200), checked_at: at }),
        ),
      };
    }
    return health.value;
  };
  return {
    service: () => current().parts.config.service,
    async data() {
      const g = current();
      const { store, config } = g.parts;
      const storeOk = withTimeout(store.ping(), Math.max(config.timeouts.storeMs, 1000), 'store ping').then(
        () => ({ kind: store.kind, ok: true }),
        (e: Error) => ({ kind: store.kind, ok: false, detail: e.message.slice(0, 200) }),
      );
      const [d, backend, st] = await Promise.all([withTimeout(consoleData(store.ledger(), { balanceOf: balanceLeft(store) }), 5000, 'console data'), backendHealth(g), storeOk]);
      return { ...d, backend, store: st };
    },
  };
}

export function serveConsole(path: string, req: IncomingMessage, res: ServerResponse, source: ConsoleSource, log: Logger): void {
  source.data().then(
    (d) => {
      // Rendering is ours, on data read from the store: a throw here (a row the page cannot show) is this
      // request's 500, never an error that escapes the listener and ends the process.
      let body: string;
      try {
        body = path === '/console.json' ? JSON.stringify(d, null, 2) + '\n' : consolePage(d, { service: source.service() });
      } catch (e) {
        log.error({ event: 'console_render_failed', err: errorShape(e) }, 'console render failed');
        return failed(res, 500);
      }
      if (path === '/console.json') {
        res.setHeader('Content-Type', 'application/json');
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-Content-Type-Options', 'nosniff');
      } else for (const [k, v] of CONSOLE_HEADERS) res.setHeader(k, v);
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    (e: Error) => {
      log.error({ err: e.message }, 'console render failed');
      failed(res, 503);
    },
  ).catch((e: unknown) => {
    log.error({ event: 'console_render_failed', err: errorShape(e) }, 'console answer failed');
    failed(res, 500);
  });
}

/** A bodiless error answer, or the connection closed when an answer had begun (both listeners' last resort). */
export function failed(res: ServerResponse, status: 500 | 503): void {
  if (res.headersSent) return void res.destroy();
  res.statusCode = status;
  res.setHeader('Cache-Control', 'no-store');
  if (status === 503) res.setHeader('Retry-After', '5');
  res.end();
}
