// The lnd backend against a protocol-faithful lnd peer (grpc-js TLS server over lnd's own protos, plus a
// grpc-gateway style REST front), through a real SOCKS5 hop, and end to end through real nginx.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  createLndBackend, lndConfigSchema, lndFromLegacyEnv, LND_DEFAULTS, type LndConfig,
} from '../../src/rails/lightning/lnd/lnd.js';
import { BackendCallError, type BackendContext, type LightningBackend } from '../../src/rails/lightning/backend.js';
import { createLogger } from '../../src/util/log.js';
import { makeSelfSignedCert, startLndPeer, type LndPeer } from '../peers/lnd-peer.js';
import { Cleanup, freePort, http1, requireTool } from './harness.js';
import { startStack } from './gate-fixture.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { parseConfig } from '../../src/config/config.js';
import { Gate } from '../../src/server/gate.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { closeSession, openSession } from '../../src/policy/mpp-session-ledger.js';
import { storeKeys } from '../../src/policy/store-keys.js';

const cleanup = new Cleanup();
let peer: LndPeer;
let scratch: string;

before(async () => {
  peer = cleanup.use(await startLndPeer({ alias: 'peer-alias' }), 'lnd peer');
  scratch = mkdtempSync(join(tmpdir(), 'l402-lnd-test-'));
  cleanup.add(() => rmSync(scratch, { recursive: true, force: true }), 'rm scratch');
});
after(() => cleanup.run());

function ctx(timeoutMs = 2000, configDir = '/'): BackendContext {
  return { configDir, dataDir: scratch, log: createLogger('silent'), timeoutMs };
}

function cfgFor(transport: 'grpc' | 'rest', extra: Record<string, unknown> = {}): LndConfig {
  return lndConfigSchema.parse({
    type: 'lnd',
    address: peer.grpcAddress,
    rest_address: peer.restAddress,
    transport,
    tls_cert_path: peer.certPath,
    macaroon_path: peer.macaroonPath,
    ...extra,
  });
}

/** A backend that is closed after the test, whatever happens. */
function backend(transport: 'grpc' | 'rest', extra: Record<string, unknown> = {}, timeoutMs = 2000): LightningBackend {
  const b = createLndBackend(cfgFor(transport, extra), ctx(timeoutMs));
  cleanup.add(() => b.close(), `close ${transport} backend`);
  return b;
}

function resetKnobs(): void {
  Object.assign(peer.knobs, { delayMs: 0, fail: false, garbage: false, authFailure: 'unauthenticated', notFound: 'not-found', noInvoicesRpc: false });
}

