// Every ```yaml block in README.md and docs/*.md is valid YAML, and every complete example (a block with
// `routes:`) loads through the real config loader, with the environment variables it names set to dummies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/config.js';

const ROOT = join(import.meta.dirname, '..', '..');

interface Block { file: string; line: number; text: string }

function yamlBlocks(): Block[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const out: Block[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^(\s*)```ya?ml\s*$/.exec(lines[i]!);
      if (!open) continue;
      const indent = open[1]!.length;
      const body: string[] = [];
      let j = i + 1;
      for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(Math.min(indent, lines[j]!.length - lines[j]!.trimStart().length)));
      assert.ok(j < lines.length, `${file}:${i + 1}: unterminated yaml block`);
      out.push({ file, line: i + 1, text: body.join('\n') + '\n' });
      i = j;
    }
  }
  return out;
}

// Dummy values for the variables an example names; a root key that passes the strength check.
const DUMMY: Record<string, string> = {
  ROOT_KEY: 'b5d1a0c3e8f7a6d9c2b4e1f0a3d6c9b8e7f2a1d4c5b6e9f8a7d0c3b2e5f4a1d6',
  NWC_URI: 'nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss%3A%2F%2Frelay.example&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c',
  CASHU_P2PK_PRIVATE_KEY: '5b0e4cd3d0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b',
  NGINX_SECRET: 'a'.repeat(8) + 'b'.repeat(8) + 'c'.repeat(8) + 'd'.repeat(8),
};
function envFor(text: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) env[m[1]!] = DUMMY[m[1]!] ?? 'dummy-value-0123456789abcdef0123456789';
  return env;
}

const blocks = yamlBlocks();

test('the docs have yaml examples to check', () => {
  assert.ok(blocks.length >= 14, `found only ${blocks.length} yaml blocks`);
  assert.ok(blocks.some((b) => /^routes:/m.test(b.text)), 'no complete example found');
});

test('every yaml block in README.md and docs/*.md is valid YAML (no unquoted ${VAR} in flow maps, no duplicate keys)', () => {
  const bad: string[] = [];
  for (const b of blocks) {
    const doc = parseDocument(b.text, { uniqueKeys: true, prettyErrors: true });
    if (doc.errors.length) bad.push(`${b.file}:${b.line}: ${doc.errors[0]!.message.split('\n')[0]}`);
  }
  assert.deepEqual(bad, []);
});

test('every complete yaml example (a block with routes:) loads through the config loader', () => {
  const bad: string[] = [];
  let loaded = 0;
  for (const b of blocks) {
    if (!/^routes:/m.test(b.text)) continue;
    // A block may set only part of a config around its routes; the loader still needs a Lightning backend.
    const text = /^lightning:/m.test(b.text) || /LN_CLIENT_TYPE/.test(b.text) ? b.text : `${b.text}lightning: { type: dev }\n`;
    try {
      parseConfig(text, { source: `${b.file} (block at line ${b.line}), line`, baseDir: '/srv/l402', env: envFor(b.text) });
      loaded++;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      bad.push(e.message);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(loaded >= 3, `only ${loaded} complete examples loaded`);
});

test('one truth about the LND macaroon: the docs ask for the permissions the backend error asks for', () => {
  const src = readFileSync(join(ROOT, 'src/rails/lightning/lnd/lnd.ts'), 'utf8');
  const perms = /lncli bakemacaroon ([a-z:]+(?: [a-z:]+)*)/.exec(src)?.[1];
  assert.ok(perms, 'lnd.ts names the permissions it needs');
  for (const file of ['README.md', 'docs/backends.md']) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    assert.ok(text.includes(`bakemacaroon ${perms}`), `${file} does not ask for ${perms}`);
  }
  for (const file of ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    assert.doesNotMatch(text, /invoice\.macaroon is enough/, file);
    assert.doesNotMatch(text, /macaroon_path:[^\n]*\binvoice\.macaroon/, `${file} configures invoice.macaroon, which lacks info:read`);
  }
});

test("README's curl flow takes the macaroon and the invoice from the same 402 and lists jq", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const flow = /```sh\n(curl[^`]*?dev pay[^`]*?)```/.exec(readme)?.[1];
  assert.ok(flow, 'README has the curl flow');
  // Exactly one request without a credential (each 402 mints a new macaroon/invoice pair).
  const unpaid = flow.split('\n').filter((l) => /^\s*curl /.test(l) && !/Authorization/.test(l));
  assert.equal(unpaid.length, 1, flow);
  const saved = /-o (\S+)/.exec(unpaid[0]!)?.[1];
  assert.ok(saved, 'the 402 is saved to a file');
  assert.ok(flow.includes(`jq -r .invoice ${saved}`) && flow.includes(`jq -r .macaroon ${saved}`), 'both come from the saved 402');
  assert.match(readme, /needs `curl` and `jq`/);
});

test('every partial yaml example (a section without routes:) uses only keys the config loader knows', () => {
  const bad: string[] = [];
  for (const b of blocks) {
    if (/^routes:/m.test(b.text)) continue;
    let text = `${b.text}routes: [{ match: /p, amount_msat: 1 }]\n`;
    if (!/^lightning:/m.test(b.text)) text += 'lightning: { type: dev }\n';
    try {
      parseConfig(text, { source: `${b.file} (block at line ${b.line}), line`, baseDir: '/srv/l402', env: envFor(b.text) });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      // Values such as `offer: lno1...` are placeholders; a key the loader does not know is a mistake.
      bad.push(...e.message.split('\n').filter((l) => /unknown key|invalid YAML|must be a YAML mapping/.test(l)));
    }
  }
  assert.deepEqual(bad, []);
});
