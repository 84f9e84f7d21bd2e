// HTTPS for the tests of the schemes that need it (MPP, x402, Secure cookies): a throwaway self-signed
// certificate for 127.0.0.1, one request trusting it, and readers for repeated headers and `Payment` challenges.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { join } from 'node:path';

/** A P-256 certificate and key for 127.0.0.1 in `dir`, made with openssl. */
export function makeCert(openssl: string, dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

export interface HttpsResult {
  status: number;
  headers: IncomingHttpHeaders;
  /** Node's raw header list: repeated headers kept apart. */
  raw: string[];
  body: string;
}

/** One HTTPS request trusting `ca`, JSON preferred, bounded to 15 s. */
export function httpsRequest(ca: Buffer, url: string, headers: Record<string, string | string[]> = {}, o: { method?: string; body?: string } = {}): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: o.method ?? 'GET', headers: { accept: 'application/json', ...headers }, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Every value of header `name` (lower case), in order. */
export function headerLines(r: { raw: string[] }, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < r.raw.length; i += 2) if (r.raw[i]!.toLowerCase() === name) out.push(r.raw[i + 1]!);
  return out;
}

/** The auth-params of a `Payment` challenge (all quoted-strings here). */
export function paymentParams(challenge: string): Record<string, string> {
  assert.match(challenge, /^Payment /);
  const out: Record<string, string> = {};
  for (const m of challenge.slice(8).matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}