async function rejection(p: Promise<unknown>): Promise<BackendCallError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof BackendCallError, `expected BackendCallError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

const macHex = (): string => peer.macaroon.toString('hex');

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

test('config: defaults, strictness, address and socks5_proxy forms', () => {
  const d = lndConfigSchema.parse({ type: 'lnd' });
  assert.deepEqual(d, { type: 'lnd', ...LND_DEFAULTS });
  assert.equal(d.address, 'localhost:10009');
  assert.equal(d.tls_cert_path, 'tls.cert');
  assert.equal(d.macaroon_path, 'admin.macaroon');
  assert.equal(d.transport, 'grpc');
  assert.equal(d.rest_address, 'localhost:8080');
  assert.equal(d.socks5_proxy, undefined);
  assert.equal(lndConfigSchema.parse({ type: 'lnd', address: '[::1]:10009' }).address, '[::1]:10009');
  assert.equal(lndConfigSchema.parse({ type: 'lnd', socks5_proxy: 'socks5h://127.0.0.1:9050' }).socks5_proxy, '127.0.0.1:9050');
  assert.equal(lndConfigSchema.parse({ type: 'lnd', socks5_proxy: ' 127.0.0.1:9050 ' }).socks5_proxy, '127.0.0.1:9050');
  for (const bad of [
    { type: 'lnd', address: 'localhost' },
    { type: 'lnd', address: 'localhost:99999' },
    { type: 'lnd', address: 'https://localhost:10009' },
    { type: 'lnd', transport: 'http' },
    { type: 'lnd', socks5_proxy: 'user:pw@127.0.0.1:9050' },
    { type: 'lnd', macaroon: 'abcd' },
  ]) {
    assert.equal(lndConfigSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
  const pwErr = lndConfigSchema.safeParse({ type: 'lnd', socks5_proxy: 'user:hunter2@127.0.0.1:9050' });
  assert.ok(!pwErr.success && !JSON.stringify(pwErr.error.issues.map((i) => i.message)).includes('hunter2'));
});

test('legacy env: ngx_l402 LND variables map onto the lnd section', () => {
  const raw = lndFromLegacyEnv({
    LN_CLIENT_TYPE: 'LND',
    LND_ADDRESS: 'node.example:10009',
    MACAROON_FILE_PATH: '/secrets/admin.macaroon',
    CERT_FILE_PATH: '/secrets/tls.cert',
    SOCKS5_PROXY: '127.0.0.1:9050',
  });
  assert.deepEqual(raw, {
    type: 'lnd',
    address: 'node.example:10009',
    macaroon_path: '/secrets/admin.macaroon',
    tls_cert_path: '/secrets/tls.cert',
    socks5_proxy: '127.0.0.1:9050',
  });
  const parsed = lndConfigSchema.parse(raw);
  assert.equal(parsed.transport, 'grpc');
  // Unset or empty variables fall back to ngx_l402's defaults.
  assert.deepEqual(lndConfigSchema.parse(lndFromLegacyEnv({ LN_CLIENT_TYPE: 'LND', LND_ADDRESS: '' })), { type: 'lnd', ...LND_DEFAULTS });
});

test('creation: unreadable or malformed credential files fail at start, naming key and path, never contents', () => {
  const missing = join(scratch, 'nope', 'tls.cert');
  assert.throws(() => createLndBackend(cfgFor('grpc', { tls_cert_path: missing }), ctx()), (err: Error) => {
    assert.match(err.message, /lightning\.tls_cert_path/);
    assert.ok(err.message.includes(missing));
    assert.match(err.message, /no such file/);
    return true;
  });
  assert.throws(() => createLndBackend(cfgFor('grpc', { macaroon_path: join(scratch, 'missing.macaroon') }), ctx()), /lightning\.macaroon_path: cannot read .*missing\.macaroon: no such file/);
  const secret = 'TOP-SECRET-CONTENT-' + randomBytes(8).toString('hex');
  const notPem = join(scratch, 'not-a-cert');
  writeFileSync(notPem, secret);
  assert.throws(() => createLndBackend(cfgFor('grpc', { tls_cert_path: notPem }), ctx()), (err: Error) => {
    assert.match(err.message, /lightning\.tls_cert_path: .* is not a PEM certificate/);
    assert.ok(!err.message.includes(secret));
    return true;
  });
  const empty = join(scratch, 'empty.macaroon');
  writeFileSync(empty, '');
  assert.throws(() => createLndBackend(cfgFor('grpc', { macaroon_path: empty }), ctx()), /lightning\.macaroon_path: .* is empty/);
  // Relative paths resolve against the config directory.
  assert.throws(() => createLndBackend(cfgFor('grpc', { tls_cert_path: 'rel/tls.cert' }), ctx(2000, '/etc/l402-test-dir')), /\/etc\/l402-test-dir\/rel\/tls\.cert/);
  // An onion address cannot work without a proxy; say so instead of failing DNS at the first call.
  assert.throws(() => createLndBackend(cfgFor('grpc', { address: 'abcdef.onion:10009' }), ctx()), /onion address; set lightning\.socks5_proxy/);
});

// ---------------------------------------------------------------------------------------------
// Both transports: the happy path, check(), and every fault
// ---------------------------------------------------------------------------------------------

for (const transport of ['grpc', 'rest'] as const) {
  test(`${transport}: create → lookup open → settle at the peer → lookup settled with the preimage`, async () => {
    resetKnobs();
    const b = backend(transport);
    const before = Math.floor(Date.now() / 1000);
    const inv = await b.createInvoice({ amountMsat: 21_000, memo: 'L402 test', expirySecs: 600 });
    const hashHex = inv.paymentHash.toString('hex');
    const issued = peer.issued.get(hashHex);
    assert.ok(issued, 'the invoice was issued by the peer');
    assert.equal(inv.bolt11, issued.bolt11);
    assert.equal(issued.amountMsat, 21_000);
    assert.equal(issued.memo, 'L402 test');
    assert.equal(issued.expiry, 600);
    assert.ok(inv.expiresAt >= before + 600 && inv.expiresAt <= before + 602, `expiresAt ${inv.expiresAt}`);
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
    const preimage = peer.settle(inv.bolt11);
    const st = await b.lookupInvoice!(inv.paymentHash);
    assert.equal(st.state, 'settled');
    assert.ok(st.state === 'settled' && st.preimage.equals(preimage));
    assert.ok(createHash('sha256').update(preimage).digest().equals(inv.paymentHash));
    assert.deepEqual(await b.lookupInvoice!(randomBytes(32)), { state: 'unknown' }, 'NOT_FOUND maps to unknown');
    assert.deepEqual(await b.lookupInvoice!(randomBytes(31)), { state: 'unknown' }, 'a malformed hash is never sent');
    assert.match(b.describe(), new RegExp(`lnd ${transport === 'grpc' ? 'gRPC' : 'REST'} at 127\\.0\\.0\\.1:\\d+`));
    assert.ok(!b.describe().includes(macHex()));
  });

  test(`${transport}: check() reports alias, network, version and sync state`, async () => {
    resetKnobs();
    const out = await backend(transport).check!();
    assert.match(out, /^lnd "peer-alias" \([0-9a-f]{12}…\) on regtest, version 0\.20\.0-beta.*, block 150, synced to chain, via (gRPC|REST) 127\.0\.0\.1:\d+$/);
    assert.ok(out.includes(peer.nodePubkey.slice(0, 12)));
  });

  for (const style of ['unauthenticated', 'lnd'] as const) {
    test(`${transport}: wrong macaroon (${style} style refusal) → credential error without any secret`, async () => {
      resetKnobs();
      peer.knobs.authFailure = style;
      const wrong = randomBytes(64);
      const wrongPath = join(scratch, `wrong-${transport}-${style}.macaroon`);
      writeFileSync(wrongPath, wrong);
      const b = backend(transport, { macaroon_path: wrongPath });
      for (const call of [() => b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }), () => b.check!(), () => b.lookupInvoice!(randomBytes(32))]) {
        const err = await rejection(call());
        assert.match(err.message, /rejected the macaroon from macaroon_path/);
        assert.ok(err.message.includes(wrongPath), 'names the file to fix');
        assert.equal(err.retryable, false);
        for (const secret of [wrong.toString('hex'), macHex()]) {
          assert.ok(!err.message.toLowerCase().includes(secret.slice(0, 16)), 'no macaroon bytes in the message');
        }
      }
      peer.knobs.authFailure = 'unauthenticated';
    });
  }

  test(`${transport}: a certificate from another CA → TLS error naming tls_cert_path`, async () => {
    resetKnobs();
    const other = makeSelfSignedCert(scratch, `other-ca-${transport}`);
    const err = await rejection(backend(transport, { tls_cert_path: other.certPath }).createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
    assert.match(err.message, /is unavailable \(AddInvoice\)/);
    assert.match(err.message, /TLS failed: check that tls_cert_path/);
    assert.ok(err.message.includes(other.certPath));
    assert.equal(err.retryable, true);
  });

  test(`${transport}: a slow peer is bounded by ctx.timeoutMs, and an AbortSignal cancels at once`, async () => {
    resetKnobs();
    const b = backend(transport, {}, 300);
    await b.check!(); // connect first, so the bound measured below is the call's
    peer.knobs.delayMs = 5000;
    let t0 = Date.now();
    const err = await rejection(b.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
    assert.ok(Date.now() - t0 < 3000, `bounded: took ${Date.now() - t0} ms`);
    assert.match(err.message, /timed out: no answer within 300 ms/);
    const ac = new AbortController();
    t0 = Date.now();
    const pending = rejection(backend(transport, {}, 10_000).lookupInvoice!(randomBytes(32), ac.signal));
    setTimeout(() => ac.abort(), 100);
    const aborted = await pending;
    assert.ok(Date.now() - t0 < 3000, `abort honoured: took ${Date.now() - t0} ms`);
    assert.match(aborted.message, /aborted/);
    resetKnobs();
  });

  test(`${transport}: nothing listening → fast, clear "unavailable" error`, async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await rejection(backend(transport, { address: `127.0.0.1:${port}`, rest_address: `127.0.0.1:${port}` }, 4000).createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
    assert.ok(Date.now() - t0 < 4500, `bounded: took ${Date.now() - t0} ms`);
    assert.match(err.message, new RegExp(`lnd (gRPC|REST) 127\\.0\\.0\\.1:${port} is unavailable \\(AddInvoice\\)`));
    assert.match(err.message, /ECONNREFUSED|No connection established|connect/i);
    assert.equal(err.retryable, true);
  });

  test(`${transport}: node answering UNAVAILABLE → retryable error with the node's message`, async () => {
    resetKnobs();
    peer.knobs.fail = true;
    const err = await rejection(backend(transport).createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
    assert.match(err.message, /is unavailable \(AddInvoice\): the RPC server is not active yet/);
    assert.equal(err.retryable, true);
    resetKnobs();
  });

  test(`${transport}: peer stopped under a connected backend → error, and lookups never read as unpaid`, async () => {
    const p2 = cleanup.use(await startLndPeer(), 'second lnd peer');
    const b = createLndBackend(lndConfigSchema.parse({
      type: 'lnd', transport, address: p2.grpcAddress, rest_address: p2.restAddress, tls_cert_path: p2.certPath, macaroon_path: p2.macaroonPath,
    }), ctx(2000));
    cleanup.add(() => b.close());
    const inv = await b.createInvoice({ amountMsat: 3000, memo: 'x', expirySecs: 60 });
    await p2.stop();
    const t0 = Date.now();
    const err = await rejection(b.lookupInvoice!(inv.paymentHash));
    assert.ok(Date.now() - t0 < 3000, `bounded: took ${Date.now() - t0} ms`);
    assert.match(err.message, /is unavailable \(LookupInvoice(V2)?\)|timed out/);
  });

  test(`${transport}: "unable to locate invoice" from older lnd (UNKNOWN) is unknown too`, async () => {
    resetKnobs();
    peer.knobs.notFound = 'legacy-unknown';
    assert.deepEqual(await backend(transport).lookupInvoice!(randomBytes(32)), { state: 'unknown' });
    resetKnobs();
  });

  test(`${transport}: inconsistent invoices are refused`, async () => {
    resetKnobs();
    const b = backend(transport);
    const cases: Array<[LndPeer['knobs']['garbage'], RegExp]> = [
      ['hash', /payment hash does not match r_hash; refusing it/],
      ['amount', /payment_request is for 6000 msat, but 5000 msat was requested; refusing it/],
      ['undecodable', /payment_request is not a decodable BOLT11 invoice; refusing it/],
    ];
    for (const [garbage, re] of cases) {
      peer.knobs.garbage = garbage;
      const err = await rejection(b.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 60 }));
      assert.match(err.message, re, String(garbage));
      assert.equal(err.retryable, false);
    }
    // SETTLED must come with a preimage that hashes to the payment hash.
    peer.knobs.garbage = false;
    const inv = await b.createInvoice({ amountMsat: 5000, memo: 'x', expirySecs: 60 });
    peer.knobs.garbage = 'open-with-preimage';
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' }, 'a preimage on an OPEN invoice is not payment');
    peer.settle(inv.bolt11);
    peer.knobs.garbage = 'bad-preimage';
    const err = await rejection(b.lookupInvoice!(inv.paymentHash));
    assert.match(err.message, /SETTLED without a preimage that hashes to the payment hash/);
    resetKnobs();
  });
}

