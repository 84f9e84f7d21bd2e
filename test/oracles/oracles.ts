// Runs the independent macaroon implementations (Go gopkg.in/macaroon.v2, pymacaroons) as
// subprocesses so tests can check byte compatibility with them. Both speak the same JSON protocol.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const GO_SRC = join(HERE, 'go-macaroon');
const PY_SCRIPT = join(HERE, 'pymacaroons_oracle.py');
// Debian's interpreter, not whatever python3 is on PATH: only it has python3-pymacaroons.
const PYTHON = '/usr/bin/python3';
const RUN_TIMEOUT_MS = 15_000;
// A cold Go build cache compiles x/crypto too.
const BUILD_TIMEOUT_MS = 180_000;

export type OracleName = 'go' | 'py';

export interface MintRequest {
  rootKeyHex: string;
  idHex: string;
  location: string;
  caveats: string[];
  /** Go only: libmacaroons V1 in URL-safe base64 with padding (ngx_l402's form); default V2. */
  format?: 'v1';
}

export interface VerifyResult {
  ok: boolean;
  idHex: string;
  location: string;
  caveats: string[];
  /** Std base64 of the oracle's own re-encoding of what it decoded. */
  reencoded: string;
  error?: string;
}

function run(cmd: string, args: string[], input: unknown): unknown {
  const out = execFileSync(cmd, args, {
    input: JSON.stringify(input),
    timeout: RUN_TIMEOUT_MS,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return JSON.parse(out.toString('utf8'));
}

// Per-process cache: undefined = not tried yet; otherwise the binary path or why it is missing.
let goBuild: { bin: string } | { error: string } | undefined;
let pyCheck: { error?: string } | undefined;

function buildGo(): { bin: string } | { error: string } {
  if (goBuild) return goBuild;
  if (!existsSync('/usr/share/gocode/src/gopkg.in/macaroon.v2')) {
    return (goBuild = { error: 'gopkg.in/macaroon.v2 not in /usr/share/gocode (apt-get install golang-go golang-gopkg-macaroon.v2-dev)' });
  }
  const dir = mkdtempSync(join(tmpdir(), 'l402-go-macaroon-'));
  const bin = join(dir, 'go-macaroon');
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  try {
    // GOPATH mode against Debian's packaged sources: no network, no go.mod needed.
    execFileSync('go', ['build', '-o', bin, '.'], {
      cwd: GO_SRC,
      timeout: BUILD_TIMEOUT_MS,
      env: {
        ...process.env,
        GO111MODULE: 'off',
        GOPATH: '/usr/share/gocode',
        GOFLAGS: '',
        // go refuses to build without a cache dir, and minimal CI containers may lack HOME.
        ...(process.env.GOCACHE || process.env.HOME || process.env.XDG_CACHE_HOME ? {} : { GOCACHE: join(dir, 'cache') }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    goBuild = { bin };
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    goBuild = { error: `go build failed: ${err.stderr?.toString().trim() || err.message}` };
  }
  return goBuild;
}

function checkPy(): { error?: string } {
  if (pyCheck) return pyCheck;
  try {
    execFileSync(PYTHON, ['-c', 'import pymacaroons'], { timeout: RUN_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
    pyCheck = {};
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    pyCheck = { error: `${PYTHON} cannot import pymacaroons (apt-get install python3-pymacaroons): ${err.stderr?.toString().trim() || err.message}` };
  }
  return pyCheck;
}

function unavailableReason(name: OracleName): string | undefined {
  if (name === 'go') {
    const b = buildGo();
    return 'error' in b ? b.error : undefined;
  }
  return checkPy().error;
}

export function oraclesAvailable(): { go: boolean; py: boolean } {
  return { go: unavailableReason('go') === undefined, py: unavailableReason('py') === undefined };
}

/**
 * For `{ skip }` options: false when the oracle is usable, else a visible skip reason.
 * In CI a missing oracle must not pass silently as a skip, so it throws instead.
 */
export function oracleSkip(name: OracleName): string | false {
  const why = unavailableReason(name);
  if (why === undefined) return false;
  if (process.env.CI === 'true') throw new Error(`${name} macaroon oracle is required in CI but unavailable: ${why}`);
  return `${name} macaroon oracle unavailable: ${why}`;
}

function goBin(): string {
  const b = buildGo();
  if ('error' in b) throw new Error(b.error);
  return b.bin;
}

export const goMint = (req: MintRequest): string => (run(goBin(), ['mint'], req) as { b64: string }).b64;
export const goVerify = (rootKeyHex: string, b64: string): VerifyResult => run(goBin(), ['verify'], { rootKeyHex, b64 }) as VerifyResult;
/** Adds first-party caveats without the root key, as a Go client would. */
export const goAttenuate = (b64: string, caveats: string[]): string => (run(goBin(), ['attenuate'], { b64, caveats }) as { b64: string }).b64;

export const pyMint = (req: MintRequest): string => (run(PYTHON, [PY_SCRIPT, 'mint'], req) as { b64: string }).b64;
export const pyVerify = (rootKeyHex: string, b64: string): VerifyResult => run(PYTHON, [PY_SCRIPT, 'verify'], { rootKeyHex, b64 }) as VerifyResult;
export const pyAttenuate = (b64: string, caveats: string[]): string => (run(PYTHON, [PY_SCRIPT, 'attenuate'], { b64, caveats }) as { b64: string }).b64;
