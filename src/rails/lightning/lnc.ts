// Lightning Node Connect (LNC): lnd reached through Lightning Labs' mailbox relay with a pairing phrase
// instead of an address, tls.cert and macaroon. Only the configuration side exists in this build: the
// only LNC client for JavaScript (@lightninglabs/lnc-web) drives a Go WebAssembly binary that no npm
// package ships and that lnc-web downloads from a web server at run time. l402d does not fetch and run
// code at run time, so the factory stops at start with an error that says what is missing and what to
// use instead. The pairing phrase is a bearer secret (whoever has it controls the node session): it
// never appears in an error, a log line or describe().
import { createRequire } from 'node:module';
import { z } from 'zod';
import type { BackendContext, LightningBackend } from './backend.js';
import { parseHostPort } from './transports/socks-tunnel.js';

export const LNC_DEFAULT_MAILBOX = 'mailbox.terminal.lightning.today:443';

/** LNC pairing phrases are 10 words (lnc-web / litd `sessions add`). */
const PAIRING_WORDS = 10;

export const lncConfigSchema = z
  .object({
    type: z.literal('lnc'),
    pairing_phrase: z
      .string({ error: 'pairing_phrase must be a string (the 10-word LNC pairing phrase)' })
      .transform((s) => s.trim().split(/\s+/).filter(Boolean).join(' '))
      // The message never quotes the input: the phrase is a credential.
      .refine((s) => s.split(' ').length === PAIRING_WORDS && /^[a-z ]+$/i.test(s), `must be the ${PAIRING_WORDS}-word LNC pairing phrase (value not shown)`),
    mailbox_server: z
      .string()
      .trim()
      .transform((s) => s.replace(/^wss?:\/\//i, '').replace(/\/+$/, ''))
      .refine((s) => {
        try {
          parseHostPort(s, 'mailbox_server');
          return true;
        } catch {
          return false;
        }
      }, 'must be host:port, e.g. mailbox.terminal.lightning.today:443')
      .default(LNC_DEFAULT_MAILBOX),
  })
  .strict();

export type LncConfig = z.output<typeof lncConfigSchema>;

/**
 * ngx_l402 selects LNC with LN_CLIENT_TYPE=LND plus LNC_PAIRING_PHRASE (its docs also name
 * LN_CLIENT_TYPE=LNC). True when the environment asks for LNC rather than a direct lnd connection.
 */
export function wantsLncFromLegacyEnv(env: NodeJS.ProcessEnv): boolean {
  const type = env.LN_CLIENT_TYPE?.trim().toUpperCase();
  return type === 'LNC' || (type === 'LND' && !!env.LNC_PAIRING_PHRASE?.trim());
}

/** ngx_l402's LNC variables as a raw (unvalidated) `lightning:` section. */
export function lncFromLegacyEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const raw: Record<string, unknown> = { type: 'lnc' };
  if (env.LNC_PAIRING_PHRASE !== undefined) raw.pairing_phrase = env.LNC_PAIRING_PHRASE;
  if (env.LNC_MAILBOX_SERVER?.trim()) raw.mailbox_server = env.LNC_MAILBOX_SERVER.trim();
  return raw;
}

/** Thrown by createLncBackend; the message is safe to log (no pairing phrase). */
export class LncUnavailableError extends Error {
  override readonly name = 'LncUnavailableError';
}

function lncWebStatus(): string {
  try {
    createRequire(import.meta.url).resolve('@lightninglabs/lnc-web');
    return 'the @lightninglabs/lnc-web package is installed, but this build has no adapter for it';
  } catch {
    return 'the @lightninglabs/lnc-web package is not installed';
  }
}

export function createLncBackend(cfg: LncConfig, _ctx: BackendContext): LightningBackend {
  // Only the mailbox host is quoted: it is public, and it tells the operator which config was read.
  throw new LncUnavailableError(
    `lightning.type lnc (Lightning Node Connect via ${cfg.mailbox_server}) cannot start in this build: ` +
      `${lncWebStatus()}, and LNC also needs Lightning Labs' Go WebAssembly client (lnc-<version>.wasm), ` +
      'which no npm package ships and which lnc-web would download from lightning.engineering at run time; ' +
      'l402d does not download and run code at run time. ' +
      'Connect to lnd directly instead: lightning: { type: lnd, address: <host>:10009, tls_cert_path: <tls.cert>, ' +
      'macaroon_path: <macaroon with invoices:read invoices:write info:read> } and, if the node is reachable only over Tor, ' +
      'socks5_proxy: 127.0.0.1:9050 (legacy env: LN_CLIENT_TYPE=LND with LND_ADDRESS, CERT_FILE_PATH, MACAROON_FILE_PATH, SOCKS5_PROXY, ' +
      'and LNC_PAIRING_PHRASE unset). The pairing phrase was not used and is not shown.',
  );
}
