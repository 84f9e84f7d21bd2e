// Which payment schemes a route offers on its 402: L402 (macaroon + preimage), MPP (the HTTP `Payment` scheme,
// Lightning charge), x402 v2 (`exact` on Lightning) and Cashu (NUT-24). One Lightning invoice is shared by L402
// and MPP (both need its preimage); x402, whose credential is the invoice itself, gets an invoice of its own.
import type { z } from 'zod';

export const PAYMENT_SCHEMES = ['l402', 'mpp', 'x402', 'cashu'] as const;
export type PaymentScheme = (typeof PAYMENT_SCHEMES)[number];

/** Schemes whose credential pays for exactly one request (MPP's charge intent, x402's exact payment). */
export const SINGLE_USE_SCHEMES: readonly PaymentScheme[] = ['mpp', 'x402'];

/** Schemes that need HTTPS: their specs forbid challenges and credentials over plain HTTP. */
export const HTTPS_ONLY_SCHEMES: readonly PaymentScheme[] = ['mpp', 'x402'];

/** Without `schemes:`, a route offers what it always did: L402 on Lightning, Cashu where the rail is on. */
export function defaultSchemes(rails: readonly ('lightning' | 'cashu')[]): PaymentScheme[] {
  return [...(rails.includes('lightning') ? (['l402'] as const) : []), ...(rails.includes('cashu') ? (['cashu'] as const) : [])];
}

export function railsOf(schemes: readonly PaymentScheme[]): Array<'lightning' | 'cashu'> {
  const out: Array<'lightning' | 'cashu'> = [];
  if (schemes.some((s) => s !== 'cashu')) out.push('lightning');
  if (schemes.includes('cashu')) out.push('cashu');
  return out;
}

interface RawRoute {
  schemes?: readonly PaymentScheme[];
  rails?: readonly string[];
  amount_msat: number;
  lnurl_addr?: string;
  auto_detect_payment?: boolean;
}

/** Config checks of a route's `schemes:` (each error names the key). */
export function checkSchemes(r: RawRoute, access: string, ctx: z.RefinementCtx): void {
  if (!r.schemes) return;
  if (r.rails) ctx.addIssue({ code: 'custom', path: ['rails'], message: 'give either rails or schemes (schemes: [l402, mpp, x402, cashu] replaces rails)' });
  for (const s of SINGLE_USE_SCHEMES) {
    // On a balance route MPP is its Lightning `session` intent (a prepaid deposit drawn per request): route-config.ts.
    if (s === 'mpp' && access === 'balance') continue;
    if (r.schemes.includes(s) && access !== 'per-request') {
      ctx.addIssue({ code: 'custom', path: ['schemes'], message: `${s} pays for one request only (${s === 'mpp' ? "MPP's charge intent; its session intent is offered on access: balance" : "x402's exact payment"}): offer it on access: per-request routes, not ${access}` });
    }
  }
  if (r.schemes.includes('mpp') && r.amount_msat % 1000 !== 0) {
    ctx.addIssue({ code: 'custom', path: ['amount_msat'], message: 'mpp charges whole satoshis: amount_msat must be a multiple of 1000 when schemes includes mpp' });
  }
  if (r.schemes.includes('x402') && r.lnurl_addr) {
    ctx.addIssue({ code: 'custom', path: ['schemes'], message: 'x402 cannot be combined with lnurl_addr: its payment is checked by looking the invoice up on our own node' });
  }
}

export function offers(route: { schemes: readonly PaymentScheme[] }, s: PaymentScheme): boolean {
  return route.schemes.includes(s);
}

/** The schemes a 402 to this request carries: HTTPS-only ones only over HTTPS. */
export function offeredNow(route: { schemes: readonly PaymentScheme[] }, secure: boolean): PaymentScheme[] {
  return route.schemes.filter((s) => secure || !HTTPS_ONLY_SCHEMES.includes(s));
}
