// x402's `resource.url`: the URL a PAYMENT-REQUIRED offer is for, built from the Host nginx (or the standalone
// listener) saw and the request's raw target. Both are the client's: the Host is kept only in a host's form, and
// the target only as long as a rendered answer's headers stay well within what nginx reads of l402d's answer
// (proxy_buffer_size 32k in server.conf). A target as long as an operator's large_client_header_buffers lets
// through (a 40 KB query) made the offer alone larger than that, and nginx turned the 402 into a 503.

/** Longest request target named in full; a longer one is named without its query, then cut. */
export const MAX_RESOURCE_TARGET = 2048;

const HOST_FORM = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/;

/**
 * The resource URL for an x402 offer: `https://<host><target>` when the host has a host's form, else the target
 * alone. A target longer than MAX_RESOURCE_TARGET loses its query, and a path still longer is cut there (never
 * inside a %XX escape). The URL only describes the offer: what it pays for is bound by the offer's id.
 */
export function x402ResourceUrl(host: string | undefined, target: string): string {
  const h = host !== undefined && HOST_FORM.test(host) ? host : undefined;
  let t = target;
  if (t.length > MAX_RESOURCE_TARGET) {
    const q = t.indexOf('?');
    if (q >= 0) t = t.slice(0, q);
  }
  if (t.length > MAX_RESOURCE_TARGET) t = t.slice(0, MAX_RESOURCE_TARGET).replace(/%[0-9A-Fa-f]?$/, '');
  return h ? `https://${h}${t.startsWith('/') ? t : '/'}` : t;
}
