// The protected app for benchmarks: the cheapest possible keep-alive HTTP answer, so the numbers show the
// gate's cost and not the app's. Usage: node --import tsx bench/upstream.ts <port> [--empty]
// `--empty` answers 200 with no body: the (f) floor, an auth server that decides nothing. nginx reuses an
// auth_request connection only when the answer has no body to skip (auth subrequests read the header
// only), so a floor answering with a body would pay a new TCP connection per request that l402d does not.
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = process.argv.includes('--empty') ? Buffer.alloc(0) : Buffer.from('{"ok":true}\n');
const server = createServer((_req, res) => {
  res.writeHead(200, body.length ? { 'content-type': 'application/json', 'content-length': body.length } : { 'content-length': 0 });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
