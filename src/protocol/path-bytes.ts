// Paths are bytes in nginx. l402d keeps a path as a string: valid UTF-8 decodes as usual, and each byte of an
// invalid sequence stands as the lone surrogate U+DC80-U+DCFF ("surrogateescape"), which decoding valid UTF-8
// can never produce. So the mapping is one-to-one: "/caf%E9" and "/caf%EF%BF%BD" stay two different paths,
// and pathBytes() gives back exactly the bytes nginx matched and the upstream is sent.

const STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** A lone surrogate (code units, no `u` flag). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Decoded path bytes as l402d's path string (never fails; invalid bytes become U+DC80-U+DCFF). */
export function pathFromBytes(b: Uint8Array): string {
  try {
    return STRICT.decode(b);
  } catch {
    // fall through: escape the bytes of each invalid sequence
  }
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    let n = 0;
    let cp = 0;
    let min = 0;
    if (c >= 0xc2 && c <= 0xdf) [n, cp, min] = [1, c & 0x1f, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, cp, min] = [2, c & 0x0f, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, cp, min] = [3, c & 0x07, 0x10000];
    let ok = n > 0 && i + n <= b.length - 1;
    for (let k = 1; ok && k <= n; k++) {
      const d = b[i + k]!;
      if ((d & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (d & 0x3f);
    }
    if (ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) {
      out += String.fromCodePoint(cp);
      i += n + 1;
    } else {
      out += String.fromCharCode(0xdc00 + c);
      i++;
    }
  }
  return out;
}

/** True when the path holds bytes that are not UTF-8 (escaped as U+DC80-U+DCFF). */
export function hasRawBytes(path: string): boolean {
  return LONE_SURROGATE.test(path);
}

/** The bytes a path string stands for (the inverse of pathFromBytes). */
export function pathBytes(path: string): Buffer {
  if (!LONE_SURROGATE.test(path)) return Buffer.from(path, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (let i = 0; i < path.length; i++) {
    const u = path.charCodeAt(i);
    const prev = i > 0 ? path.charCodeAt(i - 1) : 0;
    if (u >= 0xdc80 && u <= 0xdcff && !(prev >= 0xd800 && prev <= 0xdbff)) {
      parts.push(Buffer.from(run, 'utf8'), Buffer.from([u - 0xdc00]));
      run = '';
    } else run += path[i];
  }
  parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}
