// Fields of a decoded lnd protobuf message (proto-loader objects: bytes as Buffer, 64-bit ints as strings), read
// defensively: a node's reply is untrusted input, so a missing or mistyped field reads as empty, never throws.

export function asBuffer(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.alloc(0);
}

export function asInt(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : NaN;
  return Number.isSafeInteger(n) ? n : 0;
}

export function asString(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
