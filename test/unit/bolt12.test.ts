// BOLT12: the offer/invoice codec against the spec's test vectors and LDK (boltz-bolt12), config
// and start-up validation, and the fetchinvoice backend against the CLN peer over both transports.
import { test, before, after, beforeEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { tmpdir } from 'node:os';
import { schnorr } from '@noble/curves/secp256k1.js';
import { BackendCallError, type BackendContext, type LightningBackend } from '../../src/rails/lightning/backend.js';
import { ClnRpcError, ClnSocketRpc, type ClnCaller } from '../../src/rails/lightning/cln/cln-rpc.js';
import { ClnRestRpc } from '../../src/rails/lightning/cln/clnrest.js';
import { ClnConfigError } from '../../src/rails/lightning/cln/cln.js';
import {
  BOLT12_NETWORKS, Bolt12Error, CHAIN_HASHES, DEFAULT_RELATIVE_EXPIRY, bolt12ConfigSchema, bolt12FromLegacyEnv, createBolt12Backend,
  createBolt12BackendWith, decodeBolt12Invoice, decodeBolt12String, decodeOffer, loadBoltz, normalizeBolt12, readTlvStream, validateOffer,
} from '../../src/rails/lightning/cln/bolt12.js';
import { createLogger } from '../../src/util/log.js';
import {
  buildInvoice, buildOffer, encodeBolt12, merkleRoot, offerId, pubkeyOf, startClnPeer, taggedHash, type ClnPeer, type Tamper,
} from '../peers/cln-peer.js';
import { sleep } from '../../src/util/timeout.js';
// lightning/bolts bolt12/offers-test.json (description, valid, bolt12)
const OFFER_VECTORS: Array<[string, boolean, string]> = [
  ["Minimal bolt12 offer", true, "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"],
  ["with description (but no amount)", true, "lno1pgx9getnwss8vetrw3hhyuckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["for testnet", true, "lno1qgsyxjtl6luzd9t3pr62xr7eemp6awnejusgf6gw45q75vcfqqqqqqq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"],
  ["for bitcoin (redundant)", true, "lno1qgsxlc5vp2m0rvmjcxn2y34wv0m5lyc7sdj7zksgn35dvxgqqqqqqqq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"],
  ["for bitcoin or liquidv1", true, "lno1qfqpge38tqmzyrdjj3x2qkdr5y80dlfw56ztq6yd9sme995g3gsxqqm0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq9qc4r9wd6zqan9vd6x7unnzcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"],
  ["with metadata", true, "lno1qsgqqqqqqqqqqqqqqqqqqqqqqqqqqzsv23jhxapqwejkxar0wfe3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["with amount", true, "lno1pqpzwyq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"],
  ["with currency", true, "lno1qcp4256ypqpzwyq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"],
  ["with expiry", true, "lno1pgx9getnwss8vetrw3hhyucwq3ay997czcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"],
  ["with issuer", true, "lno1pgx9getnwss8vetrw3hhyucjy358garswvaz7tmzdak8gvfj9ehhyeeqgf85c4p3xgsxjmnyw4ehgunfv4e3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["with quantity", true, "lno1pgx9getnwss8vetrw3hhyuc5qyz3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["with unlimited (or unknown) quantity", true, "lno1pgx9getnwss8vetrw3hhyuc5qqtzzqhwcuj966ma9n9nqwqtl032xeyv6755yeflt235pmww58egx6rxry"],
  ["with single quantity (weird but valid)", true, "lno1pgx9getnwss8vetrw3hhyuc5qyq3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["with feature", true, "lno1pgx9getnwss8vetrw3hhyucvp5yqqqqqqqqqqqqqqqqqqqqkyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["with blinded path via Bob (0x424242...), path_key 020202...", true, "lno1pgx9getnwss8vetrw3hhyucs5ypjgef743p5fzqq9nqxh0ah7y87rzv3ud0eleps9kl2d5348hq2k8qzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgqpqqqqqqqqqqqqqqqqqqqqqqqqqqqzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqqzq3zyg3zyg3zyg3vggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["same, with blinded path first_node_id using sciddir", true, "lno1pgx9getnwss8vetrw3hhyucs3yqqqqqqqqqqqqp2qgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqqyqqqqqqqqqqqqqqqqqqqqqqqqqqqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqqgzyg3zyg3zyg3z93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"],
  ["with no issuer_id and blinded path via Bob (0x424242...), path_key 020202...", true, "lno1pgx9getnwss8vetrw3hhyucs5ypjgef743p5fzqq9nqxh0ah7y87rzv3ud0eleps9kl2d5348hq2k8qzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgqpqqqqqqqqqqqqqqqqqqqqqqqqqqqzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqqzq3zyg3zyg3zygs"],
  ["... and with second blinded path via 1x2x3 (direction 1), path_key 020202...", true, "lno1pgx9getnwss8vetrw3hhyucsl5qj5qeyv5l2cs6y3qqzesrth7mlzrlp3xg7xhulusczm04x6g6nms9trspqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqqsqqqqqqqqqqqqqqqqqqqqqqqqqqpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsqpqg3zyg3zyg3zygpqqqqzqqqqgqqxqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqqgqqqqqqqqqqqqqqqqqqqqqqqqqqqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgqqsg3zyg3zyg3zygtzzqhwcuj966ma9n9nqwqtl032xeyv6755yeflt235pmww58egx6rxry"],
  ["unknown odd field", true, "lno1pgx9getnwss8vetrw3hhyuckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxfppf5x2mrvdamk7unvvs"],
  ["unknown odd experimental field", true, "lno1pgx9getnwss8vetrw3hhyuckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvx078wdv5gg2dpjkcmr0wahhymry"],
  ["Malformed: fields out of order", false, "lno1zcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszpgz5znzfgdzs"],
  ["Malformed: unknown even TLV type 78", false, "lno1pgz5znzfgdz3vggzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpysgr0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq"],
  ["Malformed: empty", false, "lno1"],
  ["Malformed: truncated at type", false, "lno1pg"],
  ["Malformed: truncated in length", false, "lno1pt7s"],
  ["Malformed: truncated after length", false, "lno1pgpq"],
  ["Malformed: truncated in description", false, "lno1pgpyz"],
  ["Malformed: invalid offer_chains length", false, "lno1qgqszzs9g9xyjs69zcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: truncated currency UTF-8", false, "lno1qcqcqzs9g9xyjs69zcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: invalid currency UTF-8", false, "lno1qcplllhapqpq86q2q4qkc6trv5tzzq6muh550qsfva9fdes0ruph7ctk2s8aqq06r4jxj3msc448wzwy9s"],
  ["Malformed: truncated description UTF-8", false, "lno1pgqcq93pqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqy"],
  ["Malformed: invalid description UTF-8", false, "lno1pgpgqsgkyypqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs"],
  ["Malformed: truncated offer_paths", false, "lno1pgz5znzfgdz3qqgpzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: zero num_hops in blinded_path", false, "lno1pgz5znzfgdz3qqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsqzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: truncated onionmsg_hop in blinded_path", false, "lno1pgz5znzfgdz3qqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqspqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqgkyypqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs"],
  ["Malformed: bad first_node_id in blinded_path", false, "lno1pgz5znzfgdz3qqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqspqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqgqzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: bad path_key in blinded_path", false, "lno1pgz5znzfgdz3qqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcpqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqgqzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: bad blinded_node_id in onionmsg_hop", false, "lno1pgz5znzfgdz3qqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqspqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqgqzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: truncated issuer UTF-8", false, "lno1pgz5znzfgdz3yqvqzcssyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsz"],
  ["Malformed: invalid issuer UTF-8", false, "lno1pgz5znzfgdz3yq5qgytzzqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqg"],
  ["Malformed: invalid offer_issuer_id", false, "lno1pgz5znzfgdz3vggzqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcrqvps"],
  ["Contains type >= 80", false, "lno1pgz5znzfgdz3vggzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgp9qgr0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq"],
  ["Contains type > 1999999999", false, "lno1pgz5znzfgdz3vggzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgp06ae4jsq9qgr0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq"],
  ["Contains unknown even type (1000000002)", false, "lno1pgz5znzfgdz3vggzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgp06wu6egp9qgr0u2xq4dh3kdevrf4zg6hx8a60jv0gxe0ptgyfc6xkryqqqqqqqq"],
  ["Contains unknown feature 122", false, "lno1pgx9getnwss8vetrw3hhyucvzqzqqqqqqqqqqqqqqqqqqqqqqqqpvggzamrjghtt05kvkvpcp0a79gmy3nt6jsn98ad2xs8de6sl9qmgvcvs"],
  ["Missing offer_description, but has offer_amount", false, "lno1pqpzwyqkyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["Missing offer_amount with offer_currency", false, "lno1qcp4256ypgx9getnwss8vetrw3hhyuckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["Invalid: zero offer_amount", false, "lno1pqqq5qqkyyp4he0fg7pqje62jmnq78cr0ashv4q06qql58tyd9rhp3t2wuyugtq"],
  ["Invalid: zero offer_amount with currency", false, "lno1qcp4256ypqqq5qqkyyp4he0fg7pqje62jmnq78cr0ashv4q06qql58tyd9rhp3t2wuyugtq"],
  ["Missing offer_issuer_id and no offer_path", false, "lno1pgx9getnwss8vetrw3hhyuc"],
  ["Second offer_path is empty", false, "lno1pgx9getnwss8vetrw3hhyucsespjgef743p5fzqq9nqxh0ah7y87rzv3ud0eleps9kl2d5348hq2k8qzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgqpqqqqqqqqqqqqqqqqqqqqqqqqqqqzqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqqzq3zyg3zyg3zygszqqqqyqqqqsqqvpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqsq"],
  ["offer_chains with zero entries", false, "lno1qgqpvggrt0j7j3uzp9n549hxpu0sxlmpwe2ql5qplgwkg628wrzk5acfcskq"],
  ["Bech32 padding exceeds 4-bit limit", false, "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pkseseq"],
];
// lightning/bolts bolt12/format-string-test.json (comment, valid, string)
const FORMAT_VECTORS: Array<[string, boolean, string]> = [
  ["A complete string is valid", true, "lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["Uppercase is valid", true, "LNO1PQPS7SJQPGTYZM3QV4UXZMTSD3JJQER9WD3HY6TSW35K7MSJZFPY7NZ5YQCNYGRFDEJ82UM5WF5K2UCKYYPWA3EYT44H6TXTXQUQH7LZ5DJGE4AFGFJN7K4RGRKUAG0JSD5XVXG"],
  ["+ can join anywhere", true, "l+no1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["Multiple + can join", true, "lno1pqps7sjqpgt+yzm3qv4uxzmtsd3jjqer9wd3hy6tsw3+5k7msjzfpy7nz5yqcn+ygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd+5xvxg"],
  ["+ can be followed by whitespace", true, "lno1pqps7sjqpgt+ yzm3qv4uxzmtsd3jjqer9wd3hy6tsw3+  5k7msjzfpy7nz5yqcn+\nygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd+\r\n 5xvxg"],
  ["+ can be followed by whitespace, UPPERCASE", true, "LNO1PQPS7SJQPGT+ YZM3QV4UXZMTSD3JJQER9WD3HY6TSW3+  5K7MSJZFPY7NZ5YQCN+\nYGRFDEJ82UM5WF5K2UCKYYPWA3EYT44H6TXTXQUQH7LZ5DJGE4AFGFJN7K4RGRKUAG0JSD+\r\n 5XVXG"],
  ["Mixed case is invalid", false, "LnO1PqPs7sJqPgTyZm3qV4UxZmTsD3JjQeR9Wd3hY6TsW35k7mSjZfPy7nZ5YqCnYgRfDeJ82uM5Wf5k2uCkYyPwA3EyT44h6tXtXqUqH7Lz5dJgE4AfGfJn7k4rGrKuAg0jSd5xVxG"],
  ["+ must be surrounded by bech32 characters", false, "lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg+"],
  ["+ must be surrounded by bech32 characters", false, "lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg+ "],
  ["+ must be surrounded by bech32 characters", false, "+lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["+ must be surrounded by bech32 characters", false, "+ lno1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
  ["+ must be surrounded by bech32 characters", false, "ln++o1pqps7sjqpgtyzm3qv4uxzmtsd3jjqer9wd3hy6tsw35k7msjzfpy7nz5yqcnygrfdej82um5wf5k2uckyypwa3eyt44h6txtxquqh7lz5djge4afgfjn7k4rgrkuag0jsd5xvxg"],
];

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

// ---------------------------------------------------------------------------------------------
// Codec vs. the spec
// ---------------------------------------------------------------------------------------------

describe('spec test vectors', () => {
  test('offers-test.json: every valid offer decodes, every invalid one is refused', () => {
    assert.equal(OFFER_VECTORS.length, 53);
    for (const [what, valid, offer] of OFFER_VECTORS) {
      let err: unknown;
      try {
        decodeOffer(offer);
      } catch (e) {
        err = e;
      }
      if (valid) assert.equal(err, undefined, `${what}: ${(err as Error)?.message}`);
      else assert.ok(err instanceof Bolt12Error, `${what}: must be refused`);
    }
  });

  test('offers-test.json: decoded fields', () => {
    const byName = new Map(OFFER_VECTORS.map(([w, , s]) => [w, s]));
    assert.equal(decodeOffer(byName.get('with description (but no amount)')!).description, 'Test vectors');
    assert.deepEqual(decodeOffer(byName.get('for testnet')!).chains, ['testnet']);
    assert.deepEqual(decodeOffer(byName.get('for bitcoin or liquidv1')!).chains, ['bitcoin'], 'unknown chains are left out');
    assert.equal(decodeOffer(byName.get('with amount')!).amountMsat, 10_000n);
    const cur = decodeOffer(byName.get('with currency')!);
    assert.equal(cur.currency, 'USD');
    assert.equal(cur.amountMsat, undefined, 'a fiat amount is not msat');
    assert.equal(decodeOffer(byName.get('Minimal bolt12 offer')!).issuerId!.toString('hex'), '02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619');
  });

  test('format-string-test.json: case and "+" joins', () => {
    for (const [what, valid, s] of FORMAT_VECTORS) {
      let ok = true;
      try {
        decodeOffer(s);
      } catch {
        ok = false;
      }
      assert.equal(ok, valid, what);
    }
    assert.equal(normalizeBolt12('LNO1PQ+ \n  PS'), 'lno1pqps');
  });

  test('signature-test.json: Merkle roots and the invoice_request signature', () => {
    const t1 = hex('010203e8');
    const t2 = hex('02080000010000020003');
    const t3 = hex('03310266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c0351800000000000000010000000000000002');
    const root = (...parts: Buffer[]): string => merkleRoot(readTlvStream(Buffer.concat(parts))).toString('hex');
    assert.equal(root(t1), 'b013756c8fee86503a0b4abdab4cddeb1af5d344ca6fc2fa8b6c08938caa6f93');
    assert.equal(root(t1, t2), 'c3774abbf4815aa54ccaa026bff6581f01f3be5fe814c620a252534f434bc0d1');
    assert.equal(root(t1, t2, t3), 'ab2e79b1283b0b31e0b035258de23782df6b89a38cfa7237bde69aed1a658c5d');
    const invreq =
      'lnr1qqyqqqqqqqqqqqqqqcp4256ypqqkgzshgysy6ct5dpjk6ct5d93kzmpq23ex2ct5d9ek293pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpjkppqvjx204vgdzgsqpvcp4mldl3plscny0rt707gvpdh6ndydfacz43euzqhrurageg3n7kafgsek6gz3e9w52parv8gs2hlxzk95tzeswywffxlkeyhml0hh46kndmwf4m6xma3tkq2lu04qz3slje2rfthc89vss';
    const records = readTlvStream(decodeBolt12String(invreq, 'lnr').bytes);
    const m = merkleRoot(records);
    assert.equal(m.toString('hex'), '608407c18ad9a94d9ea2bcdbe170b6c20c462a7833a197621c916f78cf18e624', 'signature record excluded');
    const msg = taggedHash('lightninginvoice_requestsignature', m);
    assert.equal(msg.toString('hex'), 'aefe3aa88a69772c246dcaef75ed3e7566c08ecc4e9f995233526a5651fc34cd');
    const sig = records.find((r) => r.type === 240n)!.value;
    assert.equal(sig.toString('hex'), 'b8f83ea3288cfd6ea510cdb481472575141e8d8744157f98562d162cc1c472526fdb24befefbdebab4dbb726bbd1b7d8aec057f8fa805187e5950d2bbe0e5642');
    const payerId = records.find((r) => r.type === 88n)!.value; // Bob
    assert.ok(schnorr.verify(sig, msg, payerId.subarray(1)));
    assert.equal(encodeBolt12('lnr', decodeBolt12String(invreq, 'lnr').bytes), invreq, 'encoder round-trips');
  });

  test('chain hashes agree with LDK for every network', () => {
    const secret = randomBytes(32);
    for (const n of BOLT12_NETWORKS) {
      assert.deepEqual(decodeOffer(buildOffer({ issuerSecret: secret, chains: [n], description: 'x' })).chains, [n], n);
    }
    assert.equal(CHAIN_HASHES.bitcoin, '6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000');
  });

  test('offer_id is CLN\'s: SHA256 of the offer TLV bytes', () => {
    const o = buildOffer({ issuerSecret: randomBytes(32), description: 'id test', amountMsat: 5000 });
    assert.deepEqual(decodeOffer(o).id, sha256(decodeBolt12String(o, 'lno').bytes));
    assert.deepEqual(decodeOffer(o).id, offerId(o));
  });

  test('loadBoltz needs no flag and is loaded once', () => {
    assert.equal(loadBoltz(), loadBoltz());
    assert.equal(typeof loadBoltz().Invoice, 'function');
  });
});

// ---------------------------------------------------------------------------------------------
// Offer validation at start, invoice decoding
// ---------------------------------------------------------------------------------------------

describe('offer validation', () => {
  const secret = randomBytes(32);
  const now = Math.floor(Date.now() / 1000);

  test('expired, wrong chain, unknown chain, garbage and non-offers are refused with a reason', () => {
    assert.throws(() => validateOffer(buildOffer({ issuerSecret: secret, description: 'x', absoluteExpiry: now - 5 })), /offer expired at 20/);
    assert.throws(() => validateOffer(buildOffer({ issuerSecret: secret, description: 'x' }), { network: 'regtest' }), /offer is for bitcoin, not regtest/);
    const liquidOnly = OFFER_VECTORS.find(([w]) => w === 'for bitcoin or liquidv1')![2];
    assert.ok(validateOffer(liquidOnly, { network: 'bitcoin' }));
    assert.throws(() => validateOffer('lno1qqqq'), Bolt12Error);
    assert.throws(() => validateOffer('not an offer'), /not a BOLT12 string starting with lno1/);
    const inv = buildInvoice({
      offerRecords: readTlvStream(decodeBolt12String(buildOffer({ issuerSecret: secret, description: 'x' }), 'lno').bytes),
      invreqAmountMsat: 1000n, amountMsat: 1000n, paymentHash: randomBytes(32), createdAt: now, nodeSecret: secret,
    });
    assert.throws(() => validateOffer(inv), /starting with lno1/);
    const future = validateOffer(buildOffer({ issuerSecret: secret, description: 'x', absoluteExpiry: now + 3600, chains: ['regtest', 'signet'] }), { network: 'signet' });
    assert.equal(future.absoluteExpiry, now + 3600);
  });

  test('the config schema reports a bad offer at lightning.offer', () => {
    const expired = bolt12ConfigSchema.safeParse({ type: 'bolt12', offer: buildOffer({ issuerSecret: secret, description: 'x', absoluteExpiry: now - 1 }) });
    assert.equal(expired.success, false);
    assert.deepEqual(expired.error!.issues[0]!.path, ['offer']);
    assert.match(expired.error!.issues[0]!.message, /invalid BOLT12 offer: offer expired/);
    const net = bolt12ConfigSchema.safeParse({ type: 'bolt12', offer: buildOffer({ issuerSecret: secret, description: 'x' }), network: 'regtest' });
    assert.match(net.error!.issues[0]!.message, /not regtest/);
    assert.equal(bolt12ConfigSchema.safeParse({ type: 'bolt12' }).success, false);
    const ok = bolt12ConfigSchema.parse({ type: 'bolt12', offer: buildOffer({ issuerSecret: secret, description: 'x', chains: ['regtest'] }), network: 'regtest' });
    assert.equal(ok.transport, 'rpc');
    assert.equal(ok.rpc_path, '~/.lightning/bitcoin/lightning-rpc');
    const fiat = bolt12ConfigSchema.safeParse({ type: 'bolt12', offer: OFFER_VECTORS.find(([w]) => w === 'with currency')![2] });
    assert.match(fiat.error!.issues[0]!.message, /priced in USD/);
  });

  test('createBolt12Backend refuses a bad offer with a ClnConfigError naming the key', () => {
    const ctx = { configDir: tmpdir(), dataDir: tmpdir(), log: createLogger('silent'), timeoutMs: 1000 };
    const expired = buildOffer({ issuerSecret: secret, description: 'x', absoluteExpiry: now - 1 });
    assert.throws(
      () => createBolt12Backend({ type: 'bolt12', offer: expired, transport: 'rpc', rpc_path: '/nonexistent' }, ctx),
      (e: Error) => e instanceof ClnConfigError && /^lightning\.offer: invalid BOLT12 offer: offer expired/.test(e.message),
    );
    assert.throws(() => createBolt12Backend({ type: 'bolt12', offer: 'lno1zzzz', transport: 'rpc', rpc_path: '/x' }, ctx), ClnConfigError);
  });

  test('legacy env: BOLT12_OFFER + CLN_LIGHTNING_RPC_FILE_PATH', () => {
    const offer = buildOffer({ issuerSecret: secret, description: 'legacy' });
    const raw = bolt12FromLegacyEnv({ LN_CLIENT_TYPE: 'BOLT12', BOLT12_OFFER: ` ${offer} `, CLN_LIGHTNING_RPC_FILE_PATH: '/root/.lightning/bitcoin/lightning-rpc' });
    assert.deepEqual(raw, { type: 'bolt12', transport: 'rpc', offer, rpc_path: '/root/.lightning/bitcoin/lightning-rpc' });
    assert.equal(bolt12ConfigSchema.parse(raw).offer, offer);
    // ngx_l402 falls back to the literal "bolt12_offer"; we leave it unset so the schema says what is missing.
    assert.equal(bolt12ConfigSchema.safeParse(bolt12FromLegacyEnv({})).success, false);
  });

  test('invoices: LDK verifies the signature; + joins and upper case are accepted', () => {
    const offer = buildOffer({ issuerSecret: secret, description: 'inv', chains: ['regtest'] });
    const records = readTlvStream(decodeBolt12String(offer, 'lno').bytes);
    const hash = randomBytes(32);
    const inv = buildInvoice({ offerRecords: records, chain: 'regtest', invreqAmountMsat: 4242n, amountMsat: 4242n, paymentHash: hash, createdAt: now, nodeSecret: secret, payerNote: 'note' });
    const d = decodeBolt12Invoice(inv);
    assert.deepEqual(d.paymentHash, hash);
    assert.equal(d.amountMsat, 4242n);
    assert.equal(d.chain, 'regtest');
    assert.equal(d.expiresAt, now + DEFAULT_RELATIVE_EXPIRY);
    assert.equal(d.payerNote, 'note');
    assert.deepEqual(d.nodeId, pubkeyOf(secret));
    assert.deepEqual(d.offerRecords.map((r) => r.raw.toString('hex')), records.map((r) => r.raw.toString('hex')));
    const joined = `${inv.slice(0, 40).toUpperCase()}+\n ${inv.slice(40).toUpperCase()}`;
    assert.deepEqual(decodeBolt12Invoice(joined).paymentHash, hash);
    const bytes = decodeBolt12String(inv, 'lni').bytes;
    bytes[bytes.length - 5]! ^= 0x10;
    assert.throws(() => decodeBolt12Invoice(encodeBolt12('lni', bytes)), /rejected by the BOLT12 decoder/);
    // Signed by a key that is not the offer's issuer.
    const wrongSigner = buildInvoice({ offerRecords: records, chain: 'regtest', invreqAmountMsat: 1n, amountMsat: 1n, paymentHash: hash, createdAt: now, nodeSecret: randomBytes(32) });
    assert.throws(() => decodeBolt12Invoice(wrongSigner), /rejected by the BOLT12 decoder/);
    const rel = buildInvoice({ offerRecords: records, chain: 'regtest', invreqAmountMsat: 1n, amountMsat: 1n, paymentHash: hash, createdAt: now, relativeExpiry: 60, nodeSecret: secret });
    assert.equal(decodeBolt12Invoice(rel).expiresAt, now + 60);
  });
});

// ---------------------------------------------------------------------------------------------
// The backend against the CLN peer
// ---------------------------------------------------------------------------------------------

let peer: ClnPeer;
before(async () => {
  peer = await startClnPeer({ rest: true });
});
after(() => peer?.stop());
beforeEach(() => peer.resetFaults());

function testCtx(timeoutMs = 2000): { ctx: BackendContext; logs: string[] } {
  const logs: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  return { ctx: { configDir: tmpdir(), dataDir: tmpdir(), log: createLogger('debug', sink), timeoutMs }, logs };
}

const transports: Record<string, (timeoutMs: number) => ClnCaller> = {
  rpc: (timeoutMs) => new ClnSocketRpc({ path: peer.socketPath, timeoutMs }),
  rest: (timeoutMs) => new ClnRestRpc({ url: peer.restUrl!, rune: peer.rune, ca: peer.caPem, timeoutMs }),
};

async function rejects(p: Promise<unknown>): Promise<BackendCallError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof BackendCallError, `expected BackendCallError, got ${(e as Error)?.message}`);
    return e;
  }
  assert.fail('expected a rejection');
}

for (const [name, open] of Object.entries(transports)) {
  describe(`bolt12 backend over ${name}`, () => {
    const backends: LightningBackend[] = [];
    const make = (offer: string, timeoutMs = 2000): { backend: LightningBackend; logs: string[] } => {
      const { ctx, logs } = testCtx(timeoutMs);
      const backend = createBolt12BackendWith(offer, open(timeoutMs), ctx);
      backends.push(backend);
      return { backend, logs };
    };
    after(async () => {
      for (const b of backends) await b.close();
    });

    test('own offer: a fresh signed lni invoice per challenge; lookup open → settled', async () => {
      const offer = peer.createOffer({ description: 'premium content' });
      const { backend, logs } = make(offer, 3000);
      const from = peer.calls.length;
      const inv = await backend.createInvoice({ amountMsat: 10_000, memo: 'L402 payment', expirySecs: 600 });
      assert.match(inv.bolt11, /^lni1[02-9ac-hj-np-z]+$/);
      const d = decodeBolt12Invoice(inv.bolt11);
      assert.equal(d.amountMsat, 10_000n);
      assert.deepEqual(d.paymentHash, inv.paymentHash);
      assert.equal(inv.expiresAt, d.expiresAt);
      assert.equal(d.nodeId.toString('hex'), peer.nodeId);
      const fetch = peer.calls.slice(from).find((c) => c.method === 'fetchinvoice')!;
      assert.equal(fetch.transport, name);
      assert.deepEqual(fetch.params, { offer, amount_msat: 10_000, timeout: 3, payer_note: 'L402 payment' });
      assert.ok(peer.calls.slice(from).some((c) => c.method === 'getinfo'), 'the node chain is checked first');
      const second = await backend.createInvoice({ amountMsat: 10_000, memo: 'L402 payment', expirySecs: 600 });
      assert.notDeepEqual(second.paymentHash, inv.paymentHash);
      assert.deepEqual(await backend.lookupInvoice!(inv.paymentHash), { state: 'open' });
      const preimage = peer.settle(inv.bolt11);
      const st = await backend.lookupInvoice!(inv.paymentHash);
      assert.ok(st.state === 'settled' && st.preimage.equals(preimage) && sha256(preimage).equals(inv.paymentHash));
      assert.match(await backend.check!(), /offer belongs to this node; settlement lookups available/);
      assert.match(backend.describe(), /^BOLT12 offer [0-9a-f]{16}… "premium content" \(fetchinvoice\) via Core Lightning /);
      assert.ok(!logs.some((l) => l.includes('bolt12_offer_not_local')));
      assert.ok(!backend.describe().includes(peer.rune));
    });

    test("someone else's offer: invoices work and verify by preimage; lookups say unknown; check() warns", async () => {
      const offer = peer.foreignOffer({ description: 'elsewhere' });
      const { backend, logs } = make(offer);
      const inv = await backend.createInvoice({ amountMsat: 2000, memo: 'x', expirySecs: 60 });
      assert.notEqual(decodeBolt12Invoice(inv.bolt11).nodeId.toString('hex'), peer.nodeId);
      assert.deepEqual(await backend.lookupInvoice!(inv.paymentHash), { state: 'unknown' });
      const preimage = peer.settle(inv.bolt11);
      assert.ok(sha256(preimage).equals(inv.paymentHash), 'the payer still gets a matching preimage');
      assert.deepEqual(await backend.lookupInvoice!(inv.paymentHash), { state: 'unknown' });
      assert.match(await backend.check!(), /offer is NOT this node's/);
      await sleep(50);
      assert.ok(logs.some((l) => l.includes('bolt12_offer_not_local')), 'warned once in the log');
    });

    test('a disabled own offer fails check()', async () => {
      const { backend } = make(peer.createOffer({ description: 'off', active: false }));
      const e = await rejects(backend.check!());
      assert.match(e.message, /exists on this node but is disabled/);
      assert.equal(e.retryable, false);
      peer.faults.errorFor.listoffers = { code: 1502, message: 'Not permitted: method is not equal to getinfo' };
      assert.match(await backend.check!(), /could not tell whether the offer is this node's \(listoffers: CLN listoffers failed: error 1502/);
    });

    test('offer for another chain than the node: refused before fetchinvoice', async () => {
      const offer = buildOffer({ issuerSecret: peer.nodeSecret, description: 'mainnet', chains: ['bitcoin'] });
      const { backend } = make(offer);
      const from = peer.calls.length;
      const e = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.match(e.message, /offer is for bitcoin but the CLN node runs on regtest/);
      assert.equal(e.retryable, false);
      assert.ok(!peer.calls.slice(from).some((c) => c.method === 'fetchinvoice'));
      assert.match((await rejects(backend.check!())).message, /runs on regtest/);
    });

    test('offer amounts: a route price below the offer amount is refused; quantity offers get quantity 1', async () => {
      const { backend } = make(peer.createOffer({ description: 'pricey', amountMsat: 50_000 }));
      const e = await rejects(backend.createInvoice({ amountMsat: 10_000, memo: 'x', expirySecs: 60 }));
      assert.match(e.message, /asks for at least 50000 msat but the route price is 10000 msat/);
      const ok = await backend.createInvoice({ amountMsat: 60_000, memo: 'x', expirySecs: 60 });
      assert.equal(decodeBolt12Invoice(ok.bolt11).amountMsat, 60_000n);
      const { backend: q } = make(peer.createOffer({ description: 'items', quantityMax: 5 }));
      const from = peer.calls.length;
      await q.createInvoice({ amountMsat: 1234, memo: '', expirySecs: 60 });
      const call = peer.calls.slice(from).find((c) => c.method === 'fetchinvoice')!;
      assert.equal(call.params.quantity, 1);
      assert.equal(call.params.payer_note, undefined, 'an empty memo sends no payer_note');
      assert.throws(() => make(peer.createOffer({ description: 'fiat', currency: 'USD', amountMsat: 100 })), /offer is priced in USD/);
    });

    test('bad invoices from the node are refused', async () => {
      const { backend } = make(peer.createOffer({ description: 'tamper' }));
      const cases: Array<[Tamper, RegExp]> = [
        ['invoice_offer', /not for the configured offer/],
        ['invoice_amount', /invoice amount 1001 msat differs from the requested 1000 msat/],
        ['invoice_signature', /returned invoice is invalid: rejected by the BOLT12 decoder/],
        ['invoice_expired', /already expired/],
        ['invoice_not_string', /reply has no invoice string/],
      ];
      for (const [tamper, re] of cases) {
        peer.faults.tamper = tamper;
        const e = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
        assert.match(e.message, re, tamper);
      }
      const { backend: multi } = make(peer.createOffer({ description: 'two chains', chains: ['regtest', 'signet'] }));
      peer.faults.tamper = 'invoice_chain';
      assert.match((await rejects(multi.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }))).message, /invoice is for signet, node runs regtest/);
      peer.faults.tamper = undefined;
      peer.faults.errorFor.fetchinvoice = { code: 1005, message: 'Timeout waiting for response' };
      const t = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.ok(t instanceof ClnRpcError && t.code === 1005 && t.retryable);
      peer.faults.errorFor.fetchinvoice = { code: 1002, message: 'Offer expired' };
      const x = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.ok(x instanceof ClnRpcError && x.code === 1002 && !x.retryable);
      peer.faults.errorFor = {};
      assert.ok((await backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 })).paymentHash.length === 32);
    });

    test('timeouts are bounded', async () => {
      const { backend } = make(peer.createOffer({ description: 'slow' }), 300);
      await backend.check!().catch(() => {});
      peer.faults.silent = true;
      const t0 = Date.now();
      const e = await rejects(backend.createInvoice({ amountMsat: 1000, memo: 'x', expirySecs: 60 }));
      assert.match(e.message, /timed out after 300 ms/);
      assert.ok(Date.now() - t0 < 3000);
    });
  });
}
