// The environment ngx_l402 ran with, from a file as docker (`--env-file`, compose's `.env`) or systemd
// (`EnvironmentFile=`) read it: `NAME=value` lines, optional `export `, `#` comment lines, values optionally
// in matching quotes. Each variable keeps its line, so a report can name it.
import { NginxParseError } from './nginx-parse.js';

export interface EnvEntry {
  value: string;
  line: number;
}

export function parseEnvFile(text: string, file: string): Map<string, EnvEntry> {
  const out = new Map<string, EnvEntry>();
  const lines = text.split(/\r?\n/);
  for (const [i, rawLine] of lines.entries()) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new NginxParseError(`${file}:${i + 1}: not a NAME=value line`);
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["\\$`])/g, '$1').replace(/\\n/g, '\n');
    } else if (q === '"' || q === "'") {
      throw new NginxParseError(`${file}:${i + 1}: ${m[1]}: unterminated quote`);
    } else {
      // An unquoted value ends at " #" (a trailing comment), as docker compose reads it.
      value = value.replace(/\s+#.*$/, '').trim();
    }
    out.set(m[1]!, { value, line: i + 1 });
  }
  return out;
}
