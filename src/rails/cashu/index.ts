// Public surface of the Cashu rail (what the gate wires).
export { cashuConfigSchema, cashuFromLegacyEnv, normalizeMint, type CashuConfig, type CashuConfigInput } from './config.js';
export { parseCashuCredential, DEFAULT_MAX_TOKEN_BYTES, type CashuCredential, type CashuCredentialHeaders } from '../../protocol/cashu-credential.js';
export { encodePaymentRequest, priceInUnit, MSAT_PER_UNIT, type CashuUnit } from './payment-request.js';
export { createCashuRail, type CashuRail, type CashuRailDeps, type CashuAcceptContext, type CashuAcceptResult } from './rail.js';
export { feeReserve } from './redeem.js';
export type { BalanceRow, MeltRecord } from './wallet-db.js';
