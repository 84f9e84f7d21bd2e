// The wallet's NUT-13 seed: a BIP-39 mnemonic from config/env, else from the mnemonic file, else generated
// and saved (0600) on first start. A fingerprint beside the database and inside it refuses a database that
// belongs to another seed (its proofs' change and restores would be unrecoverable).
import { createPrivateFile } from '../../util/private-file.js';
import { readFileSync, statSync } from 'node:fs';
import { generateMnemonic, mnemonicProblem, mnemonicToSeed, normalizeMnemonic, seedFingerprint } from './bip39.js';
import type { WalletDb } from './wallet-db.js';

export class WalletSeedError extends Error {}

export interface WalletSeed {
  seed: Uint8Array;
  fingerprint: string;
  source: 'config' | 'file' | 'generated';
}

function readPrivateFile(path: string, what: string): string | undefined {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (mode & 0o077) throw new WalletSeedError(`${what} ${path} is readable by other users; run: chmod 600 ${path}`);
  return readFileSync(path, 'utf8');
}

export function loadWalletSeed(opts: { mnemonic?: string; mnemonicFile: string; fingerprintFile: string; db: WalletDb }): WalletSeed {
  let mnemonic: string;
  let source: WalletSeed['source'];
  if (opts.mnemonic) {
    mnemonic = opts.mnemonic;
    source = 'config';
  } else {
    const existing = readPrivateFile(opts.mnemonicFile, 'mnemonic file');
    if (existing !== undefined) {
      mnemonic = existing;
      source = 'file';
    } else {
      createPrivateFile(opts.mnemonicFile, generateMnemonic() + '\n');
      mnemonic = readPrivateFile(opts.mnemonicFile, 'mnemonic file')!;
      source = 'generated';
    }
  }
  const problem = mnemonicProblem(mnemonic);
  if (problem) throw new WalletSeedError(`wallet mnemonic${source === 'config' ? '' : ` in ${opts.mnemonicFile}`} is invalid: ${problem}`);
  const seed = mnemonicToSeed(normalizeMnemonic(mnemonic));
  const fingerprint = seedFingerprint(seed);

  const onFile = readPrivateFile(opts.fingerprintFile, 'fingerprint file')?.trim();
  if (onFile !== undefined && onFile !== fingerprint) {
    throw new WalletSeedError(
      `wallet seed fingerprint ${fingerprint} does not match ${onFile} in ${opts.fingerprintFile}: this wallet belongs to another mnemonic; refusing to start`,
    );
  }
  const inDb = opts.db.metaInit('seed_fingerprint', fingerprint);
  if (inDb !== fingerprint) {
    throw new WalletSeedError(
      `wallet database ${opts.db.path} belongs to seed ${inDb}, not ${fingerprint}: refusing to start (set the matching mnemonic or use a new database)`,
    );
  }
  if (onFile === undefined) createPrivateFile(opts.fingerprintFile, fingerprint + '\n');
  return { seed, fingerprint, source };
}