test('rest: a node without the invoicesrpc REST routes is an error, not an unknown invoice', async () => {
  resetKnobs();
  peer.knobs.noInvoicesRpc = true;
  const err = await rejection(backend('rest').lookupInvoice!(randomBytes(32)));
  assert.match(err.message, /no REST route \/v2\/invoices\/lookup .*use transport: grpc/);
  assert.equal(err.retryable, false);
  resetKnobs();
});

test('grpc: a hex-encoded macaroon file works like the binary one', async () => {
  resetKnobs();
  const hexPath = join(scratch, 'admin.macaroon.hex');
  writeFileSync(hexPath, macHex().toUpperCase() + '\n');
  assert.match(await backend('grpc', { macaroon_path: hexPath }).check!(), /"peer-alias"/);
});

// ---------------------------------------------------------------------------------------------
// Connection reuse
// ---------------------------------------------------------------------------------------------

test('grpc: one channel (one TCP connection) carries every call, concurrent ones included', async () => {
  resetKnobs();
  const b = backend('grpc');
  const firstCall = peer.grpcCallPeers.length;
  await b.check!();
  const invs = await Promise.all(Array.from({ length: 8 }, (_, i) => b.createInvoice({ amountMsat: 1000 + i, memo: 'reuse', expirySecs: 60 })));
  for (const inv of invs) await b.lookupInvoice!(inv.paymentHash);
  await Promise.all(invs.map((inv) => b.lookupInvoice!(inv.paymentHash)));
  const seen = peer.grpcCallPeers.slice(firstCall);
  assert.equal(seen.length, 25);
  assert.equal(new Set(seen).size, 1, `distinct client connections: ${[...new Set(seen)].join(', ')}`);
});

