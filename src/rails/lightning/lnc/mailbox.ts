// The hashmail mailbox as LNC clients reach it: two websockets to the mailbox server's grpc-gateway
// proxy, one reading the stream the node writes to, one writing the stream the node reads. The receive
// socket starts with {"stream_id": <base64>}; it then carries {"result": {"desc": {...}, "msg": <base64>}}
// per message, or {"error": {..., "message": "stream not found"}} when the mailbox has no such stream
// (wrong phrase, expired/revoked session, node offline) or "stream occupied" when another client reads
// it. Each message sent is {"desc": {"stream_id": <base64>}, "msg": <base64>}.
import WebSocket from 'ws';

export const RECEIVE_PATH = '/v1/lightning-node-connect/hashmail/receive';
export const SEND_PATH = '/v1/lightning-node-connect/hashmail/send';
/** Largest websocket message we take from the mailbox. */
const MAX_WS_MESSAGE = 512 * 1024;

export interface MailboxAddress {
  host: string;
  port: number;
  /** Extra CA to trust for the mailbox's TLS certificate (self-hosted mailboxes). */
  ca?: Buffer;
}

/** Why the mailbox refused or dropped a stream, as the client has to tell the operator. */
export type MailboxFailure = 'not-found' | 'occupied' | 'unreachable' | 'closed' | 'protocol';

export class MailboxError extends Error {
  override readonly name = 'MailboxError';
  constructor(readonly kind: MailboxFailure, message: string) {
    super(message);
  }
}

export function mailboxUrl(addr: MailboxAddress, path: string): string {
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  return `wss://${host}:${addr.port}${path}?method=POST`;
}

/** Send SID = receive SID with the lowest bit of the last byte flipped (client→node direction). */
export function streamIds(sid: Buffer): { recv: Buffer; send: Buffer } {
  const send = Buffer.from(sid);
  send[63] = send[63]! ^ 0x01;
  return { recv: Buffer.from(sid), send };
}

function classify(text: string): MailboxError {
  if (/stream not found/i.test(text)) return new MailboxError('not-found', 'the mailbox has no stream for this session');
  if (/stream occupied/i.test(text)) return new MailboxError('occupied', 'another client is already connected to this session at the mailbox');
  return new MailboxError('protocol', `the mailbox answered with an error: ${text.slice(0, 200)}`);
}

function openSocket(url: string, addr: MailboxAddress, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca: addr.ca, handshakeTimeout: timeoutMs, maxPayload: MAX_WS_MESSAGE, perMessageDeflate: false });
    const fail = (err: Error): void => {
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      reject(new MailboxError('unreachable', `cannot connect to the mailbox ${addr.host}:${addr.port}: ${err.message}`));
    };
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => fail(new Error(`HTTP ${res.statusCode}`)));
    ws.once('open', () => {
      ws.removeAllListeners();
      resolve(ws);
    });
  });
}

/** The two sockets of one mailbox session. */
export class MailboxLink {
  private closed = false;
  onMessage: (bytes: Buffer) => void = () => {};
  onClose: (err: MailboxError) => void = () => {};

  private constructor(private readonly recvWs: WebSocket, private readonly sendWs: WebSocket, private readonly sendSid: Buffer) {
    for (const ws of [recvWs, sendWs]) {
      ws.on('error', (err) => this.fail(new MailboxError('closed', `mailbox connection failed: ${err.message}`)));
      ws.on('close', () => this.fail(new MailboxError('closed', 'the mailbox closed the connection')));
    }
    recvWs.on('message', (data, isBinary) => this.receive(isBinary ? null : data.toString()));
    sendWs.on('message', (data) => {
      // The send socket only ever speaks to report a failure.
      const text = data.toString();
      if (/"error"/.test(text)) this.fail(classify(text));
    });
  }

  static async open(addr: MailboxAddress, ids: { recv: Buffer; send: Buffer }, timeoutMs: number): Promise<MailboxLink> {
    const recvWs = await openSocket(mailboxUrl(addr, RECEIVE_PATH), addr, timeoutMs);
    let sendWs: WebSocket;
    try {
      sendWs = await openSocket(mailboxUrl(addr, SEND_PATH), addr, timeoutMs);
    } catch (err) {
      recvWs.terminate();
      throw err;
    }
    const link = new MailboxLink(recvWs, sendWs, ids.send);
    recvWs.send(JSON.stringify({ stream_id: ids.recv.toString('base64') }));
    return link;
  }

  private receive(text: string | null): void {
    if (this.closed) return;
    if (text === null) return this.fail(new MailboxError('protocol', 'the mailbox sent a binary frame'));
    let parsed: { result?: { msg?: unknown }; error?: { message?: unknown } };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return this.fail(new MailboxError('protocol', 'the mailbox sent a message that is not JSON'));
    }
    if (parsed.error !== undefined) return this.fail(classify(typeof parsed.error?.message === 'string' ? parsed.error.message : JSON.stringify(parsed.error)));
    const msg = parsed.result?.msg;
    if (typeof msg !== 'string') return this.fail(new MailboxError('protocol', 'the mailbox sent a message without a body'));
    this.onMessage(Buffer.from(msg, 'base64'));
  }

  send(bytes: Buffer): void {
    if (this.closed) throw new MailboxError('closed', 'the mailbox connection is closed');
    this.sendWs.send(JSON.stringify({ desc: { stream_id: this.sendSid.toString('base64') }, msg: bytes.toString('base64') }));
  }

  private fail(err: MailboxError): void {
    if (this.closed) return;
    this.close();
    this.onClose(err);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ws of [this.recvWs, this.sendWs]) {
      ws.removeAllListeners('close');
      ws.on('error', () => {});
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'bye');
      else ws.terminate();
      // A mailbox that never answers the close handshake does not keep the socket alive.
      setTimeout(() => ws.terminate(), 1000).unref();
    }
  }
}
