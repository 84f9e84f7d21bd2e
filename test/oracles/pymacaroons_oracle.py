#!/usr/bin/python3
"""Test oracle: pymacaroons 0.13.0 driven by JSON on stdin/stdout (same protocol as go-macaroon).

Run with Debian's /usr/bin/python3, where python3-pymacaroons lives.
pymacaroons' serialize()/deserialize() speak URL-safe unpadded base64, so we use
serialize_raw()/deserialize_raw() and do std base64 ourselves to match the L402 header form.
"""
import base64
import binascii
import json
import sys

from pymacaroons import Macaroon, MACAROON_V2, Verifier
from pymacaroons.serializers.binary_serializer import BinarySerializer


def b64(m):
    return base64.b64encode(BinarySerializer().serialize_raw(m)).decode('ascii')


def decode(text):
    return BinarySerializer().deserialize_raw(base64.b64decode(text, validate=True))


def mint(req):
    # Bytes (not str) keep the identifier binary-safe; version=V2 selects the binary V2 layout.
    m = Macaroon(location=req['location'], identifier=bytes.fromhex(req['idHex']),
                 key=bytes.fromhex(req['rootKeyHex']), version=MACAROON_V2)
    for c in req['caveats']:
        m.add_first_party_caveat(c)
    return {'b64': b64(m)}


def attenuate(req):
    m = decode(req['b64'])
    for c in req['caveats']:
        m.add_first_party_caveat(c)
    return {'b64': b64(m)}


def verify(req):
    res = {'ok': False, 'idHex': '', 'location': '', 'caveats': [], 'reencoded': ''}
    try:
        m = decode(req['b64'])
    except Exception as e:  # any parse failure is a verdict, not a crash
        res['error'] = repr(e)
        return res
    res['idHex'] = binascii.hexlify(m.identifier_bytes).decode('ascii')
    res['location'] = m.location
    try:
        res['reencoded'] = b64(m)
    except UnicodeDecodeError:
        pass  # pymacaroons reads V1 with a binary identifier (ngx_l402's) but cannot write it back
    seen = []

    # Caveat semantics are ours to judge; the oracle only checks the HMAC chain.
    def accept(predicate):
        seen.append(predicate)
        return True

    v = Verifier()
    v.satisfy_general(accept)
    try:
        res['ok'] = v.verify(m, bytes.fromhex(req['rootKeyHex']))
    except Exception as e:  # pymacaroons signals a bad signature by raising
        res['error'] = repr(e)
    res['caveats'] = seen
    return res


def main():
    cmds = {'mint': mint, 'verify': verify, 'attenuate': attenuate}
    if len(sys.argv) != 2 or sys.argv[1] not in cmds:
        sys.exit('usage: pymacaroons_oracle.py mint|verify|attenuate < request.json')
    json.dump(cmds[sys.argv[1]](json.load(sys.stdin)), sys.stdout)


if __name__ == '__main__':
    main()