test('rest: one keep-alive connection carries sequential calls', async () => {
  resetKnobs();
  const b = backend('rest');
  const before = peer.restConnections;
  await b.check!();
  for (let i = 0; i < 5; i++) {
    const inv = await b.createInvoice({ amountMsat: 2000 + i, memo: 'reuse', expirySecs: 60 });
    await b.lookupInvoice!(inv.paymentHash);
  }
  assert.equal(peer.restConnections - before, 1);
});

// ---------------------------------------------------------------------------------------------
// SOCKS5 (Tor) path
// ---------------------------------------------------------------------------------------------

interface Socks5Server {
  port: number;
  connects: Array<{ atyp: number; host: string; port: number }>;
  /** When set, CONNECT is answered with this SOCKS5 reply code instead of connecting. */
  refuseWith: number | undefined;
  stop(): Promise<void>;
}

/** Minimal RFC 1928 server: no-auth method, CONNECT only; `.onion` names resolve to 127.0.0.1 here. */
async function startSocks5(): Promise<Socks5Server> {
  const sockets = new Set<net.Socket>();
  const state: Socks5Server = { port: 0, connects: [], refuseWith: undefined, stop: async () => {} };
  const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    let greeted = false;
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (!greeted) {
        if (buf.length < 2 || buf.length < 2 + buf[1]!) return;
        const methods = [...buf.subarray(2, 2 + buf[1]!)];
        if (buf[0] !== 5 || !methods.includes(0)) {
          sock.end(Buffer.from([5, 0xff]));
          return;
        }
        sock.write(Buffer.from([5, 0]));
        buf = buf.subarray(2 + buf[1]!);
        greeted = true;
      }
      if (buf.length < 5) return;
      const [ver, cmd, , atyp] = buf;
      let host: string;
      let off: number;
      if (atyp === 1) [host, off] = [[...buf.subarray(4, 8)].join('.'), 8];
      else if (atyp === 3) [host, off] = [buf.subarray(5, 5 + buf[4]!).toString('latin1'), 5 + buf[4]!];
      else if (atyp === 4) [host, off] = [buf.subarray(4, 20).toString('hex'), 20];
      else return void sock.destroy();
      if (buf.length < off + 2) return;
      const port = buf.readUInt16BE(off);
      const rest = buf.subarray(off + 2);
      sock.off('data', onData);
      sock.pause();
      state.connects.push({ atyp: atyp!, host, port });
      if (ver !== 5 || cmd !== 1) return void sock.end(reply(7));
      if (state.refuseWith !== undefined) return void sock.end(reply(state.refuseWith));
      const target = host.endsWith('.onion') || host === 'localhost' ? '127.0.0.1' : host;
      const out = net.connect(port, target);
      sockets.add(out);
      out.on('close', () => sockets.delete(out));
      out.once('error', () => sock.end(reply(5)));
      out.once('connect', () => {
        sock.write(reply(0));
        if (rest.length) out.write(rest);
        sock.pipe(out);
        out.pipe(sock);
        out.on('close', () => sock.destroy());
        sock.on('close', () => out.destroy());
        sock.resume();
      });
    };
    sock.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as net.AddressInfo).port;
  state.stop = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return state;
}

