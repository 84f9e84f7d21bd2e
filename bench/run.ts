// All benchmarks in one run (`npm run bench`): paid path, challenge path, memory, Cashu P2PK verification. Prints the machine, then
// every table; ratios are always against a baseline measured in this same run. No pass/fail: numbers.
// BENCH_SECS (default 5) sets each measurement's length; BENCH_ONLY=paid,challenge,memory,cashu picks some;
// BENCH_OUT=file also writes the report there.
import { writeFileSync } from 'node:fs';
import { machine } from './lib.js';
import { runPaid } from './paid.js';
import { runChallenge } from './challenge.js';
import { runMemory } from './memory.js';
import { runCashuP2pk } from './cashu-p2pk.js';

const only = (process.env.BENCH_ONLY ?? 'paid,challenge,memory,cashu').split(',');
const started = Date.now();
const header = `l402-nginx benchmarks, ${new Date().toISOString()}\n${machine()}`;
console.log(header);
const sections: string[] = [header];
if (only.includes('paid')) sections.push(...(await runPaid()));
if (only.includes('challenge')) sections.push(...(await runChallenge()));
if (only.includes('memory')) sections.push(...(await runMemory()));
if (only.includes('cashu')) sections.push(...(await runCashuP2pk()));
const footer = `total ${((Date.now() - started) / 1000).toFixed(0)} s`;
console.log(`\n${footer}`);
sections.push(footer);
// BENCH_OUT=file keeps the whole report (e.g. to paste into bench/README.md).
if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, sections.join('\n') + '\n');
