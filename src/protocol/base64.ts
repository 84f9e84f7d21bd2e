const B64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * Strict-enough base64 decoder for credentials: standard or URL-safe alphabet, padding optional.
 * Returns undefined for anything else, or when the decoded size would exceed maxBytes.
 */
export function decodeBase64Loose(text: string, maxBytes: number): Buffer | undefined {
  if (text.length === 0 || text.length > Math.ceil((maxBytes * 4) / 3) + 4) return undefined;
  if (!B64.test(text)) return undefined;
  const body = text.replace(/=+$/, '');
  if (body.length % 4 === 1) return undefined;
  const buf = Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return buf.length > 0 && buf.length <= maxBytes ? buf : undefined;
}