const ONION = 'lndpeerexampleaddress.onion';
let onionPeer: LndPeer | undefined;
/** A second peer whose certificate names only the onion host, so TLS can only pass by checking that name. */
async function getOnionPeer(): Promise<LndPeer> {
  onionPeer ??= cleanup.use(await startLndPeer({ alias: 'peer-alias', tlsNames: { dns: [ONION], ips: [] } }), 'onion lnd peer');
  return onionPeer;
}

for (const transport of ['grpc', 'rest'] as const) {
  test(`${transport} via SOCKS5: the onion name goes to the proxy unresolved, TLS still verifies the node's name`, async () => {
    const op = await getOnionPeer();
    const onionBackend = (extra: Record<string, unknown>): LightningBackend => {
      const b = createLndBackend(lndConfigSchema.parse({
        type: 'lnd', transport, address: `${ONION}:${op.grpcPort}`, rest_address: `${ONION}:${op.restPort}`,
        tls_cert_path: op.certPath, macaroon_path: op.macaroonPath, ...extra,
      }), ctx());
      cleanup.add(() => b.close());
      return b;
    };
    // Dialled directly by address, this certificate does not match: the name check is real.
    const direct = await rejection(onionBackend({ address: op.grpcAddress, rest_address: op.restAddress }).check!());
    assert.match(direct.message, /TLS failed|altnames|does not match|certificate/i);

    const socks = cleanup.use(await startSocks5(), 'socks5');
    const onion = ONION;
    const peer = op;
    const port = transport === 'grpc' ? peer.grpcPort : peer.restPort;
    const b = onionBackend({ socks5_proxy: `socks5h://127.0.0.1:${socks.port}` });
    assert.match(b.describe(), new RegExp(`at ${onion}:${port} through SOCKS5 proxy 127\\.0\\.0\\.1:${socks.port}`));
    const grpcBefore = peer.grpcCallPeers.length;
    const inv = await b.createInvoice({ amountMsat: 7000, memo: 'tor', expirySecs: 60 });
    assert.deepEqual(await b.lookupInvoice!(inv.paymentHash), { state: 'open' });
    peer.settle(inv.bolt11);
    assert.equal((await b.lookupInvoice!(inv.paymentHash)).state, 'settled');
    assert.match(await b.check!(), /"peer-alias"/);
    assert.ok(socks.connects.length >= 1, 'traffic went through the proxy');
    for (const c of socks.connects) assert.deepEqual(c, { atyp: 3, host: onion, port }, 'CONNECT by name (ATYP 3), never resolved locally');
    assert.equal(socks.connects.length, 1, 'one proxied connection for all calls');
    if (transport === 'grpc') assert.equal(new Set(peer.grpcCallPeers.slice(grpcBefore)).size, 1);
    // The proxy refusing the target shows up with the proxy's reason.
    socks.refuseWith = 4; // host unreachable
    const b2 = onionBackend({ socks5_proxy: `127.0.0.1:${socks.port}` });
    const err = await rejection(b2.createInvoice({ amountMsat: 7000, memo: 'tor', expirySecs: 60 }));
    assert.match(err.message, /is unavailable \(AddInvoice\)/);
    assert.match(err.message, new RegExp(`SOCKS5 proxy 127\\.0\\.0\\.1:${socks.port} could not connect to ${onion.replace(/\./g, '\\.')}:${port}`));
    // No proxy listening at all: same, with the socket error.
    const deadPort = await freePort();
    const err3 = await rejection(onionBackend({ socks5_proxy: `127.0.0.1:${deadPort}` }).createInvoice({ amountMsat: 7000, memo: 'tor', expirySecs: 60 }));
    assert.match(err3.message, new RegExp(`SOCKS5 proxy 127\\.0\\.0\\.1:${deadPort} could not connect .*ECONNREFUSED`));
  });
}

