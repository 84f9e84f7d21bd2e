// A loopback TCP listener that carries every accepted connection through a SOCKS5 proxy to one fixed
// target. grpc-js (and node:https with keep-alive agents) cannot dial through SOCKS themselves; pointing
// them at this listener, with the TLS server name set to the real host, keeps TLS end-to-end between
// l402d and the node while Tor (or any SOCKS5 proxy) only sees ciphertext.
import net from 'node:net';
import { SocksClient } from 'socks';

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses `host:port` or `[v6]:port`. `what` names the config key in the error, so an operator knows
 * which setting to fix.
 */
export function parseHostPort(text: string, what: string): HostPort {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new Error(`${what} must be host:port (e.g. localhost:10009 or [::1]:10009), got ${JSON.stringify(text)}`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/** `host:port` as a gRPC target / HTTP Host header wants it (IPv6 in brackets). */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

export interface SocksTunnel {
  /** The loopback port to dial instead of the target. */
  readonly port: number;
  /** Why the last connection through the proxy failed (for error messages), if one did. */
  readonly lastError: string | undefined;
  /** Connections accepted so far (diagnostics and tests). */
  readonly accepted: number;
  close(): Promise<void>;
}

export interface SocksTunnelOptions {
  proxy: HostPort;
  target: HostPort;
  /** Bound for the SOCKS handshake plus the proxy's own connect to the target. */
  connectTimeoutMs: number;
}

/** Opens the listener on 127.0.0.1 with a kernel-chosen port. */
export function openSocksTunnel(opts: SocksTunnelOptions): Promise<SocksTunnel> {
  const sockets = new Set<net.Socket>();
  let lastError: string | undefined;
  let accepted = 0;

  const server = net.createServer({ pauseOnConnect: true }, (inbound) => {
    accepted++;
    sockets.add(inbound);
    inbound.on('error', () => inbound.destroy());
    inbound.on('close', () => sockets.delete(inbound));
    // The target host goes to the proxy as a name (ATYP domain), never resolved here: .onion names only
    // resolve inside Tor, and resolving locally would leak the lookup outside the proxy.
    // We dial the proxy ourselves so close() can destroy a handshake still in progress.
    const proxySocket = net.connect({ host: opts.proxy.host, port: opts.proxy.port });
    sockets.add(proxySocket);
    proxySocket.on('close', () => sockets.delete(proxySocket));
    SocksClient.createConnection({
      proxy: { host: opts.proxy.host, port: opts.proxy.port, type: 5 },
      command: 'connect',
      destination: { host: opts.target.host, port: opts.target.port },
      timeout: opts.connectTimeoutMs,
      existing_socket: proxySocket,
    }).then(
      ({ socket: outbound }) => {
        if (inbound.destroyed) {
          outbound.destroy();
          return;
        }
        lastError = undefined;
        sockets.add(outbound);
        outbound.setNoDelay(true);
        const teardown = (): void => {
          inbound.destroy();
          outbound.destroy();
        };
        outbound.on('error', teardown);
        outbound.on('close', () => {
          sockets.delete(outbound);
          teardown();
        });
        inbound.on('close', teardown);
        inbound.pipe(outbound);
        outbound.pipe(inbound);
        inbound.resume();
      },
      (err: Error) => {
        proxySocket.destroy();
        lastError = `SOCKS5 proxy ${formatHostPort(opts.proxy)} could not connect to ${formatHostPort(opts.target)}: ${err.message}`;
        inbound.destroy();
      },
    );
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        port: addr.port,
        get lastError() {
          return lastError;
        },
        get accepted() {
          return accepted;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
