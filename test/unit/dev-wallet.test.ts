import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import lightBolt11 from 'light-bolt11-decoder';
import { decode as atomiqDecode, encode as atomiqEncode, sign as atomiqSign } from '@atomiqlabs/bolt11';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { DevWallet, DevWalletError } from '../../src/rails/lightning/dev/dev-wallet.js';
import { sleep } from '../../src/util/timeout.js';

const DEV_WALLET_MODULE = fileURLToPath(new URL('../../src/rails/lightning/dev/dev-wallet.ts', import.meta.url));
const REGTEST = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1], wif: 0xef };

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'l402-devwallet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openWallet(t: { after: (fn: () => Promise<void> | void) => void }, dir: string): DevWallet {
  const w = DevWallet.open(dir);
  t.after(() => w.close());
  return w;
}

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

function section(decoded: ReturnType<typeof lightBolt11.decode>, name: string): unknown {
  const s = decoded.sections.find((x) => x.name === name);
  return s && 'value' in s ? s.value : undefined;
}

function payError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DevWalletError, `expected DevWalletError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.length > 0);
    return true;
  });
}


test('invoice decodes with light-bolt11-decoder: amount, hash, description, expiry, network, cltv, features', async (t) => {
  const w = openWallet(t, tmpDir(t));
  for (const amountMsat of [10_000, 1_500, 21]) {
    const memo = `pay ${amountMsat} msat for /api/thing ☕`;
    const inv = await w.createInvoice({ amountMsat, memo, expirySecs: 600 });
    assert.ok(inv.bolt11.startsWith('lnbcrt'), inv.bolt11);
    assert.equal(inv.paymentHash.length, 32);

    const d = lightBolt11.decode(inv.bolt11);
    const net = d.sections.find((s) => s.name === 'coin_network');
    assert.equal(net && 'letters' in net ? net.letters : undefined, 'bcrt');
    assert.equal(section(d, 'amount'), String(amountMsat));
    assert.equal(section(d, 'payment_hash'), inv.paymentHash.toString('hex'));
    assert.equal(section(d, 'description'), memo);
    assert.equal(section(d, 'expiry'), 600);
    assert.equal(section(d, 'min_final_cltv_expiry'), 18);
    const secret = section(d, 'payment_secret');
    assert.match(String(secret), /^[0-9a-f]{64}$/);
    const fb = section(d, 'feature_bits') as { var_onion_optin: string; payment_secret: string; basic_mpp: string };
    assert.equal(fb.var_onion_optin, 'required');
    assert.equal(fb.payment_secret, 'required');
    const ts = section(d, 'timestamp') as number;
    assert.equal(inv.expiresAt, ts + 600);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 5);

    const preimage = w.pay(inv.bolt11);
    assert.equal(preimage.length, 32);
    assert.deepEqual(sha256(preimage), inv.paymentHash);
  }
});

test('signature is real: recovered payee key equals the pubkey of dev-node.key', async (t) => {
  const dir = tmpDir(t);
  const w = openWallet(t, dir);
  const key = Buffer.from(readFileSync(join(dir, 'dev-node.key'), 'utf8').trim(), 'hex');
  const expectedPub = Buffer.from(secp256k1.getPublicKey(key, true)).toString('hex');
  assert.ok(w.describe().includes(expectedPub), 'describe() names the node pubkey');
  assert.ok(!w.describe().includes(key.toString('hex')), 'describe() never leaks the key');

  for (const amountMsat of [10_000, 1_500, 21]) {
    const inv = await w.createInvoice({ amountMsat, memo: 'sig', expirySecs: 60 });
    // @atomiqlabs/bolt11's decode recovers the public key from the signature over hrp+data.
    const d = atomiqDecode(inv.bolt11, REGTEST);
    assert.equal(d.payeeNodeKey, expectedPub);
    assert.equal(d.millisatoshis, String(amountMsat));
    assert.equal(d.tagsObject.payment_hash, inv.paymentHash.toString('hex'));
    assert.equal(d.tagsObject.min_final_cltv_expiry, 18);
    assert.equal(d.tagsObject.feature_bits?.payment_secret?.required, true);
    assert.equal(d.tagsObject.feature_bits?.var_onion_optin?.required, true);
    assert.equal(d.prefix?.startsWith('lnbcrt'), true);
  }
});

test('pay: already_paid, unknown, expired, malformed, altered invoice', async (t) => {
  const dir = tmpDir(t);
  const w = openWallet(t, dir);
  const other = openWallet(t, tmpDir(t));

  const inv = await w.createInvoice({ amountMsat: 5_000, memo: 'twice', expirySecs: 60 });
  const pre = w.pay(inv.bolt11);
  assert.deepEqual(sha256(pre), inv.paymentHash);
  payError(() => w.pay(inv.bolt11), 'already_paid');

  // Issued by a wallet in another directory.
  const foreign = await other.createInvoice({ amountMsat: 5_000, memo: 'not yours', expirySecs: 60 });
  payError(() => w.pay(foreign.bolt11), 'unknown');
  // A valid mainnet invoice from the BOLT11 spec.
  payError(
    () =>
      w.pay(
        'lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq8rkx3yf5tcsyz3d73gafnh3cax9rn449d9p5uxz9ezhhypd0elx87sjle52x86fux2ypatgddc6k63n7erqz25le42c4u4ecky03ylcqca784w',
      ),
    'unknown',
  );

  // Same payment hash, re-signed with our own key but a smaller amount: not the invoice we issued.
  const victim = await w.createInvoice({ amountMsat: 100_000, memo: 'expensive', expirySecs: 60 });
  const key = readFileSync(join(dir, 'dev-node.key'), 'utf8').trim();
  const forged = atomiqSign(
    atomiqEncode(
      {
        network: REGTEST,
        millisatoshis: '1000',
        tags: [
          { tagName: 'payment_hash', data: victim.paymentHash.toString('hex') },
          { tagName: 'payment_secret', data: randomBytes(32).toString('hex') },
          { tagName: 'description', data: 'cheap' },
        ],
      },
      true,
    ),
    key,
  ).paymentRequest!;
  payError(() => w.pay(forged), 'unknown');
  assert.deepEqual(await w.lookupInvoice(victim.paymentHash), { state: 'open' });

  for (const garbage of ['', 'garbage', 'lnbcrt1qqqq', inv.bolt11.slice(0, -3) + 'qqq', 'x'.repeat(5000)]) {
    payError(() => w.pay(garbage), 'malformed');
  }
  payError(() => w.pay(undefined as unknown as string), 'malformed');

  // Case-insensitive and lightning: URI form are accepted.
  const upper = await w.createInvoice({ amountMsat: 1_000, memo: 'qr', expirySecs: 60 });
  assert.deepEqual(sha256(w.pay(`  LIGHTNING:${upper.bolt11.toUpperCase()}\n`)), upper.paymentHash);

  const short = await w.createInvoice({ amountMsat: 1_000, memo: 'short', expirySecs: 1 });
  await sleep(1_100);
  payError(() => w.pay(short.bolt11), 'expired');
  assert.deepEqual(await w.lookupInvoice(short.paymentHash), { state: 'expired' });
});

test('lookupInvoice: unknown, open, settled, expired', async (t) => {
  const w = openWallet(t, tmpDir(t));
  assert.deepEqual(await w.lookupInvoice(randomBytes(32)), { state: 'unknown' });
  assert.deepEqual(await w.lookupInvoice(Buffer.alloc(0)), { state: 'unknown' });

  const inv = await w.createInvoice({ amountMsat: 2_000, memo: 'look', expirySecs: 60 });
  assert.deepEqual(await w.lookupInvoice(inv.paymentHash), { state: 'open' });
  const pre = w.pay(inv.bolt11);
  const st = await w.lookupInvoice(inv.paymentHash);
  assert.equal(st.state, 'settled');
  assert.ok(st.state === 'settled' && st.preimage.equals(pre));

  const short = await w.createInvoice({ amountMsat: 2_000, memo: 'look', expirySecs: 1 });
  assert.deepEqual(await w.lookupInvoice(short.paymentHash), { state: 'open' });
  await sleep(1_100);
  assert.deepEqual(await w.lookupInvoice(short.paymentHash), { state: 'expired' });

  const ac = new AbortController();
  ac.abort();
  await assert.rejects(w.lookupInvoice(inv.paymentHash, ac.signal));
  await assert.rejects(w.createInvoice({ amountMsat: 1, memo: '', expirySecs: 1 }, ac.signal));
});

test('two instances on one directory share state; concurrent pay has exactly one winner', async (t) => {
  const dir = tmpDir(t);
  const a = openWallet(t, dir);
  const b = openWallet(t, dir);
  assert.equal(a.describe(), b.describe(), 'same node key');

  const inv = await a.createInvoice({ amountMsat: 3_000, memo: 'shared', expirySecs: 60 });
  assert.deepEqual(await b.lookupInvoice(inv.paymentHash), { state: 'open' });

  const results = await Promise.allSettled([(async () => a.pay(inv.bolt11))(), (async () => b.pay(inv.bolt11))()]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const bad = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(ok.length, 1);
  assert.equal(bad.length, 1);
  assert.equal((bad[0]!.reason as DevWalletError).code, 'already_paid');

  const fromA = await a.lookupInvoice(inv.paymentHash);
  assert.ok(fromA.state === 'settled' && sha256(fromA.preimage).equals(inv.paymentHash));

  const inv2 = await b.createInvoice({ amountMsat: 3_000, memo: 'from b', expirySecs: 60 });
  assert.deepEqual(sha256(a.pay(inv2.bolt11)), inv2.paymentHash);
  assert.equal((await b.lookupInvoice(inv2.paymentHash)).state, 'settled');
});

test('separate OS processes racing to pay the same invoices: each is paid exactly once', async (t) => {
  const dir = tmpDir(t);
  const w = openWallet(t, dir);
  const invoices: string[] = [];
  for (let i = 0; i < 150; i++) {
    invoices.push((await w.createInvoice({ amountMsat: 1_000 + i, memo: `race ${i}`, expirySecs: 120 })).bolt11);
  }
  const listFile = join(dir, 'invoices.json');
  writeFileSync(listFile, JSON.stringify(invoices));

  // Each child opens its own DevWallet, reports "ready", and waits for "go" on stdin so that all
  // of them hit the same invoices, in the same order, at the same moment.
  const script = `
    import { readFileSync } from 'node:fs';
    const { DevWallet } = await import(${JSON.stringify(pathToFileURL(DEV_WALLET_MODULE).href)});
    const [dir, list] = process.argv.slice(-2);
    const invs = JSON.parse(readFileSync(list, 'utf8'));
    const w = DevWallet.open(dir);
    process.stdout.write('ready\\n');
    await new Promise((r) => process.stdin.once('data', r));
    const won = [];
    let lost = 0;
    for (const inv of invs) {
      try { w.pay(inv); won.push(inv); } catch (e) { if (e.code !== 'already_paid') throw e; lost++; }
    }
    await w.close();
    process.stdout.write(JSON.stringify({ won, lost }) + '\\n');
    process.exit(0);
  `;
  const children = Array.from({ length: 4 }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', dir, listFile], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let onReady: () => void = () => {};
    const ready = new Promise<void>((r) => (onReady = r));
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.startsWith('ready\n')) onReady();
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const done = new Promise<{ won: string[]; lost: number }>((resolvePromise, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        if (code !== 0) reject(new Error(`child exited ${code}: ${err}`));
        else resolvePromise(JSON.parse(out.slice('ready\n'.length)) as { won: string[]; lost: number });
      });
    });
    done.catch(() => onReady());
    return { child, ready, done };
  });
  t.after(() => children.forEach((c) => c.child.exitCode === null && c.child.kill()));
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  const results = await Promise.all(children.map((c) => c.done));

  const won = results.flatMap((r) => r.won);
  assert.equal(won.length, invoices.length, 'every invoice paid exactly once in total');
  assert.equal(new Set(won).size, invoices.length);
  assert.equal(results.reduce((n, r) => n + r.lost, 0), invoices.length * 3);
  for (const inv of invoices) {
    const hash = Buffer.from(String(section(lightBolt11.decode(inv), 'payment_hash')), 'hex');
    assert.equal((await w.lookupInvoice(hash)).state, 'settled');
  }
});

test('node key: created 0600 in a 0700 dir, reused on reopen, bad key files refused', async (t) => {
  const base = tmpDir(t);
  const dir = join(base, 'nested', 'wallet');
  const w1 = DevWallet.open(dir);
  const keyPath = join(dir, 'dev-node.key');
  assert.equal(statSync(keyPath).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.match(readFileSync(keyPath, 'utf8').trim(), /^[0-9a-f]{64}$/);
  const desc = w1.describe();
  assert.match(desc, /development/i);
  assert.match(desc, /NOT real money/);
  assert.ok(desc.includes(dir));
  const inv = await w1.createInvoice({ amountMsat: 1_000, memo: 'persist', expirySecs: 60 });
  await w1.close();
  await w1.close(); // idempotent

  const w2 = DevWallet.open(dir);
  t.after(() => w2.close());
  assert.equal(w2.describe(), desc, 'same key after reopen');
  assert.deepEqual(await w2.lookupInvoice(inv.paymentHash), { state: 'open' }, 'invoices persist');

  for (const bad of ['nothex', 'ab'.repeat(31), 'zz'.repeat(32), 'ab'.repeat(33), '00'.repeat(32), 'ff'.repeat(32)]) {
    const badDir = join(base, `bad-${bad.slice(0, 4)}-${bad.length}`);
    void DevWallet.open(badDir).close();
    writeFileSync(join(badDir, 'dev-node.key'), bad + '\n', { mode: 0o600 });
    assert.throws(() => DevWallet.open(badDir), /dev-node\.key/);
  }
});

test('createInvoice rejects unusable amounts, expiries and oversized memos', async (t) => {
  const w = openWallet(t, tmpDir(t));
  for (const amountMsat of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(w.createInvoice({ amountMsat, memo: 'x', expirySecs: 60 }), /amountMsat/);
  }
  await assert.rejects(w.createInvoice({ amountMsat: 1, memo: 'x', expirySecs: 0 }), /expirySecs/);
  await assert.rejects(w.createInvoice({ amountMsat: 1, memo: 'x'.repeat(640), expirySecs: 60 }), /memo/);
  const ok = await w.createInvoice({ amountMsat: 1, memo: 'x'.repeat(639), expirySecs: 60 });
  assert.equal(section(lightBolt11.decode(ok.bolt11), 'description'), 'x'.repeat(639));
});
