// Browser-facing helpers of the payment page, under /_l402/page/ (proxied by nginx's server.conf).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gate } from './gate.js';

/** Returns true when it handled the request. */
export async function handlePageEndpoint(_gate: Gate, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (!(req.url ?? '').startsWith('/_l402/page/')) return false;
  res.statusCode = 404;
  res.end();
  return true;
}
