// `npm start`: the whole thing on one machine with embedded defaults. A tiny example upstream, l402d,
// and nginx in front when it is installed (else l402d's own reverse-proxy mode).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseConfig } from '../config/config.js';
import { startGate, type RunningGate } from '../server/app.js';
import { installProcessPolicy } from '../server/process-policy.js';
import { createLogger } from '../util/log.js';
import { DEFAULT_CONFIG_YAML } from './defaults.js';
import { DEV_PAY_LOCATION, nginxSnippets } from './nginx-conf.js';

function findNginx(): string | undefined {
  for (const p of ['nginx', '/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (spawnSync(p, ['-v'], { stdio: 'ignore' }).status === 0) return p;
  }
  return undefined;
}

function exampleUpstream(port: number): Promise<Server> {
  const s = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ message: 'paid content from the example upstream', path: req.url, at: new Date().toISOString() }) + '\n');
  });
  return new Promise((ok, fail) => s.once('error', fail).listen(port, '127.0.0.1', () => ok(s)));
}

function nginxConf(dir: string, port: number, upstreamPort: number): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {}
http {
    access_log off;
    client_body_temp_path ${dir}/tmp_body;
    proxy_temp_path ${dir}/tmp_proxy;
    fastcgi_temp_path ${dir}/tmp_fastcgi;
    uwsgi_temp_path ${dir}/tmp_uwsgi;
    scgi_temp_path ${dir}/tmp_scgi;
    include ${dir}/l402/upstream.conf;
    server {
        listen 127.0.0.1:${port};
        include ${dir}/l402/server.conf;
        # Local demo only: the payment page's "pay with the dev wallet" button.
        ${DEV_PAY_LOCATION.replace(/\n/g, '\n        ')}
        location / { proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /premium { include ${dir}/l402/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
        location /api/ { include ${dir}/l402/protect.conf; proxy_pass http://127.0.0.1:${upstreamPort}; }
    }
}
`;
}

/** Fails with a clear message when something else already listens on the port (nginx would die on it). */
function ensureFree(port: number, what: string): Promise<void> {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', (e: NodeJS.ErrnoException) =>
      fail(new Error(e.code === 'EADDRINUSE' ? `port ${port} (${what}) is already in use on 127.0.0.1: pick another with --port / --upstream-port` : `port ${port} (${what}): ${e.message}`)),
    );
    probe.listen(port, '127.0.0.1', () => probe.close(() => ok()));
  });
}

function portOf(v: string | number | undefined, fallback: number, what: string): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${what}: ${JSON.stringify(String(v))} is not a port (1-65535)`);
  return n;
}

export async function quickstart(env: NodeJS.ProcessEnv = process.env, opts: { port?: string; upstreamPort?: string } = {}): Promise<void> {
  const port = portOf(opts.port ?? env.PORT, 8080, '--port');
  const upstreamPort = portOf(opts.upstreamPort ?? env.UPSTREAM_PORT, 8081, '--upstream-port');
  if (port === upstreamPort) throw new Error(`--port and --upstream-port are both ${port}`);
  const nginx = env.L402_NO_NGINX ? undefined : findNginx();
  await ensureFree(port, nginx ? 'nginx' : 'l402d');
  const upstream = await exampleUpstream(upstreamPort);
  // A local demo: the development wallet, with the payment page's pay button (loopback clients only).
  let yaml = DEFAULT_CONFIG_YAML.replace('lightning: { type: dev }', 'lightning: { type: dev, pay_endpoint: true }');
  if (!nginx) yaml = yaml.replace('listen: 127.0.0.1:8402', `listen: 127.0.0.1:${port}\nupstream: http://127.0.0.1:${upstreamPort}`);
  const config = parseConfig(yaml, { source: '(embedded defaults)', env });
  let gate: RunningGate;
  let child: ChildProcess | undefined;
  let stopping = false;
  // The same net as `l402d start` (process-policy.ts); an uncaught exception ends the nginx it started too.
  const log = createLogger(config.logLevel);
  installProcessPolicy(log, (code) => {
    child?.kill('SIGQUIT');
    process.exit(code);
  });
  try {
    gate = await startGate(config, { log });
  } catch (e) {
    upstream.close();
    throw e;
  }
  if (nginx) {
    const dir = resolve(config.dataDir, 'nginx');
    mkdirSync(resolve(dir, 'l402'), { recursive: true });
    for (const [name, text] of Object.entries(nginxSnippets(config))) writeFileSync(resolve(dir, 'l402', name), text);
    writeFileSync(resolve(dir, 'nginx.conf'), nginxConf(dir, port, upstreamPort));
    child = spawn(nginx, ['-p', dir, '-c', resolve(dir, 'nginx.conf'), '-e', resolve(dir, 'error.log')], { stdio: 'inherit' });
    // nginx is the demo's front door: when it dies (its port taken meanwhile, a bad config), stop everything.
    child.on('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(`nginx exited (${signal ?? `code ${code}`}); see ${dir}/error.log. Stopping the quick start.\n`);
      stopping = true;
      upstream.close();
      gate.close().finally(() => process.exit(1));
    });
  }
  const url = `http://127.0.0.1:${port}`;
  process.stderr.write(`
l402-nginx quick start (${nginx ? 'nginx → l402d' : 'l402d reverse proxy: nginx not installed'}; development wallet, no real money)

  1. Ask for paid content:   curl -s ${url}/premium -o challenge.json
  2. Pay its invoice:        PREIMAGE=$(node bin/l402d.js dev pay "$(jq -r .invoice challenge.json)")
  3. Retry with the proof:   curl -i -H "Authorization: L402 $(jq -r .macaroon challenge.json):$PREIMAGE" ${url}/premium
  (the macaroon and the invoice must come from the same 402; needs curl and jq)

  /premium costs 10 sats per request; /api/ sells one hour of access for 50 sats. Free: ${url}/
  Ctrl-C stops everything.
`);
  const stop = () => {
    if (stopping) return;
    stopping = true;
    child?.kill('SIGQUIT');
    upstream.close();
    gate.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
