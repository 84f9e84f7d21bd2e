// Which Host headers the loopback listeners answer. A web page in a browser on the same host can reach a
// loopback listener by DNS rebinding (its own domain made to resolve to 127.0.0.1) and read the answers as
// same-origin; such a request names that domain in Host, which no legitimate caller of these listeners does.

/**
 * The metrics and console listener without a token (loopback, as start-up insists, or an SSH tunnel to it):
 * only an IP literal or `localhost` (RFC 6761: never resolved elsewhere).
 */
export function localHostHeader(host: string | undefined): boolean {
  if (host === undefined) return true;
  const h = host.toLowerCase();
  return /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\]|localhost|[a-z0-9-]+(\.[a-z0-9-]+)*\.localhost)\.?(:\d{1,5})?$/.test(h);
}

/**
 * A Host nginx sends to l402d: its upstream block's name (one label, `l402d`) or an address (an IP literal,
 * `localhost`, a unix socket's `localhost`); never a domain name, which is what a rebound page sends.
 */
export function nginxHostHeader(host: string | undefined): boolean {
  return localHostHeader(host) || /^[a-z0-9_-]{1,63}(:\d{1,5})?$/i.test(host!);
}
