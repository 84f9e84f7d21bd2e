// The committed WebAssembly (wasm/secp256k1.wasm) must be exactly what its source compiles to, so a review
// of wasm/secp256k1.ts is a review of what runs. `npm run wasm` rebuilds it.
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

test('wasm/secp256k1.wasm is the build of wasm/secp256k1.ts', () => {
  const script = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).scripts.wasm as string;
  const dir = mkdtempSync(join(tmpdir(), 'l402-wasm-'));
  try {
    const out = join(dir, 'secp256k1.wasm');
    const args = script.replace(/^asc /, '').replace(/-o \S+$/, '').trim().split(/\s+/);
    const r = spawnSync(process.execPath, [join(REPO, 'node_modules/assemblyscript/bin/asc.js'), ...args, '-o', out], { cwd: REPO, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readFileSync(out).equals(readFileSync(join(REPO, 'wasm/secp256k1.wasm'))), 'wasm/secp256k1.wasm is out of date: run npm run wasm');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('field operations equal BigInt arithmetic mod p on edge and random values, unreduced inputs included', () => {
  const mod = new WebAssembly.Module(readFileSync(join(REPO, 'wasm/secp256k1.wasm')));
  const w = new WebAssembly.Instance(mod).exports as unknown as {
    memory: WebAssembly.Memory;
    heap_base(): number;
    fe_mul(r: number, a: number, b: number): void;
    fe_sqr(r: number, a: number): void;
    fe_add(r: number, a: number, b: number): void;
    fe_sub(r: number, a: number, b: number): void;
    fe_inv(r: number, a: number): void;
    fe_normalize(r: number): void;
    fe_is_zero(a: number): number;
  };
  const P = 2n ** 256n - 2n ** 32n - 977n;
  const base = (w.heap_base() + 63) & ~63;
  const [A, B, R] = [base, base + 32, base + 64];
  const put = (at: number, v: bigint) => {
    const dv = new DataView(w.memory.buffer);
    for (let i = 0; i < 8; i++) dv.setUint32(at + 4 * i, Number((v >> BigInt(32 * i)) & 0xffffffffn), true);
  };
  const get = (at: number) => {
    const dv = new DataView(w.memory.buffer);
    let v = 0n;
    for (let i = 7; i >= 0; i--) v = (v << 32n) | BigInt(dv.getUint32(at + 4 * i, true));
    return v;
  };
  const rand = () => BigInt('0x' + randomBytes(32).toString('hex'));
  // Values around 0, p and 2^256 (the limbs' wrap points), all-ones limbs, and random ones.
  const edge = [0n, 1n, 2n, 977n, 2n ** 32n, 2n ** 32n + 977n, P - 1n, P, P + 1n, P + 2n ** 32n, 2n ** 256n - 1n, 2n ** 255n, 2n ** 224n - 1n, (2n ** 256n - 1n) / 3n];
  const values = [...edge, ...Array.from({ length: 40 }, rand)];
  const check = (got: bigint, want: bigint, what: string) => {
    assert.ok(got < 2n ** 256n, `${what}: result fits 256 bits`);
    assert.equal(got % P, ((want % P) + P) % P, what);
  };
  for (const a of values) {
    put(A, a);
    w.fe_sqr(R, A);
    check(get(R), a * a, `sqr ${a.toString(16)}`);
    put(R, a);
    w.fe_normalize(R);
    assert.equal(get(R), a % P, `normalize ${a.toString(16)}`);
    assert.equal(w.fe_is_zero(A) === 1, a % P === 0n, `is_zero ${a.toString(16)}`);
    if (a % P !== 0n) {
      w.fe_inv(R, A);
      const inv = get(R);
      assert.ok(inv < 2n ** 256n && (inv * a) % P === 1n, `inv ${a.toString(16)}`);
    }
    for (const b of values) {
      put(A, a);
      put(B, b);
      w.fe_mul(R, A, B);
      check(get(R), a * b, `mul ${a.toString(16)} ${b.toString(16)}`);
      w.fe_add(R, A, B);
      check(get(R), a + b, `add ${a.toString(16)} ${b.toString(16)}`);
      w.fe_sub(R, A, B);
      check(get(R), a - b, `sub ${a.toString(16)} ${b.toString(16)}`);
    }
  }
});