// ---------------------------------------------------------------------------------------------
// End to end: nginx → l402d → lnd backend → peer
// ---------------------------------------------------------------------------------------------

const nginxBin = requireTool('nginx');

test('payInvoice (MPP session refunds): only with pay_refunds; pays exactly the amount, fees capped; a failed or inconsistent payment rejects', async () => {
  resetKnobs();
  const client = DevWallet.open(join(scratch, 'refund-client'));
  cleanup.add(() => client.close());
  peer.payOut = (bolt11, amountMsat) => client.payInvoice({ bolt11, amountMsat }).then((r) => r.preimage);
  assert.equal(backend('grpc').payInvoice, undefined, 'off by default: l402d never pays out of the node');
  for (const transport of ['grpc', 'rest'] as const) {
    resetKnobs();
    const b = backend(transport, { pay_refunds: true, refund_fee_limit_msat: 2500 });
    assert.ok(b.payInvoice);
    // An amountless return invoice gets exactly the amount named.
    const ret = client.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
    const before = peer.payments.length;
    const { preimage } = await b.payInvoice({ bolt11: ret.bolt11, amountMsat: 7000 });
    assert.deepEqual(createHash('sha256').update(preimage).digest(), ret.paymentHash);
    assert.equal(client.paidMsat(ret.paymentHash), 7000);
    assert.deepEqual(peer.payments.slice(before), [{ bolt11: ret.bolt11, amtMsat: 7000, feeLimitMsat: 2500 }]);
    assert.deepEqual(peer.calls.at(-1), { transport, method: 'SendPaymentSync' });
    // An invoice with its amount: paid as it is (lnd refuses an amount beside it); another amount is refused here.
    const priced = await client.createInvoice({ amountMsat: 3000, memo: 'r', expirySecs: 3600 });
    await rejection(b.payInvoice({ bolt11: priced.bolt11, amountMsat: 4000 }));
    assert.equal(peer.payments.length, before + 1, 'refused before any call');
    await b.payInvoice({ bolt11: priced.bolt11, amountMsat: 3000 });
    assert.equal(peer.payments.at(-1)!.amtMsat, 0);
    // Paid already (the network says no): payment_error is a failure, never a success.
    const again = await rejection(b.payInvoice({ bolt11: ret.bolt11, amountMsat: 7000 }));
    assert.match(again.message, /payment failed/);
    // A "success" without the invoice's preimage is refused.
    peer.knobs.garbage = 'bad-preimage';
    const fresh = client.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
    assert.match((await rejection(b.payInvoice({ bolt11: fresh.bolt11, amountMsat: 1000 }))).message, /preimage/);
    resetKnobs();
    await rejection(b.payInvoice({ bolt11: 'lnbcrt1garbage', amountMsat: 1000 }));
  }
  peer.payOut = undefined;
});

