// auto_detect_payment: the client retries with the macaroon alone; the gate asks the backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, http1, requireTool } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';
import { attenuate, decodeMacaroonBase64, encodeMacaroonBase64 } from '../../src/protocol/macaroon.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
before(async () => {
  if (nginxBin) s = await startStack(cleanup);
});
after(() => cleanup.run());

async function get(path: string, auth?: string) {
  const r = await http1(s.origin + path, { headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) } });
  return { status: r.status, body: r.body ? JSON.parse(r.body) : undefined };
}

test('polling with the macaroon repeats the same invoice until paid, then passes once', { skip }, async () => {
  s.upstream.reset();
  const first = await get('/auto');
  assert.equal(first.status, 402);
  const { macaroon, invoice } = first.body;
  for (let i = 0; i < 3; i++) {
    const poll = await get('/auto', `L402 ${macaroon}`);
    assert.equal(poll.status, 402);
    assert.equal(poll.body.reason, 'payment_pending');
    assert.equal(poll.body.invoice, invoice, 'no new invoice per poll');
    assert.equal(poll.body.macaroon, macaroon);
  }
  s.wallet.pay(invoice);
  const paid = await get('/auto', `L402 ${macaroon}`);
  assert.equal(paid.status, 200);
  assert.equal(s.upstream.hits, 1);
  const again = await get('/auto', `L402 ${macaroon}`);
  assert.equal(again.status, 401);
  assert.equal(again.body.reason, 'already_used');
  assert.equal(s.upstream.hits, 1);
});

test('forged or tampered macaroons are refused before any settlement lookup', { skip }, async () => {
  const { body } = await get('/auto');
  s.wallet.pay(body.invoice);
  const tampered = decodeMacaroonBase64(body.macaroon);
  tampered.signature[0]! ^= 1;
  const r = await get('/auto', `L402 ${encodeMacaroonBase64(tampered)}`);
  assert.equal(r.status, 401);
  assert.equal(r.body.reason, 'bad_signature');
  const narrowed = await get('/auto', `L402 ${encodeMacaroonBase64(attenuate(decodeMacaroonBase64(body.macaroon), 'method=POST'))}`);
  assert.equal(narrowed.body.reason, 'wrong_method');
  // The genuine macaroon still works once.
  assert.equal((await get('/auto', `L402 ${body.macaroon}`)).status, 200);
});

test('routes without auto-detect still require the preimage', { skip }, async () => {
  const { body } = await get('/premium');
  s.wallet.pay(body.invoice);
  const r = await get('/premium', `L402 ${body.macaroon}`);
  assert.equal(r.status, 401);
  assert.equal(r.body.reason, 'missing_preimage');
});
