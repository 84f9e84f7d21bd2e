// The embedded defaults: what `l402d start` runs without a config file, and what the quick start uses.
export const DEFAULT_CONFIG_YAML = `# l402-nginx embedded defaults (development only: dev wallet, SQLite under ./data)
listen: 127.0.0.1:8402
data_dir: ./data
store: { type: sqlite }
lightning: { type: dev }
routes:
  - match: /premium
    amount_msat: 10000
    access: per-request
  - match: /api/
    amount_msat: 50000
    access: timed
    macaroon_timeout: 3600
`;
