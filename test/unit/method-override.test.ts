import { test } from 'node:test';
import assert from 'node:assert/strict';
import { methodOverride } from '../../src/protocol/method-override.js';

test('a header naming another method is found, in any spelling CGI-style apps read as that header', () => {
  assert.equal(methodOverride('POST', ['Host', 'x', 'X-HTTP-Method-Override', 'DELETE'], '/a'), 'x-http-method-override');
  assert.equal(methodOverride('POST', ['x-http-method', 'put'], '/a'), 'x-http-method');
  assert.equal(methodOverride('POST', ['X-Method-Override', ' PATCH '], '/a'), 'x-method-override');
  assert.equal(methodOverride('POST', ['X_HTTP_Method_Override', 'DELETE'], '/a'), 'x-http-method-override');
  assert.equal(methodOverride('POST', ['X-HTTP-Method-Override', ''], '/a'), 'x-http-method-override');
  // Two headers, one naming the request's own method: still refused.
  assert.equal(methodOverride('POST', ['X-HTTP-Method-Override', 'POST', 'X-HTTP-Method', 'DELETE'], '/a'), 'x-http-method');
});

test('a header naming the request\'s own method, or none at all, passes', () => {
  assert.equal(methodOverride('POST', ['X-HTTP-Method-Override', 'post'], '/a'), undefined);
  assert.equal(methodOverride('GET', ['Accept', '*/*', 'X-Method', 'DELETE'], '/a?x=1'), undefined);
  assert.equal(methodOverride('GET', [], undefined), undefined);
});

test('a _method query parameter naming another method is found, as Rails, Laravel, Symfony and PHP read it', () => {
  for (const q of ['_method=DELETE', '_METHOD=delete', 'a=1&_method=PUT', '%5Fmethod=DELETE', '.method=DELETE', '+_method=DELETE', '_method[]=DELETE', '_method[x]=POST', 'a=1;_method=DELETE', '_method', 'x-http-method-override=PATCH', 'X_HTTP_METHOD_OVERRIDE=PATCH', '%ZZmethod=DELETE', '_method=%ZZ']) {
    assert.notEqual(methodOverride('POST', [], `/api/x?${q}`), undefined, q);
  }
});

test('query parameters that name no other method pass', () => {
  for (const q of ['_method=POST', '_method=post', 'method=DELETE', 'payment_method=card', 'methods=1', 'a=%ZZ', '']) {
    assert.equal(methodOverride('POST', [], `/api/x?${q}`), undefined, q);
  }
  assert.equal(methodOverride('DELETE', [], '/api/_method=GET'), undefined, 'the path is not the query');
});

test('a header naming another path (X-Original-URL, X-Rewrite-URL) is found; naming the target itself passes', () => {
  assert.equal(methodOverride('GET', ['X-Original-URL', '/admin'], '/cheap/x'), 'x-original-url');
  assert.equal(methodOverride('GET', ['x_rewrite_url', '/admin'], '/cheap/x'), 'x-rewrite-url');
  assert.equal(methodOverride('GET', ['X-Original-URL', '/cheap/x'], '/cheap/x'), undefined);
});

test('a _method name spelled with percent-encoded letters, a NUL or IIS %u escapes is found (redteam-s12b)', () => {
  for (const q of ['%5f%6dethod=DELETE', '_m%65thod=DELETE', '_%4D%45%54%48%4F%44=PUT', 'x-http-m%65thod-override=PATCH', '_%6Dethod%00%zz=DELETE', '_method%00x=DELETE', '_%u006dethod=DELETE']) {
    assert.notEqual(methodOverride('POST', [], `/api/x?${q}`), undefined, q);
  }
  for (const q of ['_m%65thod=POST', 'q=100%25', 'q=%zz', 'sort=method', 'by%25method=1']) assert.equal(methodOverride('POST', [], `/api/x?${q}`), undefined, q);
});
