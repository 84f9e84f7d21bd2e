// What l402d does with an error nothing caught (src/server/process-policy.ts), in a real child process: an
// unhandled rejection is logged and the process keeps running; an uncaught exception is logged and the process
// exits non-zero for its supervisor. Neither log line repeats the error's message (it may quote a credential).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { EXIT_UNCAUGHT, errorShape, runGuarded } from '../../src/server/process-policy.js';
import { createLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/timeout.js';

const POLICY = fileURLToPath(new URL('../../src/server/process-policy.ts', import.meta.url));
const LOG = fileURLToPath(new URL('../../src/util/log.ts', import.meta.url));
const SECRET = 'L402 AgEEbHNhdDpzZWNyZXQtbWFjYXJvb24:' + 'ab'.repeat(32);

function run(body: string): { code: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'l402-policy-'));
  try {
    const file = join(dir, 'child.ts');
    writeFileSync(file, `import { installProcessPolicy } from ${JSON.stringify(POLICY)};\nimport { createLogger } from ${JSON.stringify(LOG)};\nconst SECRET = ${JSON.stringify(SECRET)};\ninstallProcessPolicy(createLogger('info'));\n${body}\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: r.stdout + r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an unhandled rejection is logged without its message and the process keeps running', () => {
  const r = run(`Promise.reject(new Error('bad credential ' + SECRET));\nsetTimeout(() => { console.log('still running'); }, 50);`);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /"event":"unhandled_rejection"/);
  assert.match(r.out, /still running/);
  assert.ok(!r.out.includes('bad credential') && !r.out.includes(SECRET.slice(5, 30)), r.out);
});

test('an uncaught exception is logged without its message and the process exits non-zero for its supervisor', () => {
  const r = run(`setTimeout(() => { JSON.parse(SECRET); }, 10);\nsetTimeout(() => { console.log('still running'); }, 2000);`);
  assert.equal(r.code, EXIT_UNCAUGHT, r.out);
  assert.match(r.out, /"event":"uncaught_exception"/);
  assert.match(r.out, /"kind":"SyntaxError"/);
  assert.doesNotMatch(r.out, /still running/);
  // JSON.parse's message quotes its input: here a credential.
  assert.ok(!r.out.includes(SECRET.slice(5, 30)), r.out);
});

test('a background task that throws or rejects is logged, never thrown on', async () => {
  let text = '';
  const log = createLogger('info', new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }));
  runGuarded(log, 'store sweep', () => {
    throw new Error(`SQLITE_BUSY ${SECRET}`);
  });
  runGuarded(log, 'metrics flush', () => Promise.reject(new TypeError(`no ${SECRET}`)));
  runGuarded(log, 'fine', () => 1);
  await sleep(20);
  const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { event: string; task: string; err: { kind: string } });
  assert.deepEqual(
    lines.map((l) => [l.event, l.task, l.err.kind]),
    [
      ['background_task_failed', 'store sweep', 'Error'],
      ['background_task_failed', 'metrics flush', 'TypeError'],
    ],
  );
  assert.ok(!text.includes(SECRET.slice(5, 30)));
  assert.deepEqual(errorShape('text'), { kind: 'string' });
});
