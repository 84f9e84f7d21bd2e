// Core Lightning backend: the JSON-RPC stream reader, the unix-socket and clnrest transports, reply
// validation, error mapping and config, all against the protocol-faithful peer in test/peers.
import { test, before, after, beforeEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import lightBolt11 from 'light-bolt11-decoder';
import { BackendCallError, type BackendContext, type LightningBackend } from '../../src/rails/lightning/backend.js';
import { ClnRpcError, ClnSocketRpc, FramingError, JsonObjectStream, type ClnCaller } from '../../src/rails/lightning/cln/cln-rpc.js';
import { ClnRestRpc } from '../../src/rails/lightning/cln/clnrest.js';
import {
  ClnConfigError, DEFAULT_CLN_RPC_PATH, clnConfigSchema, clnFromLegacyEnv, createClnBackend, createClnBackendWith, resolveConfigPath,
} from '../../src/rails/lightning/cln/cln.js';
import { createLogger } from '../../src/util/log.js';
import { startClnPeer, type ClnPeer, type Tamper } from '../peers/cln-peer.js';
import { sleep } from '../../src/util/timeout.js';

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

function ctx(over: Partial<BackendContext> = {}): BackendContext {
  return { configDir: tmpdir(), dataDir: tmpdir(), log: createLogger('silent'), timeoutMs: 2000, ...over };
}

async function rejects(p: Promise<unknown>): Promise<BackendCallError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof BackendCallError, `expected BackendCallError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    return e;
  }
  assert.fail('expected a rejection');
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const t0 = Date.now();
  try {
    return { ms: Date.now() - t0, value: await p };
  } catch (error) {
    return { ms: Date.now() - t0, error };
  }
}

// ---------------------------------------------------------------------------------------------
// The stream reader
// ---------------------------------------------------------------------------------------------

describe('JsonObjectStream', () => {
  const a = { jsonrpc: '2.0', id: 'x#1', result: { s: 'brace } in "string" \\ ⚡ ünï', n: [1, { d: [] }] } };
  const b = { jsonrpc: '2.0', id: 'x#2', error: { code: -32602, message: '{[unbalanced' } };
  const text = Buffer.from(`${JSON.stringify(a)}\n\n${JSON.stringify(b)}`);

  test('two objects in one chunk, with and without the "\\n\\n" delimiter', () => {
    for (const t of [text, Buffer.from(JSON.stringify(a) + JSON.stringify(b))]) {
      const got: unknown[] = [];
      new JsonObjectStream(1 << 20, (v) => got.push(v)).push(t);
      assert.deepEqual(got, [a, b]);
    }
  });

  test('split at every byte offset (including inside multi-byte UTF-8 and escapes)', () => {
    for (let cut = 1; cut < text.length; cut++) {
      const got: unknown[] = [];
      const s = new JsonObjectStream(1 << 20, (v) => got.push(v));
      s.push(text.subarray(0, cut));
      s.push(text.subarray(cut));
      assert.deepEqual(got, [a, b], `cut at ${cut}`);
    }
    const got: unknown[] = [];
    const s = new JsonObjectStream(1 << 20, (v) => got.push(v));
    for (const byte of text) s.push(Buffer.from([byte]));
    assert.deepEqual(got, [a, b]);
    assert.equal(s.midObject, false);
  });

  test('garbage between objects fails after delivering what came before', () => {
    const got: unknown[] = [];
    const s = new JsonObjectStream(1 << 20, (v) => got.push(v));
    assert.throws(() => s.push(Buffer.from(`${JSON.stringify(a)}HTTP/1.1 400`)), FramingError);
    assert.deepEqual(got, [a]);
    assert.throws(() => s.push(Buffer.from('{}')), FramingError, 'a failed stream stays failed');
  });

  test('malformed JSON with balanced braces fails', () => {
    assert.throws(() => new JsonObjectStream(1024, () => {}).push(Buffer.from('{"a":}')), /malformed JSON/);
  });

  test('an oversized object fails as soon as it passes the bound, before it completes', () => {
    const s = new JsonObjectStream(1000, () => assert.fail('nothing may be delivered'));
    s.push(Buffer.from('{"result":"'));
    assert.throws(() => s.push(Buffer.alloc(2000, 0x61)), /larger than 1000 bytes/);
  });
});

// ---------------------------------------------------------------------------------------------
// Backend behaviour through both transports
// ---------------------------------------------------------------------------------------------

let peer: ClnPeer;
before(async () => {
  peer = await startClnPeer({ rest: true });
});
after(() => peer?.stop());
beforeEach(() => peer.resetFaults());

const transports = {
  rpc: (o: { timeoutMs?: number; maxResponseBytes?: number } = {}): ClnCaller =>
    new ClnSocketRpc({ path: peer.socketPath, timeoutMs: o.timeoutMs ?? 2000, maxResponseBytes: o.maxResponseBytes }),
  rest: (o: { timeoutMs?: number; maxResponseBytes?: number } = {}): ClnCaller =>
    new ClnRestRpc({ url: peer.restUrl!, rune: peer.rune, ca: peer.caPem, timeoutMs: o.timeoutMs ?? 2000, maxResponseBytes: o.maxResponseBytes }),
};

for (const [name, open] of Object.entries(transports)) {
  describe(`cln backend over ${name}`, () => {
    let rpc: ClnCaller;
    let backend: LightningBackend;
    before(() => {
      rpc = open();
      backend = createClnBackendWith(rpc);
    });
    after(() => backend.close());

    test('createInvoice: a real BOLT11 invoice with the requested hash, amount and expiry', async () => {
      const before = peer.calls.length;
      const inv = await backend.createInvoice({ amountMsat: 21_000, memo: 'L402 ⚡ test', expirySecs: 600 });
      const d = lightBolt11.decode(inv.bolt11);
      const hash = d.sections.find((s) => s.name === 'payment_hash') as { value: string };
      assert.equal(hash.value, inv.paymentHash.toString('hex'));
      assert.equal((d.sections.find((s) => s.name === 'amount') as { value: string }).value, '21000');
      assert.ok(inv.expiresAt > Date.now() / 1000 + 500 && inv.expiresAt <= Date.now() / 1000 + 601);
      const call = peer.calls.slice(before).find((c) => c.method === 'invoice')!;
      assert.equal(call.transport, name);
      assert.equal(call.params.amount_msat, 21_000);
      assert.equal(call.params.description, 'L402 ⚡ test');
      assert.equal(call.params.expiry, 600);
      assert.match(String(call.params.label), /^l402-[0-9a-f]{32}$/);
      const again = await backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 });
      const labels = peer.calls.filter((c) => c.method === 'invoice').map((c) => c.params.label);
      assert.equal(new Set(labels).size, labels.length, 'labels are unique per call');
      assert.notDeepEqual(again.paymentHash, inv.paymentHash);
    });

    test('lookupInvoice: open, then settled with a preimage that hashes to the payment hash', async () => {
      const inv = await backend.createInvoice({ amountMsat: 5000, memo: 'lookup', expirySecs: 600 });
      assert.deepEqual(await backend.lookupInvoice!(inv.paymentHash), { state: 'open' });
      const preimage = peer.settle(inv.bolt11);
      const st = await backend.lookupInvoice!(inv.paymentHash);
      assert.equal(st.state, 'settled');
      assert.ok(st.state === 'settled' && st.preimage.equals(preimage) && sha256(st.preimage).equals(inv.paymentHash));
      assert.deepEqual(await backend.lookupInvoice!(randomBytes(32)), { state: 'unknown' });
      assert.deepEqual(await backend.lookupInvoice!(Buffer.alloc(3)), { state: 'unknown' });
    });

    test('check(): getinfo summarised for doctor', async () => {
      const text = await backend.check!();
      assert.match(text, /cln-peer/);
      assert.match(text, /on regtest/);
      assert.ok(text.includes(peer.nodeId.slice(0, 16)));
      assert.doesNotMatch(backend.describe(), new RegExp(peer.rune));
    });

    test('malformed replies become clear BackendCallErrors', async () => {
      const cases: Array<[Tamper, RegExp]> = [
        ['payment_hash', /payment hash differs/],
        ['amount', /amount .* differs/],
        ['bolt11', /does not decode/],
        ['expires_at', /expires_at/],
      ];
      for (const [tamper, re] of cases) {
        peer.faults.tamper = tamper;
        const e = await rejects(backend.createInvoice({ amountMsat: 3000, memo: 'x', expirySecs: 60 }));
        assert.match(e.message, re, String(tamper));
      }
      peer.faults.tamper = undefined;
      const inv = await backend.createInvoice({ amountMsat: 3000, memo: 'x', expirySecs: 60 });
      peer.settle(inv.bolt11);
      peer.faults.tamper = 'preimage';
      const e = await rejects(backend.lookupInvoice!(inv.paymentHash));
      assert.match(e.message, /does not hash to the payment hash/);
      assert.equal(e.retryable, false);
      peer.faults.tamper = 'status';
      assert.match((await rejects(backend.lookupInvoice!(inv.paymentHash))).message, /unknown invoice status/);
      peer.faults.tamper = undefined;
      peer.faults.garbage = true;
      await rejects(backend.createInvoice({ amountMsat: 3000, memo: 'x', expirySecs: 60 }));
      peer.faults.garbage = false;
      assert.equal((await backend.lookupInvoice!(inv.paymentHash)).state, 'settled', 'recovers after garbage');
    });

    test('JSON-RPC errors map to ClnRpcError with code and retryability', async () => {
      peer.faults.errorFor.invoice = { code: -32602, message: "'amount_msat': should be positive" };
      const e1 = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.ok(e1 instanceof ClnRpcError);
      assert.equal(e1.code, -32602);
      assert.equal(e1.retryable, false);
      assert.match(e1.message, /CLN invoice failed: error -32602: 'amount_msat': should be positive/);
      peer.faults.errorFor.invoice = { code: -5, message: 'lightningd is shutting down' };
      const e2 = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.ok(e2 instanceof ClnRpcError && e2.code === -5 && e2.retryable === true);
      const e3 = await rejects(rpc.call('nosuchmethod', {}));
      assert.equal(e3.retryable, false);
      assert.match(e3.message, /nosuchmethod/);
    });

    test('a huge reply is refused at the size bound; the next call works', async () => {
      const small = open({ maxResponseBytes: 64 * 1024 });
      try {
        peer.faults.hugeReplyBytes = 1024 * 1024;
        const e = await rejects(small.call('getinfo', {}));
        assert.match(e.message, /larger than 65536 bytes/);
        peer.faults.hugeReplyBytes = undefined;
        assert.equal(((await small.call('getinfo', {})) as { id: string }).id, peer.nodeId);
      } finally {
        await small.close();
      }
    });

    test('timeouts are bounded and the AbortSignal is honoured', async () => {
      const quick = open({ timeoutMs: 300 });
      try {
        peer.faults.silent = true;
        const r = await timed(quick.call('getinfo', {}));
        assert.ok(r.error instanceof BackendCallError);
        assert.match((r.error as Error).message, /timed out after 300 ms/);
        assert.ok(r.ms < 3000, `bounded: ${r.ms} ms`);
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 50);
        const slow = open({ timeoutMs: 10_000 });
        const r2 = await timed(slow.call('getinfo', {}, ac.signal));
        await slow.close();
        assert.match((r2.error as Error).message, /aborted/);
        assert.ok(r2.ms < 3000, `bounded: ${r2.ms} ms`);
        await rejects(quick.call('getinfo', {}, AbortSignal.abort()));
        // A slow node: the late reply is ignored and the connection stays usable.
        peer.faults.silent = false;
        peer.faults.delayMs = 600;
        await rejects(quick.call('getinfo', {}));
        peer.faults.delayMs = 0;
        await sleep(700);
        assert.equal(((await quick.call('getinfo', {})) as { network: string }).network, 'regtest');
      } finally {
        await quick.close();
      }
    });

    if (name === 'rest') {
      test('the rune never appears in errors or describe(), even when the node echoes it', async () => {
        const messages: string[] = [];
        peer.faults.error = { code: 1502, message: `bad rune ${peer.rune} for you` };
        messages.push((await rejects(rpc.call('getinfo', {}))).message);
        peer.faults.error = undefined;
        peer.faults.garbage = true;
        messages.push((await rejects(rpc.call('getinfo', {}))).message);
        peer.faults.garbage = false;
        messages.push(backend.describe(), rpc.describe());
        for (const m of messages) assert.ok(!m.includes(peer.rune), `no rune in: ${m}`);
        assert.match(messages[0]!, /bad rune \[redacted\] for you/);
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Unix-socket specifics: one multiplexed connection, framing, reconnects
// ---------------------------------------------------------------------------------------------

describe('unix-socket transport', () => {
  test('one persistent connection carries many concurrent calls', async () => {
    const rpc = transports.rpc();
    try {
      const accepted = peer.connectionsAccepted;
      peer.faults.delayMs = 30;
      const results = await Promise.all(Array.from({ length: 25 }, (_, i) => rpc.call(i % 2 ? 'getinfo' : 'listinvoices', {})));
      assert.equal(results.length, 25);
      assert.equal(peer.connectionsAccepted - accepted, 1);
      const ids = peer.calls.slice(-25).map((c) => c.id);
      assert.equal(new Set(ids).size, 25, 'request ids are unique');
      assert.ok(ids.every((id) => /^l402d:(getinfo|listinvoices)#\d+$/.test(String(id))), 'lightningd-rpc(7) id format');
    } finally {
      await rpc.close();
    }
  });

  for (const framing of ['bare', 'split', 'coalesce'] as const) {
    test(`replies framed "${framing}" are read correctly`, async () => {
      const rpc = transports.rpc();
      const backend = createClnBackendWith(rpc);
      try {
        peer.faults.framing = framing;
        const [info, inv] = await Promise.all([rpc.call('getinfo', {}), backend.createInvoice({ amountMsat: 7000, memo: 'framing ⚡', expirySecs: 60 })]);
        assert.equal((info as { alias: string }).alias, 'cln-peer ünïcødé ⚡');
        assert.equal(inv.paymentHash.length, 32);
        const [s1, s2] = await Promise.all([backend.lookupInvoice!(inv.paymentHash), backend.lookupInvoice!(randomBytes(32))]);
        assert.equal(s1.state, 'open');
        assert.equal(s2.state, 'unknown');
      } finally {
        await backend.close();
      }
    });
  }

  test('reconnects after the node closes the connection', async () => {
    const rpc = transports.rpc();
    try {
      await rpc.call('getinfo', {});
      const accepted = peer.connectionsAccepted;
      peer.dropConnections();
      await sleep(20);
      assert.equal(((await rpc.call('getinfo', {})) as { id: string }).id, peer.nodeId);
      assert.equal(peer.connectionsAccepted - accepted, 1);
      // A call in flight when the connection dies fails at once, not at its timeout.
      peer.faults.closeOnRequest = true;
      const slow = new ClnSocketRpc({ path: peer.socketPath, timeoutMs: 10_000 });
      const r = await timed(slow.call('getinfo', {}));
      await slow.close();
      assert.match((r.error as Error).message, /closed the RPC connection/);
      assert.ok(r.ms < 3000, `bounded: ${r.ms} ms`);
      peer.faults.closeOnRequest = false;
      await rpc.call('getinfo', {});
    } finally {
      await rpc.close();
    }
  });

  test('node down: calls fail fast with the socket path; calls work again once it is back', async () => {
    const rpc = transports.rpc();
    try {
      await peer.down();
      const r = await timed(rpc.call('getinfo', {}));
      assert.ok(r.error instanceof BackendCallError);
      assert.match((r.error as Error).message, /cannot connect to CLN RPC socket .*lightning-rpc: ENOENT/);
      assert.ok(r.ms < 2000);
      await peer.up();
      assert.equal(((await rpc.call('getinfo', {})) as { network: string }).network, 'regtest');
    } finally {
      await peer.up();
      await rpc.close();
    }
  });

  test('after close(), calls are refused and in-flight calls are rejected', async () => {
    const rpc = transports.rpc();
    peer.faults.silent = true;
    const pending = rpc.call('getinfo', {}).then(
      () => assert.fail('must not resolve'),
      (e: unknown) => e,
    );
    await sleep(30);
    await rpc.close();
    const e = await pending;
    assert.ok(e instanceof BackendCallError && e.retryable === false);
    assert.match((await rejects(rpc.call('getinfo', {}))).message, /closed/);
  });
});

// ---------------------------------------------------------------------------------------------
// clnrest specifics
// ---------------------------------------------------------------------------------------------

describe('clnrest transport', () => {
  test('a wrong rune is refused (401), never retried, and not echoed', async () => {
    const wrong = `${peer.rune.slice(0, -4)}AAAA`;
    const rpc = new ClnRestRpc({ url: peer.restUrl!, rune: wrong, ca: peer.caPem, timeoutMs: 2000 });
    try {
      const e = await rejects(rpc.call('getinfo', {}));
      assert.match(e.message, /rejected the rune .*HTTP 401, code 1502: Rune is not valid/);
      assert.equal(e.retryable, false);
      assert.ok(!e.message.includes(wrong) && !e.message.includes(peer.rune));
    } finally {
      await rpc.close();
    }
  });

  test('an unknown CA fails TLS verification with an actionable message', async () => {
    const rpc = new ClnRestRpc({ url: peer.restUrl!, rune: peer.rune, timeoutMs: 2000 });
    try {
      const e = await rejects(rpc.call('getinfo', {}));
      assert.match(e.message, /TLS verification failed .*ca_cert_path/);
      assert.equal(e.retryable, false);
    } finally {
      await rpc.close();
    }
  });

  test('unknown method is HTTP 404, node errors are HTTP 500 with the JSON-RPC code', async () => {
    const rpc = transports.rest();
    try {
      assert.match((await rejects(rpc.call('nosuch', {}))).message, /does not know method nosuch \(HTTP 404/);
      peer.faults.errorFor.getinfo = { code: 1005, message: 'Timeout waiting for response' };
      const e = await rejects(rpc.call('getinfo', {}));
      assert.ok(e instanceof ClnRpcError && e.code === 1005 && e.retryable);
      assert.match((await rejects(rpc.call('bad name!', {}))).message, /invalid CLN method name/);
    } finally {
      await rpc.close();
    }
  });

  test('plain http is refused for non-loopback hosts', () => {
    assert.throws(() => new ClnRestRpc({ url: 'http://node.example:3010', rune: 'x'.repeat(20), timeoutMs: 100 }), /only allowed for loopback/);
    assert.throws(() => new ClnRestRpc({ url: 'https://u:p@node.example', rune: 'x'.repeat(20), timeoutMs: 100 }), /credentials/);
  });
});

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

describe('config', () => {
  test('defaults: unix socket at ~/.lightning/bitcoin/lightning-rpc', () => {
    const c = clnConfigSchema.parse({ type: 'cln' });
    assert.equal(c.transport, 'rpc');
    assert.equal(c.rpc_path, DEFAULT_CLN_RPC_PATH);
    assert.equal(resolveConfigPath(c.rpc_path, '/etc/l402'), join(homedir(), '.lightning/bitcoin/lightning-rpc'));
    assert.equal(resolveConfigPath('run/lightning-rpc', '/etc/l402'), '/etc/l402/run/lightning-rpc');
    assert.equal(resolveConfigPath('/abs/x', '/etc/l402'), '/abs/x');
  });

  test('rest needs rest_url and exactly one of rune / rune_file; rest keys are refused with rpc', () => {
    const bad = [
      { type: 'cln', transport: 'rest', rune: 'abcdefgh1234' },
      { type: 'cln', transport: 'rest', rest_url: 'https://127.0.0.1:3010' },
      { type: 'cln', transport: 'rest', rest_url: 'https://127.0.0.1:3010', rune: 'abcdefgh1234', rune_file: 'r' },
      { type: 'cln', transport: 'rest', rest_url: 'http://10.0.0.5:3010', rune: 'abcdefgh1234' },
      { type: 'cln', transport: 'rpc', rune: 'abcdefgh1234' },
      { type: 'cln', rpc_path: '/x', extra: 1 },
      { type: 'cln', transport: 'rest', rest_url: 'https://127.0.0.1:3010', rune: 'has space in it' },
    ];
    for (const raw of bad) assert.equal(clnConfigSchema.safeParse(raw).success, false, JSON.stringify(raw));
    const ok = clnConfigSchema.parse({ type: 'cln', transport: 'rest', rest_url: 'https://127.0.0.1:3010', rune: 'abcdefgh1234_-=', ca_cert_path: 'ca.pem' });
    assert.equal(ok.rest_url, 'https://127.0.0.1:3010');
  });

  test('a rejected rune value is not echoed by the schema', () => {
    const secret = 'SECRET"rune\nvalue';
    const r = clnConfigSchema.safeParse({ type: 'cln', transport: 'rest', rest_url: 'https://127.0.0.1:3010', rune: secret });
    assert.equal(r.success, false);
    assert.ok(!JSON.stringify(r.error!.issues).includes('SECRET'));
  });

  test('legacy env: CLN_LIGHTNING_RPC_FILE_PATH → rpc_path', () => {
    assert.deepEqual(clnFromLegacyEnv({ LN_CLIENT_TYPE: 'CLN', CLN_LIGHTNING_RPC_FILE_PATH: ' /root/.lightning/regtest/lightning-rpc ' }), {
      type: 'cln', transport: 'rpc', rpc_path: '/root/.lightning/regtest/lightning-rpc',
    });
    const none = clnFromLegacyEnv({ CLN_LIGHTNING_RPC_FILE_PATH: '' });
    assert.deepEqual(none, { type: 'cln', transport: 'rpc' });
    assert.equal(clnConfigSchema.parse(none).rpc_path, DEFAULT_CLN_RPC_PATH);
  });

  test('createClnBackend resolves rune_file and ca_cert_path against configDir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cln-cfg-'));
    try {
      writeFileSync(join(dir, 'rune'), `${peer.rune}\n`);
      writeFileSync(join(dir, 'ca.pem'), peer.caPem!);
      const cfg = clnConfigSchema.parse({ type: 'cln', transport: 'rest', rest_url: peer.restUrl, rune_file: 'rune', ca_cert_path: 'ca.pem' });
      const backend = createClnBackend(cfg, ctx({ configDir: dir }));
      try {
        assert.match(await backend.check!(), /regtest/);
        assert.equal(backend.kind, 'cln');
        assert.match(backend.describe(), /clnrest https:\/\/127\.0\.0\.1:\d+/);
        assert.ok(!backend.describe().includes(peer.rune));
      } finally {
        await backend.close();
      }
      const missing = clnConfigSchema.parse({ type: 'cln', transport: 'rest', rest_url: peer.restUrl, rune_file: 'nope' });
      assert.throws(() => createClnBackend(missing, ctx({ configDir: dir })), (e: Error) => e instanceof ClnConfigError && /lightning\.rune_file: cannot read .*nope: no such file \(ENOENT\)/.test(e.message));
      writeFileSync(join(dir, 'bad-rune'), 'not a rune\n');
      const bad = clnConfigSchema.parse({ type: 'cln', transport: 'rest', rest_url: peer.restUrl, rune_file: 'bad-rune' });
      assert.throws(() => createClnBackend(bad, ctx({ configDir: dir })), /lightning\.rune_file: must hold a CLN rune/);
      const sock = createClnBackend(clnConfigSchema.parse({ type: 'cln', rpc_path: peer.socketPath }), ctx());
      try {
        assert.match(await sock.check!(), /cln-peer/);
        assert.equal(sock.describe(), `Core Lightning (BOLT11) via JSON-RPC over unix socket ${peer.socketPath}`);
      } finally {
        await sock.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
