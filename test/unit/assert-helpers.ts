// Assertions shared by the unit tests.
import assert from 'node:assert/strict';
import { BackendCallError } from '../../src/rails/lightning/backend.js';

/** Asserts that `p` rejects with a BackendCallError whose message matches `re` and contains none of `secrets`. */
export async function rejectsWith(p: Promise<unknown>, re: RegExp, ...secrets: string[]): Promise<BackendCallError> {
  let caught: unknown;
  await p.then(() => assert.fail('expected a rejection'), (e: unknown) => { caught = e; });
  assert.ok(caught instanceof BackendCallError, `expected BackendCallError, got ${String(caught)}`);
  assert.match(caught.message, re);
  for (const s of secrets) assert.ok(!caught.message.includes(s), 'a secret leaked into an error');
  return caught;
}
