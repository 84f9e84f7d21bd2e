// libsecp256k1 (Bitcoin Core's C library) through the `secp256k1` N-API package, for the Cashu rail's curve
// checks and the dev wallet's BOLT11 signatures.
//
// Loaded by the package's native-only entry, `secp256k1/bindings`: its main entry silently falls back to
// the pure-JS `elliptic` (CVE-2025-14505) when the native addon is missing or fails to load; this entry
// throws instead, and the check below makes sure a compiled addon of that package is what answered.
import { createRequire } from 'node:module';

/** The part of the `secp256k1` package's API used here (`secp256k1/bindings`: libsecp256k1 only). */
export interface Libsecp256k1 {
  publicKeyVerify(pubkey: Uint8Array): boolean;
  publicKeyCreate(seckey: Uint8Array, compressed?: boolean): Uint8Array;
  publicKeyConvert(pubkey: Uint8Array, compressed?: boolean): Uint8Array;
  publicKeyCombine(pubkeys: Uint8Array[], compressed?: boolean): Uint8Array;
  publicKeyTweakAdd(pubkey: Uint8Array, tweak: Uint8Array, compressed?: boolean): Uint8Array;
  publicKeyTweakMul(pubkey: Uint8Array, tweak: Uint8Array, compressed?: boolean): Uint8Array;
  privateKeyVerify(seckey: Uint8Array): boolean;
  ecdsaSign(msg32: Uint8Array, seckey: Uint8Array): { signature: Uint8Array; recid: number };
}

/**
 * libsecp256k1, or a thrown error: never the `elliptic` fallback. `secp256k1/bindings` requires the
 * compiled addon (node-gyp-build: build/Release, else the package's prebuild for this platform) and has
 * no fallback; the addon must also show up among the loaded native modules and pass a known answer.
 */
export const libsecp256k1: Libsecp256k1 = (() => {
  const require = createRequire(import.meta.url);
  let lib: Libsecp256k1;
  try {
    lib = require('secp256k1/bindings') as Libsecp256k1;
  } catch (err) {
    throw new Error(
      `the native libsecp256k1 addon (npm package "secp256k1") did not load: ${(err as Error).message}. ` +
        'Rebuild it (npm rebuild secp256k1; needs python3, make and a C++ compiler); l402d never uses a JavaScript fallback.',
    );
  }
  const pkgDir = require.resolve('secp256k1/package.json').replace(/package\.json$/, '');
  const native = Object.keys(require.cache).some((k) => k.startsWith(pkgDir) && k.endsWith('.node'));
  const g = Buffer.from(lib.publicKeyCreate(Buffer.from('00'.repeat(31) + '01', 'hex'), true)).toString('hex');
  if (!native || g !== '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798') {
    throw new Error('the "secp256k1" package did not load its native libsecp256k1 addon; refusing to run on anything else');
  }
  return lib;
})();
