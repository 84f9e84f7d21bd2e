// The LNC adapter's config side: schema, ngx_l402 env mapping, and the factory's start-up checks, with the
// pairing phrase (a bearer credential) kept out of every message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLncBackend, lncConfigSchema, lncFromLegacyEnv, LNC_DEFAULT_MAILBOX, wantsLncFromLegacyEnv,
} from '../../src/rails/lightning/lnc.js';
import { parseConfig } from '../../src/config/config.js';
import { phraseToEntropy } from '../../src/rails/lightning/lnc/phrase.js';
import { archivedSessionPath, loadOrCreateSession, pairingTag, saveRemoteKey, sessionPath } from '../../src/rails/lightning/lnc/session.js';
import { createLogger } from '../../src/util/log.js';

// Words chosen so none of them occurs in any message by accident.
const PHRASE = 'kiwi zebra jungle vivid urge mango fossil maple jaguar orbit';
const WORDS = PHRASE.split(' ');

function assertNoPhrase(text: string, where: string): void {
  const lower = text.toLowerCase();
  for (const w of WORDS) assert.ok(!lower.includes(w), `${where} leaks pairing phrase word "${w}": ${text}`);
}

test('schema: 10-word phrase (whitespace normalised), default mailbox, strict', () => {
  const c = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: `  ${WORDS.slice(0, 5).join('  ')}\n${WORDS.slice(5).join(' ')} ` });
  assert.deepEqual(c, { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: LNC_DEFAULT_MAILBOX });
  assert.equal(LNC_DEFAULT_MAILBOX, 'mailbox.terminal.lightning.today:443');
  assert.equal(lncConfigSchema.parse({ type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'wss://mailbox.example.org:443/' }).mailbox_server, 'mailbox.example.org:443');
  for (const bad of [
    { type: 'lnc' },
    { type: 'lnc', pairing_phrase: 42 },
    { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'no-port.example' },
    { type: 'lnc', pairing_phrase: PHRASE, macaroon_path: 'x' },
  ]) {
    assert.equal(lncConfigSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});

test('schema: a malformed phrase is rejected without echoing it', () => {
  for (const phrase of [WORDS.slice(0, 9).join(' '), `${PHRASE} extra`, PHRASE.replace('zebra', 'z3bra')]) {
    const r = lncConfigSchema.safeParse({ type: 'lnc', pairing_phrase: phrase });
    assert.equal(r.success, false);
    const text = JSON.stringify(r.error!.issues) + r.error!.message + String(r.error);
    assert.match(text, /10-word LNC pairing phrase \(value not shown\)/);
    assertNoPhrase(text.replace(/z3bra/g, ''), 'schema error');
  }
});

test('legacy env: ngx_l402 LND + LNC_PAIRING_PHRASE selects lnc and maps its variables', () => {
  const env = { LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: PHRASE, LNC_MAILBOX_SERVER: 'mailbox.example.org:443' };
  assert.equal(wantsLncFromLegacyEnv(env), true);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: ' lnc ' }), true, "ngx_l402's docs also name LNC");
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND' }), false);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: '  ' }), false);
  assert.equal(wantsLncFromLegacyEnv({ LN_CLIENT_TYPE: 'NWC', LNC_PAIRING_PHRASE: PHRASE }), false);
  const raw = lncFromLegacyEnv(env);
  assert.deepEqual(raw, { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'mailbox.example.org:443' });
  assert.deepEqual(lncConfigSchema.parse(raw), { type: 'lnc', pairing_phrase: PHRASE, mailbox_server: 'mailbox.example.org:443' });
  assert.equal(lncConfigSchema.parse(lncFromLegacyEnv({ LN_CLIENT_TYPE: 'LND', LNC_PAIRING_PHRASE: PHRASE })).mailbox_server, LNC_DEFAULT_MAILBOX);
});

