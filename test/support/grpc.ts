// gRPC for tests: a content service upstream (test/integration/fixtures/content.proto) and its client.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DEFAULT_TIMEOUT_MS, withTimeout } from './waits.js';

export const CONTENT_PROTO_PATH = fileURLToPath(new URL('../integration/fixtures/content.proto', import.meta.url));

export interface ContentRequest {
  id: string;
}
export interface ContentResponse {
  id: string;
  body: string;
}

let contentServiceCtor: grpc.ServiceClientConstructor | undefined;
function contentService(): grpc.ServiceClientConstructor {
  if (!contentServiceCtor) {
    const def = protoLoader.loadSync(CONTENT_PROTO_PATH, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { content: { ContentService: grpc.ServiceClientConstructor } };
    contentServiceCtor = pkg.content.ContentService;
  }
  return contentServiceCtor;
}

export interface GrpcUpstream {
  port: number;
  /** Number of GetContent calls received. */
  readonly calls: number;
  /** The `authorization` metadata value of each call, in order (undefined if absent). */
  readonly authorizations: Array<string | undefined>;
  /** Full metadata of each call, as plain objects. */
  readonly metadata: Array<Record<string, unknown>>;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A real @grpc/grpc-js server (insecure = h2c) on 127.0.0.1:<free port> implementing
 * content.ContentService/GetContent: answers `{ id, body: "content for <id>" }`, counts calls
 * and records the `authorization` metadata. Request id "fail" answers PERMISSION_DENIED
 * (handy for testing error pass-through).
 */
export async function startGrpcUpstream(): Promise<GrpcUpstream> {
  let authorizations: Array<string | undefined> = [];
  let metadata: Array<Record<string, unknown>> = [];
  const server = new grpc.Server();
  server.addService(contentService().service, {
    GetContent: (
      call: grpc.ServerUnaryCall<ContentRequest, ContentResponse>,
      callback: grpc.sendUnaryData<ContentResponse>,
    ) => {
      const auth = call.metadata.get('authorization')[0];
      authorizations.push(auth === undefined ? undefined : String(auth));
      metadata.push(call.metadata.getMap());
      if (call.request.id === 'fail') {
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'fail requested' });
        return;
      }
      callback(null, { id: call.request.id, body: `content for ${call.request.id}` });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let stopped = false;
  return {
    port,
    get calls() {
      return authorizations.length;
    },
    get authorizations() {
      return authorizations;
    },
    get metadata() {
      return metadata;
    },
    reset() {
      authorizations = [];
      metadata = [];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await withTimeout(
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
        2_000,
        'grpc server tryShutdown',
      ).catch(() => server.forceShutdown());
    },
  };
}

/** Error a grpcClient call rejects with (a grpc-js ServiceError). */
export type GrpcError = grpc.ServiceError;

export interface ContentClient {
  /**
   * Unary GetContent. Resolves the response, or rejects with the grpc-js ServiceError
   * (`code`, `details`, `metadata`). `metadata` may be a plain object or a grpc.Metadata.
   */
  getContent(
    req: ContentRequest,
    metadata?: Record<string, string> | grpc.Metadata,
    opts?: { timeoutMs?: number },
  ): Promise<ContentResponse>;
  close(): void;
  /** Alias of close(), so it can be passed to Cleanup.use(). */
  stop(): void;
}

/** An insecure (h2c) ContentService client for 127.0.0.1:<port> — the grpc upstream itself or nginx's http2 listen. */
export function grpcClient(port: number, host = '127.0.0.1'): ContentClient {
  const Ctor = contentService();
  const client = new Ctor(`${host}:${port}`, grpc.credentials.createInsecure());
  const close = (): void => client.close();
  return {
    getContent(req, md, opts) {
      let metadata: grpc.Metadata;
      if (md instanceof grpc.Metadata) metadata = md;
      else {
        metadata = new grpc.Metadata();
        for (const [k, v] of Object.entries(md ?? {})) metadata.set(k, v);
      }
      const deadline = new Date(Date.now() + (opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS));
      return new Promise<ContentResponse>((resolve, reject) => {
        const fn = client.GetContent as unknown as (
          req: ContentRequest,
          md: grpc.Metadata,
          options: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res?: ContentResponse) => void,
        ) => grpc.ClientUnaryCall;
        fn.call(client, req, metadata, { deadline }, (err, res) => (err ? reject(err) : resolve(res as ContentResponse)));
      });
    },
    close,
    stop: close,
  };
}
