// Standalone proxy: whose failure ended a proxied request before its answer reached the client. A payment is
// given back only for the upstream's own failure (security.md H); a client that stalls, breaks or abandons its
// own request body never gets it back, whatever the upstream then does.
import type { Duplex } from 'node:stream';
import type { Rendered } from './render.js';

export type ProxyFailure =
  /**
   * The upstream failed (refused, reset, silent for upstream_timeout_ms, an answer l402d cannot read) before its
   * answer reached the client. `answered`: it had sent a byte of an answer (it handled the request).
   * `releasable`: the client's whole request had reached l402d (or nothing at all reached the upstream) and the
   * client is still there. A payment may go back only when answered is false and releasable true.
   */
  | { by: 'upstream'; status: 502 | 504; answered: boolean; releasable: boolean }
  /** The client stopped sending its request body (`timeout`), or sent a broken one (`malformed`). */
  | { by: 'client'; why: 'timeout' | 'malformed' };

/**
 * Connections whose request body a standalone proxy is reading or whose answer it still owes, with what to do
 * when Node's parser gives up on the body (its requestTimeout, a malformed or truncated body): the proxy
 * answers (once; later errors are its to ignore), never a raw reply written over a response in flight, and
 * nothing is given back.
 */
const readingBody = new WeakMap<Duplex, (why: 'timeout' | 'malformed') => void>();

export function watchBody(socket: Duplex, onClientFailure: (why: 'timeout' | 'malformed') => void): void {
  readingBody.set(socket, onClientFailure);
}

/** Stops watching, if `onClientFailure` is still the one watching (a pipelined request may have taken over). */
export function unwatchBody(socket: Duplex, onClientFailure: (why: 'timeout' | 'malformed') => void): void {
  if (readingBody.get(socket) === onClientFailure) readingBody.delete(socket);
}

/** For the server's clientError: true when a standalone proxy owns this connection's answer and took the error. */
export function bodyClientError(socket: Duplex, code: string | undefined): boolean {
  const f = readingBody.get(socket);
  if (!f) return false;
  // The client went away (reset): nobody to answer; the proxy sees its response close and ends the upstream's.
  if (code === 'ECONNRESET' || !socket.writable) socket.destroy();
  else f(code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'malformed');
  return true;
}

/**
 * The answer to a client whose own request body ended the request: 408 when it stopped sending (as nginx's
 * client_body_timeout), 400 when it was broken. `paid`: a payment was taken for it, and stays taken.
 */
export function clientBodyFailure(why: 'timeout' | 'malformed', paid: boolean, method: string): Rendered {
  const [status, title, reason] = why === 'timeout' ? [408, 'Request Timeout', 'request_timeout'] : [400, 'Bad Request', 'bad_request_body'];
  const detail =
    (why === 'timeout' ? 'the request body did not arrive in time' : 'the request body was malformed or cut short') +
    (paid ? '; the payment for this request counts as used' : '');
  const body = `${JSON.stringify({ type: `urn:l402:problem:${reason.replace(/_/g, '-')}`, title, status, reason, ...(paid ? { payment: 'consumed' } : {}), detail })}\n`;
  return {
    status,
    headers: [
      ['Content-Type', 'application/problem+json'],
      ['Cache-Control', 'no-store'],
      ['Connection', 'close'],
    ],
    body: method === 'HEAD' ? '' : body,
  };
}