test('schema: a word outside the LNC word list is named by position, never quoted', () => {
  const r = lncConfigSchema.safeParse({ type: 'lnc', pairing_phrase: PHRASE.replace('mango', 'mangox').replace('orbit', 'orbits') });
  assert.equal(r.success, false);
  const text = JSON.stringify(r.error!.issues) + String(r.error);
  assert.match(text, /words 6, 10 of the pairing phrase are not in the LNC word list \(value not shown/);
  assertNoPhrase(text, 'word-list error');
  assert.ok(!text.includes('mangox') && !text.includes('orbits'));
  assert.equal(lncConfigSchema.safeParse({ type: 'lnc', pairing_phrase: PHRASE.toUpperCase() }).success, true, 'case does not matter');
});

test('factory: a missing or non-PEM mailbox CA fails at start naming the key, never the phrase', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-lnc-unit-'));
  try {
    const ctx = { configDir: dir, dataDir: dir, log: createLogger('silent'), timeoutMs: 1000 };
    const missing = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: PHRASE, mailbox_server: '127.0.0.1:1', mailbox_tls_ca_path: 'nope.pem' });
    assert.throws(() => createLncBackend(missing, ctx), (err: Error) => /lightning\.mailbox_tls_ca_path/.test(err.message) && (assertNoPhrase(err.message, 'ca error'), true));
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
    const junk = lncConfigSchema.parse({ type: 'lnc', pairing_phrase: PHRASE, mailbox_server: '127.0.0.1:1', mailbox_tls_ca_path: 'junk.pem' });
    assert.throws(() => createLncBackend(junk, ctx), /lightning\.mailbox_tls_ca_path: junk\.pem is not a PEM certificate/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: workers > 1 with lnc is refused (one session serves one client), naming the key', () => {
  const yaml = (workers: number): string =>
    `listen: 127.0.0.1:8402\nroot_key: ${'ab'.repeat(32)}\nworkers: ${workers}\nstore: { type: sqlite }\nlightning: { type: lnc, pairing_phrase: "${PHRASE}" }\nroutes:\n  - { match: /x, amount_msat: 1000 }\n`;
  assert.throws(() => parseConfig(yaml(2), { env: {} }), (err: Error) => {
    assert.match(err.message, /workers: an LNC session serves one client at a time; use workers: 1 with lightning\.type lnc/);
    assertNoPhrase(err.message, 'config error');
    return true;
  });
  assert.equal(parseConfig(yaml(1), { env: {} }).lightning.type, 'lnc');
});

test('session file: kept per phrase and mailbox, 0600, never reused for another phrase (kept aside, back when that phrase is), replaced when corrupt', () => {
  const dir = mkdtempSync(join(tmpdir(), 'l402-lnc-session-'));
  try {
    const path = sessionPath(join(dir, 'data'));
    const tag = pairingTag(phraseToEntropy(PHRASE), 'mailbox.example:443');
    const first = loadOrCreateSession(path, tag);
    assert.equal(first.fresh, true);
    assert.equal(first.remotePub, undefined);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700);
    const remote = Buffer.from(`02${'11'.repeat(32)}`, 'hex');
    saveRemoteKey(path, tag, { localPriv: first.localPriv, remotePub: remote });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const again = loadOrCreateSession(path, tag);
    assert.equal(again.fresh, false);
    assert.ok(again.localPriv.equals(first.localPriv) && again.remotePub!.equals(remote));
    const text = readFileSync(path, 'utf8');
    assertNoPhrase(text, 'session file');
    assert.ok(!text.includes(phraseToEntropy(PHRASE).toString('hex')));
    // Same phrase, other mailbox; or another phrase: a new pairing with a new key.
    for (const other of [pairingTag(phraseToEntropy(PHRASE), 'mailbox.other:443'), pairingTag(phraseToEntropy('zoo zero zone one two three six seven eight ten'), 'mailbox.example:443')]) {
      const s = loadOrCreateSession(path, other);
      assert.equal(s.fresh, true);
      assert.equal(s.replaced, true);
      assert.ok(!s.localPriv.equals(first.localPriv));
      assert.equal(s.remotePub, undefined);
    }
    // Neither was lost: the paired session of the first phrase was kept aside (0600), and comes back.
    const kept = archivedSessionPath(path, tag);
    assert.equal(statSync(kept).mode & 0o777, 0o600);
    const back = loadOrCreateSession(path, tag);
    assert.equal(back.restored, true);
    assert.equal(back.fresh, false);
    assert.ok(back.localPriv.equals(first.localPriv) && back.remotePub!.equals(remote), 'the paired session, keys and all');
    assert.ok(!existsSync(kept), 'moved back, not copied');
    writeFileSync(path, '{ not json');
    const corrupt = loadOrCreateSession(path, tag);
    assert.equal(corrupt.fresh, true);
    assert.equal(corrupt.replaced, true);
    // A session file l402d cannot read is an error naming the file, never a reason to pair over it.
    rmSync(path);
    mkdirSync(path);
    assert.throws(() => loadOrCreateSession(path, tag), (e: Error) => e.message.includes(`cannot read the LNC session file ${path} (EISDIR)`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
