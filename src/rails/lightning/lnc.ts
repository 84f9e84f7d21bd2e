// Lightning Node Connect (LNC): lnd reached through Lightning Labs' mailbox relay with a pairing phrase
// instead of an address, tls.cert and macaroon. The client lives in ./lnc/ (mailbox websockets, go-back-N,
// the Noise XXeke+SPAKE2 / KK handshake, gRPC over the encrypted stream); this file is its config
// section and factory. The pairing phrase is a bearer secret (whoever has it can pair with the node
// session): it never appears in an error, a log line or describe().
import { z } from 'zod';
import type { BackendContext, LightningBackend } from './backend.js';
import { readConfigFile } from './transports/config-file.js';
import { LncBackend } from './lnc/backend.js';
import { PAIRING_WORDS, unknownWordPositions } from './lnc/phrase.js';
import { parseHostPort } from './transports/socks-tunnel.js';

export const LNC_DEFAULT_MAILBOX = 'mailbox.terminal.lightning.today:443';

export const lncConfigSchema = z
  .object({
    type: z.literal('lnc'),
    pairing_phrase: z
      .string({ error: 'pairing_phrase must be a string (the 10-word LNC pairing phrase)' })
      .transform((s) => s.trim().split(/\s+/).filter(Boolean).join(' '))
      // The message never quotes the input: the phrase is a credential.
      .refine((s) => s.split(' ').length === PAIRING_WORDS && /^[a-z ]+$/i.test(s), `must be the ${PAIRING_WORDS}-word LNC pairing phrase (value not shown)`)
      // Word positions only: the words themselves are the secret.
      .superRefine((s, c) => {
        if (s.split(' ').length !== PAIRING_WORDS || !/^[a-z ]+$/i.test(s)) return;
        const bad = unknownWordPositions(s);
        if (bad.length) c.addIssue({ code: 'custom', message: `word${bad.length > 1 ? 's' : ''} ${bad.join(', ')} of the pairing phrase ${bad.length > 1 ? 'are' : 'is'} not in the LNC word list (value not shown; check the spelling against the phrase Lightning Terminal showed)` });
      }),
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
    /** PEM CA that signed a self-hosted mailbox's TLS certificate (the public mailbox needs none). */
    mailbox_tls_ca_path: z.string().min(1).optional(),
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

/**
 * Builds the backend. Checks the phrase and the CA file now (errors name the key, never the phrase), then
 * connects in the background: pairs with the phrase the first time, later reconnects with the session keys
 * kept in `<data_dir>/lnc-session.json` (0600).
 */
export function createLncBackend(cfg: LncConfig, ctx: BackendContext): LightningBackend {
  const hp = parseHostPort(cfg.mailbox_server, 'lightning.mailbox_server');
  const ca = cfg.mailbox_tls_ca_path ? readConfigFile('mailbox_tls_ca_path', cfg.mailbox_tls_ca_path, ctx.configDir) : undefined;
  if (ca && !ca.toString('utf8').includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`lightning.mailbox_tls_ca_path: ${cfg.mailbox_tls_ca_path} is not a PEM certificate`);
  }
  return new LncBackend({ phrase: cfg.pairing_phrase, mailbox: { host: hp.host, port: hp.port, ca }, mailboxLabel: cfg.mailbox_server }, ctx);
}