test('an MPP session on lnd: the gate takes session routes only with pay_refunds, and the close refunds through the node', async () => {
  resetKnobs();
  const client = DevWallet.open(join(scratch, 'refund-client-2'));
  cleanup.add(() => client.close());
  peer.payOut = (bolt11, amountMsat) => client.payInvoice({ bolt11, amountMsat }).then((r) => r.preimage);
  const cfg = parseConfig('lightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 2000, access: balance, balance_msat: 10000, schemes: [l402, mpp] }\n', { env: {} });
  const parts = { config: cfg, store: new MemoryStore(), rootKeys: [randomBytes(32)], log: createLogger('silent') };
  assert.throws(() => new Gate({ ...parts, backend: backend('grpc') }), /schemes mpp on access: balance.*lightning\.type lnd cannot/);
  const paying = backend('rest', { pay_refunds: true });
  assert.ok(new Gate({ ...parts, backend: paying }));
  // The session ledger's close pays through lnd (SendPaymentSync) to the return invoice bound at open.
  const d = { store: parts.store, masters: parts.rootKeys, storeTimeoutMs: 1000, payInvoice: (r: { bolt11: string; amountMsat: number }) => paying.payInvoice!(r) };
  const id = createHash('sha256').update(randomBytes(32)).digest('hex');
  const ret = client.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
  assert.ok((await openSession(d, { sessionId: id, scopeId: '/a', returnInvoice: ret.bolt11, depositMsat: 10_000 })).ok);
  assert.equal((await parts.store.drawBalance(storeKeys.mppSessionBalance(id), 2000, 'r', 'o', 60)).ok, true);
  assert.deepEqual(await closeSession(d, { sessionId: id, scopeId: '/a' }), { ok: true, refundSats: 8, refundStatus: 'succeeded' });
  assert.equal(client.paidMsat(ret.paymentHash), 8000);
  // No route: the refund is "failed", the session closed all the same.
  peer.payOut = undefined;
  const id2 = createHash('sha256').update(randomBytes(32)).digest('hex');
  const ret2 = client.createAmountlessInvoice({ memo: 'refund', expirySecs: 3600 });
  await openSession(d, { sessionId: id2, scopeId: '/a', returnInvoice: ret2.bolt11, depositMsat: 10_000 });
  assert.deepEqual(await closeSession(d, { sessionId: id2, scopeId: '/a' }), { ok: true, refundSats: 10, refundStatus: 'failed' });
  assert.equal(client.paidMsat(ret2.paymentHash), undefined);
});

