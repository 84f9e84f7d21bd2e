// The generated nginx snippets: within one block, each header is set once. nginx sends every
// proxy_set_header line of a level, so a header set twice reaches l402d as "https, https" and a
// fact l402d reads from it (the scheme, the host) silently stops matching.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nginxSnippets } from '../../src/cli/nginx-conf.js';
import { parseConfig } from '../../src/config/config.js';

/** The directives of each block (top level, every location), without the nested blocks' own lines. */
function blocks(text: string): string[][] {
  const out: string[][] = [];
  const stack: string[][] = [[]];
  let current = '';
  let quote = '';
  // The snippets' comments are whole lines.
  const code = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');
  for (const ch of code) {
    if (quote) {
      current += ch;
      if (ch === quote) quote = '';
    } else if (ch === '"' || ch === "'") {
      current += ch;
      quote = ch;
    } else if (ch === '{') {
      current = '';
      stack.push([]);
    } else if (ch === '}') {
      assert.ok(stack.length > 1, 'an unbalanced "}"');
      out.push(stack.pop()!);
      current = '';
    } else if (ch === ';') {
      stack[stack.length - 1]!.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  out.push(...stack);
  return out;
}

for (const forward of [false, true]) {
  test(`each header is set at most once per block (forward_payment_credentials: ${forward})`, () => {
    const cfg = parseConfig(`listen: 127.0.0.1:8402\nforward_payment_credentials: ${forward}\nlightning: { type: dev }\nroutes:\n  - { match: /a, amount_msat: 1000 }\n`);
    const snippets = nginxSnippets(cfg);
    for (const [name, text] of Object.entries(snippets)) {
      for (const block of blocks(text)) {
        for (const directive of ['proxy_set_header', 'grpc_set_header', 'add_header']) {
          const seen = new Set<string>();
          for (const line of block) {
            const m = new RegExp(`^${directive}\\s+(\\S+)`).exec(line);
            if (!m) continue;
            const header = m[1]!.toLowerCase();
            assert.ok(!seen.has(header), `${name}: ${directive} ${m[1]} twice in one block`);
            seen.add(header);
          }
        }
      }
    }
  });
}

test('every X-L402-* name in src/ is blanked for the upstream by protect.conf, in every spelling', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { GATE_IDENTITY_HEADERS, GATE_ONLY_HEADERS } = await import('../../src/cli/nginx-conf.js');
  const names = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(join(dir, e.name), 'utf8').matchAll(/\bx-l402-[a-z0-9]+(?:-[a-z0-9]+)*/gi)) names.add(m[0].toLowerCase());
    }
  };
  walk('src');
  const known = new Set([...GATE_ONLY_HEADERS, ...GATE_IDENTITY_HEADERS].map((h) => h.toLowerCase()));
  assert.deepEqual([...names].filter((n) => !known.has(n)), [], 'an X-L402-* name the gate uses that protect.conf does not blank: add it to GATE_ONLY_HEADERS');
  const protect = nginxSnippets({ ...parseConfig('lightning: { type: dev }\nroutes: [{ match: /x, amount_msat: 1 }]\n', { env: {} }), listen: '127.0.0.1:8402', retryAfterSecs: 5 })['protect.conf'];
  const set = new Set([...protect.matchAll(/^proxy_set_header (\S+) /gm)].map((m) => m[1]!.toLowerCase()));
  for (const name of known) {
    const parts = name.split('-');
    for (let mask = 0; mask < 1 << (parts.length - 1); mask++) {
      const spelling = parts.reduce((acc, p, i) => (i === 0 ? p : acc + (mask & (1 << (i - 1)) ? '_' : '-') + p), '');
      assert.ok(set.has(spelling), `proxy_set_header ${spelling}`);
    }
  }
});
