// Red team, gRPC through nginx: every refusal of a gRPC call is a gRPC answer (grpc-status, HTTP 200, no body),
// whoever refuses it: nginx's server-level ambiguous-path guard, l402d's ambiguous_path, the 401 of another
// access check (access_denied). A gRPC client that gets a bare HTTP 400/401 reports INTERNAL, the very code
// the L402 spec uses for "payment required", with no challenge to pay: a paying client lost and a misleading one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Cleanup, freePort, grpcClient, http2, requireTool, startGrpcUpstream, type GrpcError, type GrpcUpstream } from './harness.js';
import { startStack, type Stack } from './gate-fixture.js';

const nginxBin = requireTool('nginx');
const skip = nginxBin ? false : 'nginx not installed';
const cleanup = new Cleanup();
let s: Stack;
let up: GrpcUpstream;
let h2Port = 0;

before(async () => {
  if (!nginxBin) return;
  up = cleanup.use(await startGrpcUpstream(), 'grpc upstream (basic)');
  h2Port = await freePort();
  s = await startStack(cleanup, {
    extra: (dir) => (writeFileSync(join(dir, '..', 'htpasswd'), 'member:{PLAIN}secret\n'), `
        listen 127.0.0.1:${h2Port} http2;
        location /content.ContentService/ { auth_basic "members"; auth_basic_user_file ${dir}/../htpasswd; include ${dir}/protect.conf; grpc_pass grpc://127.0.0.1:${up.port}; }`),
  });
});
after(() => cleanup.run());

const GRPC = { 'content-type': 'application/grpc', te: 'trailers' };

function assertGrpcRefusal(r: { status: number; headers: Record<string, unknown>; body: string }, code: number, what: string): void {
  assert.equal(r.status, 200, `${what}: HTTP ${r.status} ${r.body}`);
  assert.equal(r.headers['grpc-status'], String(code), `${what}: ${JSON.stringify(r.headers)}`);
  assert.match(String(r.headers['content-type']), /^application\/grpc/, what);
  assert.doesNotMatch(String(r.headers['www-authenticate'] ?? ''), /L402|LSAT/i, `${what}: no challenge`);
}

test('a gRPC call with an ambiguous path gets grpc-status 3 (INVALID_ARGUMENT), from the server guard and from l402d', { skip }, async () => {
  const origin = `http://127.0.0.1:${s.h2Port}`;
  s.grpcUp.reset();
  // nginx resolves these before choosing a location (server.conf's guard); the last one only l402d sees.
  for (const path of ['/content.ContentService/./GetContent', '/content.ContentService/x/../GetContent', '/content.ContentService/%2e%2E/content.ContentService/GetContent', '/content.ContentService%2FGetContent', '/content.ContentService/GetContent#x']) {
    const r = await http2(origin, path, { method: 'POST', headers: GRPC, body: Buffer.alloc(5) });
    assertGrpcRefusal(r, 3, path);
    assert.match(decodeURIComponent(String(r.headers['grpc-message'])), /ambiguous/i, path);
  }
  assert.equal(s.grpcUp.calls, 0);
  // Plain HTTP requests keep the problem document.
  const plain = await http2(origin, '/premium/./x', { headers: { accept: 'application/json' } });
  assert.equal(plain.status, 400);
  assert.equal(JSON.parse(plain.body).reason, 'ambiguous_path');
  const plainL402d = await http2(origin, '/premium%2Fx', { headers: { accept: 'application/json' } });
  assert.equal(plainL402d.status, 400);
  assert.equal(JSON.parse(plainL402d.body).reason, 'ambiguous_path');
});

test('a gRPC call refused by another access check (auth_basic) gets grpc-status 16 (UNAUTHENTICATED), no invoice', { skip }, async () => {
  const r = await http2(`http://127.0.0.1:${h2Port}`, '/content.ContentService/GetContent', { method: 'POST', headers: GRPC, body: Buffer.alloc(5) });
  assertGrpcRefusal(r, 16, 'auth_basic');
  // A real gRPC client sees UNAUTHENTICATED with the reason, not INTERNAL.
  const c = grpcClient(h2Port);
  try {
    const err = await c.getContent({ id: 'a' }).then(() => undefined, (e: GrpcError) => e);
    assert.ok(err, 'refused');
    assert.equal(err.code, grpc.status.UNAUTHENTICATED, err.details);
    assert.match(err.details, /access denied/i);
  } finally {
    c.close();
  }
  assert.equal(up.calls, 0);
});
