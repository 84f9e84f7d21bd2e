// The protected app for benchmarks: the cheapest possible keep-alive HTTP answer, so the numbers show the
// gate's cost and not the app's. Usage: node --import tsx bench/upstream.ts <port>
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = Buffer.from('{"ok":true}\n');
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
