// The set-up the nginx tests with locations of their own share: one l402d in this process (its log lines kept),
// the dev wallet on its data dir, the snippets generated from its config, and a real nginx whose http {} block
// the test writes around them. (gate-fixture.ts's startStack is the fixed stack most tests use.)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseConfig, type GateConfig } from '../../src/config/config.js';
import { startGate } from '../../src/server/app.js';
import { createLogger } from '../../src/util/log.js';
import { DevWallet } from '../../src/rails/lightning/dev/dev-wallet.js';
import { Cleanup, freePort, http1, startNginx, type NginxHandle } from './harness.js';
import { TEST_ROOT_KEY, writeSnippets } from './gate-fixture.js';

export interface SnippetStack {
  /** The gate's data dir (SQLite, dev wallet, snippets), removed at cleanup. */
  dir: string;
  cfg: GateConfig;
  /** l402d's log lines (level info), as written. */
  logs: string[];
  wallet: DevWallet;
  /** The directory holding the generated snippets. */
  snippets: string;
  nginx: NginxHandle;
  /** The Authorization value paying a 402 answer's JSON challenge with the dev wallet. */
  pay(challenge: { status: number; body: string }): string;
  /** Asks `origin + path` for a JSON challenge (402) and pays it. */
  buy(origin: string, path: string): Promise<string>;
}

/**
 * `config` follows listen, data_dir, root_key and log (it names the lightning backend and the routes);
 * `http` writes nginx's http {} block, given the snippet directory and the data dir.
 */
export async function startSnippetStack(cleanup: Cleanup, opts: { name: string; config: string; http: (at: { snippets: string; dir: string }) => string }): Promise<SnippetStack> {
  const dir = mkdtempSync(join(tmpdir(), `l402-${opts.name}-`));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const gatePort = await freePort();
  const cfg = parseConfig(`listen: 127.0.0.1:${gatePort}\ndata_dir: ${dir}\nroot_key: ${TEST_ROOT_KEY}\nlog: { level: info }\n${opts.config}`, { env: {} });
  const logs: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  const gate = await startGate(cfg, { log: createLogger('info', sink) });
  cleanup.add(() => gate.close());
  const wallet = DevWallet.open(dir);
  cleanup.add(() => wallet.close());
  const snippets = join(dir, 'snippets');
  writeSnippets(cfg, snippets);
  const nginx = cleanup.use(await startNginx({ http: opts.http({ snippets, dir }) }));
  const pay = (r: { status: number; body: string }): string => {
    assert.equal(r.status, 402, r.body);
    const b = JSON.parse(r.body) as { macaroon: string; invoice: string };
    return `L402 ${b.macaroon}:${wallet.pay(b.invoice).toString('hex')}`;
  };
  return {
    dir, cfg, logs, wallet, snippets, nginx, pay,
    async buy(origin, path) {
      return pay(await http1(`${origin}${path}`, { headers: { accept: 'application/json' } }));
    },
  };
}