test('end to end through nginx: 402 with the peer\'s invoice, settle at the peer, preimage → 200', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  resetKnobs();
  const stackCleanup = new Cleanup();
  try {
    const logSink = new PassThrough();
    const logs: string[] = [];
    logSink.on('data', (c: Buffer) => logs.push(c.toString()));
    const b = createLndBackend(cfgFor('grpc'), { configDir: '/', dataDir: scratch, log: createLogger('debug', logSink), timeoutMs: 3000 });
    const s = await startStack(stackCleanup, { backend: b }); // the gate owns and closes the backend
    const r = await http1(s.origin + '/premium', { headers: { accept: 'application/json' } });
    assert.equal(r.status, 402, r.body);
    const body = JSON.parse(r.body) as { invoice: string; macaroon: string; payment_hash: string; amount_msat: number };
    const issued = peer.issued.get(body.payment_hash);
    assert.ok(issued, 'the challenge carries an invoice issued by the lnd peer');
    assert.equal(issued.bolt11, body.invoice);
    assert.equal(issued.amountMsat, 10_000);
    assert.match(String(r.headers['www-authenticate']), new RegExp(`invoice="${body.invoice}"`));
    assert.equal(s.upstream.hits, 0);
    // Unpaid preimage guess is refused; the real one (only revealed by paying) is accepted.
    const wrong = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${randomBytes(32).toString('hex')}` } });
    assert.equal(wrong.status, 401);
    const preimage = peer.settle(body.invoice).toString('hex');
    const ok = await http1(s.origin + '/premium', { headers: { authorization: `L402 ${body.macaroon}:${preimage}` } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(s.upstream.hits, 1);
    assert.ok(!s.logs.join('\n').includes(macHex()) && !logs.join('\n').includes(macHex()), 'macaroon never logged');
  } finally {
    await stackCleanup.run();
  }
});

test('auto-detect through nginx against the lnd peer: same invoice while unpaid, then the macaroon alone passes once', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  resetKnobs();
  const stackCleanup = new Cleanup();
  try {
    const b = createLndBackend(cfgFor('grpc'), ctx(3000));
    const s = await startStack(stackCleanup, { backend: b });
    const get = async (auth?: string) => {
      const r = await http1(s.origin + '/auto', { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
      return { status: r.status, body: JSON.parse(r.body || '{}') as { invoice: string; macaroon: string; reason: string } };
    };
    const first = await get();
    assert.equal(first.status, 402);
    const lookupsBefore = peer.calls.filter((c) => c.method === 'LookupInvoice').length;
    const pending = await get(`L402 ${first.body.macaroon}`);
    assert.equal(pending.status, 402);
    assert.equal(pending.body.reason, 'payment_pending');
    assert.equal(pending.body.invoice, first.body.invoice);
    assert.equal(peer.calls.filter((c) => c.method === 'LookupInvoice').length, lookupsBefore + 1);
    peer.settle(first.body.invoice);
    assert.equal((await get(`L402 ${first.body.macaroon}`)).status, 200);
    assert.equal((await get(`L402 ${first.body.macaroon}`)).body.reason, 'already_used');
    assert.equal(s.upstream.hits, 1);
  } finally {
    await stackCleanup.run();
  }
});
