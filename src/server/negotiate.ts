// Which body a client gets: JSON problem details unless it clearly prefers HTML (a browser).
import { trimOws } from '../protocol/ows.js';

function q(accept: string, type: string): number {
  let best = -1;
  let bestSpecificity = -1;
  const [major] = type.split('/');
  for (const part of accept.split(',')) {
    const [rangeRaw, ...params] = part.trim().split(';');
    const range = (rangeRaw ?? '').trim().toLowerCase();
    const specificity = range === type ? 2 : range === `${major}/*` ? 1 : range === '*/*' ? 0 : -1;
    if (specificity < 0 || specificity < bestSpecificity) continue;
    let qv = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) qv = Math.min(1, Math.max(0, Number(m[1])));
    }
    if (specificity > bestSpecificity || qv > best) {
      best = qv;
      bestSpecificity = specificity;
    }
  }
  return best;
}

export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const html = q(accept, 'text/html');
  const json = Math.max(q(accept, 'application/json'), q(accept, 'application/problem+json'));
  return html > 0 && html > json;
}

/**
 * A gRPC call: a gRPC content type over HTTP/2. `protocol` is nginx's $server_protocol (X-Original-Protocol);
 * over HTTP/1.1 the header alone must not turn a 402 into gRPC's HTTP 200 + grpc-status. Snippets from
 * before that header existed send none: then the content type decides, as it did.
 */
export function isGrpc(contentType: string | undefined, protocol?: string): boolean {
  if (protocol !== undefined && !/^HTTP\/2(\.0)?$/i.test(protocol.trim())) return false;
  // HTTP whitespace only (SP, HTAB): what upstream.conf's map recognises as gRPC when it strips the metadata.
  return !!contentType && /^application\/grpc(\+|;|$)/i.test(trimOws(contentType));
}
