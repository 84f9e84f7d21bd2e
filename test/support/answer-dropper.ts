// A loopback TCP proxy in front of an l402d that forwards each request and, while `dropping`, closes the
// connection as soon as the answer starts: that l402d has decided (claimed, taken ecash, credited, drawn) but
// nginx hears nothing and retries the same request ($request_id) on the next l402d.
import net from 'node:net';

export interface AnswerDropper {
  port: number;
  dropping: boolean;
  /** Answers cut so far. */
  drops: number;
  stop(): Promise<void>;
}

export function startAnswerDropper(target: number, o: { dropping: boolean }): Promise<AnswerDropper> {
  const sockets = new Set<net.Socket>();
  const h: AnswerDropper = { port: 0, dropping: o.dropping, drops: 0, stop: async () => {} };
  const server = net.createServer((client) => {
    const up = net.connect(target, '127.0.0.1');
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
    client.pipe(up);
    up.on('data', (chunk: Buffer) => {
      if (h.dropping) {
        h.drops++;
        client.destroy();
        up.destroy();
      } else client.write(chunk);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      h.port = (server.address() as net.AddressInfo).port;
      h.stop = async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      };
      resolve(h);
    }),
  );
}
