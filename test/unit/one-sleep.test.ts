// One sleep and one withTimeout in the whole repo (src/util/timeout.ts): every bounded wait and every pause goes
// through them, so a fix to either (an unref'd timer, an abort signal, a clear message) reaches every caller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const HOME = 'src/util/timeout.ts';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (n === 'node_modules' || n === 'fixtures') return [];
    return statSync(p).isDirectory() ? files(p) : /\.(ts|js|mjs)$/.test(n) ? [p] : [];
  });
}

/** Where a file defines its own sleep or withTimeout (a promise around a bare timer, or a function of that name). */
export function ownWaits(text: string): string[] {
  const found: string[] = [];
  const patterns: Array<[RegExp, string]> = [
    [/new Promise(?:<[^>]*>)?\(\s*\(?\s*(\w+)\s*\)?\s*=>\s*setTimeout\(\s*\1\s*,/g, 'a promise around setTimeout (use sleep)'],
    [/\b(?:function|const|let)\s+(?:sleep|withTimeout)\s*[=(<]/g, 'its own sleep/withTimeout'],
    [/from\s+'node:timers\/promises'/g, 'node:timers/promises (use sleep)'],
  ];
  for (const [re, what] of patterns) for (const m of text.matchAll(re)) found.push(`${what}: ${m[0].slice(0, 60)}`);
  return found;
}

test('sleep and withTimeout live only in src/util/timeout.ts', () => {
  const all = ['src', 'test', 'bench', 'scripts'].flatMap((d) => files(join(ROOT, d)));
  assert.ok(all.length > 100);
  const bad = all.filter((f) => relative(ROOT, f) !== HOME && relative(ROOT, f) !== 'test/unit/one-sleep.test.ts').flatMap((f) => ownWaits(readFileSync(f, 'utf8')).map((w) => `${relative(ROOT, f)}: ${w}`));
  assert.deepEqual(bad, []);
});

test('the check sees the usual spellings', () => {
  assert.equal(ownWaits('const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));').length, 2);
  assert.equal(ownWaits('await new Promise((resolve) => setTimeout(resolve, 10));').length, 1);
  assert.equal(ownWaits('await new Promise<void>(r => setTimeout(r, 10));').length, 1);
  assert.equal(ownWaits("import { setTimeout as sleep } from 'node:timers/promises';").length, 1);
  assert.equal(ownWaits('function withTimeout<T>(p: Promise<T>) {}').length, 1);
  assert.equal(ownWaits('await sleep(10); const t = setTimeout(() => x(), 5);').length, 0);
});
