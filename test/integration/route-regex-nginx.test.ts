// Route regexes against real nginx: for a list of location regexes and request paths, l402d's RouteTable
// must say "matches" exactly when nginx's PCRE does (nginx matches `map $uri` regexes with the same
// ngx_regex_compile as `location ~`, so one request shows the verdict of every pattern at once).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Cleanup, freePort, requireTool, startNginx } from './harness.js';
import { normalizePath, parseRouteMatch, pcreSubject } from '../../src/policy/routes.js';

const nginxBin = requireTool('nginx');
const cleanup = new Cleanup();
after(() => cleanup.run());

const PATTERNS = [
  // Typical nginx location regexes.
  '~ ^/api/v[0-9]+/',
  '~* \\.(jpg|jpeg|png|gif|ico|css|js)$',
  '~ ^/(?<name>\\w+)/x$',
  '~ ^/(?P<user>[^/]+)/profile$',
  "~ ^/(?'id'\\d+)$",
  '~ \\.php$',
  '~ /\\.ht',
  '~ ^/~(.+?)(/.*)?$',
  '~ ^/download/.*\\.(zip|tar\\.gz)$',
  '~* ^/(images|javascript|js|css|flash|media|static)/',
  '~ ^/[\\w\\-]+/\\d{2,4}$',
  '~ ^/(?:en|de)(?:/|$)',
  '~ ^/a\\ b',
  '~ ^/[^/]+\\.mp4$',
  '~ (?<!x)\\.json$',
  '~ ^/v\\d+(?=/)',
  '~ ^/x{2}y',
  '~ ^/q{a}',
  '~ ^/(foo|bar)?baz',
  // Classes and escapes whose PCRE meaning needs translating.
  '~ ^/[]a]+$',
  '~ ^/[^]a]+$',
  '~ ^/[[:alpha:]]+$',
  '~* ^/[[:upper:]]+$',
  '~ ^/[[:digit:][:punct:]]+$',
  '~ ^/[a[]+$',
  '~ ^/\\x41\\x{42}\\x4?3?\\o{104}?',
  '~ ^/\\0?\\e?a',
  '~ ^/\\s',
  '~ ^/\\S+$',
  '~ ^/\\w+$',
  '~ ^/\\W',
  '~ ^/\\bword\\b',
  '~ ^/[\\s]x',
  '~ ^/\\cAa?',
  // Bytes above ASCII: nginx matches the UTF-8 bytes, one at a time.
  '~ ^/caf\\xc3\\xa9$',
  '~ ^/café$',
  '~ ^/caf.$',
  '~ ^/caf..$',
  '~* ^/CAFÉ$',
  '~* ^/café$',
  '~ ^/[é]+$',
  '~ ^/[^a-z/]+$',
  '~ ^/[\\x80-\\xff]+$',
  '~ ^/.{4}$',
  '~ ^/\\D+$',
];

const PATHS = [
  '/api/v2/x', '/API/V2/x', '/api/v/x', '/a/b.JPG', '/a/b.jpg', '/a/b.jpgx', '/joe/x', '/joe/x/', '/j_o-e/profile', '/123', '/12a',
  '/index.php', '/x/.htaccess', '/~user/pub', '/~user', '/download/a/b.tar.gz', '/download/a.zip', '/IMAGES/x', '/images/x',
  '/ab-c/2024', '/ab-c/20245', '/en', '/en/x', '/english', '/a%20b', '/a%20', '/clip.mp4', '/a/clip.mp4', '/x.json', '/xx.json',
  '/v12/', '/v12', '/xxy', '/q{a}', '/qa', '/baz', '/foobaz', '/]a]', '/a]', '/abc', '/ABC', '/a1', '/12', '/1.2', '/a[', '/[[', '/AB',
  '/ABA', '/a', '/%1ba', '/%09x', '/%0bx', '/%0cx', '/%c2%a0x', '/%e3%80%80x', '/word', '/words', '/%01', '/%01a', '/%01b',
  '/caf%C3%A9', '/CAF%C3%89', '/caf%c3%89', '/CAF%c3%a9', '/cafe', '/caf%e9', '/%C3%A9%C3%A9', '/%C3%A9', '/%E2%82%AC', '/%e2%82%ac%e2',
  '/abcd', '/%C3%A9%C3%A9x', '/a%2Fb', '//api//v1//', '/x/../api/v3/', '/%7euser/pub', '/a%5Cb', '/%f0%9f%98%80',
];

function raw(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('route regexes match the paths nginx matches, byte for byte', { skip: nginxBin ? false : 'nginx not installed' }, async () => {
  const compiled = PATTERNS.map((p) => {
    const m = parseRouteMatch(p);
    assert.equal(m.kind, 'regex', p);
    return m.kind === 'regex' ? m.re : /$^/;
  });
  const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const maps = PATTERNS.map((p, i) => {
    const [, mod, re] = /^(~\*?)\s*(.*)$/.exec(p)!;
    return `map $uri $m${i} { ${quote(mod + re!)} 1; default 0; }`;
  }).join('\n');
  const port = await freePort();
  cleanup.use(
    await startNginx({
      http: `${maps}
      server { listen 127.0.0.1:${port}; location / { return 200 "${PATTERNS.map((_, i) => `$m${i}`).join('')}"; } }`,
    }),
  );
  const mismatches: string[] = [];
  let compared = 0;
  for (const path of PATHS) {
    const r = await raw(port, path);
    const p = normalizePath(path);
    if (r.status !== 200) {
      assert.equal(p, undefined, `nginx refused ${path} (${r.status}) but l402d reads it as ${JSON.stringify(p)}`);
      continue;
    }
    // Paths that are not UTF-8 (%e9 alone) are bytes here as in nginx: compared like any other.
    if (p === undefined) continue;
    const ours = compiled.map((re) => (re.test(pcreSubject(p!)) ? '1' : '0')).join('');
    for (let i = 0; i < PATTERNS.length; i++) {
      compared++;
      if (ours[i] !== r.body[i]) mismatches.push(`${PATTERNS[i]} on ${path}: nginx ${r.body[i] === '1' ? 'matches' : 'does not match'}, l402d ${ours[i] === '1' ? 'matches' : 'does not'}`);
    }
  }
  assert.deepEqual(mismatches, []);
  assert.ok(compared > 3000);
});
