// HTTP's optional whitespace (RFC 9110 5.6.3) is SP and HTAB only. String.prototype.trim also strips
// NBSP, VT, FF and Unicode spaces: a credential that only parses after such a trim is one nginx's
// `map` in upstream.conf does not recognise as a payment credential, so it would pass it on to the upstream.
export function trimOws(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}
