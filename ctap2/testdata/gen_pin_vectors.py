#!/usr/bin/python3
"""Golden vectors for ctapkit's PIN/UV auth protocols, computed by python-fido2.

Runs python-fido2's own ClientPin and HmacSecretExtension code against a scripted
authenticator with FIXED keys: the authenticator's key agreement key, the platform's
"ephemeral" key (ec.generate_private_key is patched) and the protocol 2 IVs
(os.urandom is patched). Every clientPIN request python-fido2 sends is recorded
byte for byte, with the replies, so the Go tests can replay the same exchange
through ctap2.Client and demand identical requests, and check the primitives
(shared secret, encrypt, authenticate, decrypt) value by value.

Usage (Debian's python3-fido2, 0.9.x; the python3 on PATH may lack fido2):
    /usr/bin/python3 ctap2/testdata/gen_pin_vectors.py            # writes pin_vectors.json
    /usr/bin/python3 ctap2/testdata/gen_pin_vectors.py -o -       # prints it
The output is deterministic; ctap2's TestPINVectorsRegenerate compares it with the
committed file.
"""

import argparse
import hashlib
import json
import os
import sys
from types import SimpleNamespace
from unittest import mock

import fido2
from fido2 import cbor
from fido2.ctap2 import pin as fpin
from fido2.ctap2.base import Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin
from fido2.hid import CAPABILITY, CTAPHID
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.asymmetric import ec

BE = default_backend()


def h(b):
    return b.hex()


def sha(label):
    return hashlib.sha256(label.encode()).digest()


# Fixed inputs. Private keys are the scalars 0x0102..20 and 0x2122..40 (both < n).
AUTH_PRIV = bytes(range(0x01, 0x21))
PLATFORM_PRIV = bytes(range(0x21, 0x41))
TOKEN32 = sha("ctapkit pinUvAuthToken")
TOKEN16 = TOKEN32[:16]
CRED_RANDOM = sha("ctapkit CredRandom")
SALT1 = sha("ctapkit salt1")
SALT2 = sha("ctapkit salt2")
CLIENT_DATA_HASH = sha("ctapkit clientDataHash")
AAGUID = bytes(range(0xA0, 0xB0))


def priv(scalar):
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1(), BE)


def cose(key):
    n = key.public_key().public_numbers()
    return {1: 2, 3: -25, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}


AUTH_KEY = priv(AUTH_PRIV)
PLATFORM_KEY = priv(PLATFORM_PRIV)


def info(protocols, token_perms=True):
    versions = ["FIDO_2_0", "FIDO_2_1"] if token_perms else ["FIDO_2_0"]
    options = {"clientPin": True, "uv": True}
    if token_perms:
        options["pinUvAuthToken"] = True
    return cbor.encode({1: versions, 2: ["hmac-secret"], 3: AAGUID, 4: options, 6: protocols})


class IVs:
    """os.urandom replacement: fixed 16-byte IVs, recorded in order."""

    def __init__(self, label):
        self.label = label
        self.used = []

    def __call__(self, n):
        assert n == 16, n
        iv = sha("ctapkit iv %s %d" % (self.label, len(self.used)))[:16]
        self.used.append(iv)
        return iv


class FakeDevice:
    """A CTAPHID device that answers getInfo and replays scripted replies."""

    capabilities = CAPABILITY.CBOR

    def __init__(self, info_bytes):
        self.info = info_bytes
        self.replies = []
        self.exchange = []

    def call(self, cmd, data, event=None, on_keepalive=None):
        assert cmd == CTAPHID.CBOR
        if data[:1] == b"\x04":
            return b"\x00" + self.info
        reply = self.replies.pop(0)
        self.exchange.append({"request": h(data), "reply": h(reply)})
        return reply


def ok(body=None):
    return b"\x00" + (cbor.encode(body) if body is not None else b"")


def protocol_obj(version):
    return fpin.PinProtocolV2() if version == 2 else fpin.PinProtocolV1()


def shared_secret(version):
    z = AUTH_KEY.exchange(ec.ECDH(), PLATFORM_KEY.public_key())
    return protocol_obj(version).kdf(z)


def run(version, info_bytes, label, replies, fn):
    """Runs fn(ctap) with the platform key and IVs fixed; returns the record."""
    dev = FakeDevice(info_bytes)
    ivs = IVs(label)
    with mock.patch.object(fpin.ec, "generate_private_key", lambda *a, **k: PLATFORM_KEY), \
            mock.patch.object(fpin.os, "urandom", ivs):
        ctap = Ctap2(dev)
        dev.replies = list(replies)
        result = fn(ctap)
    assert not dev.replies, "unused replies"
    return {"ivs": [h(iv) for iv in ivs.used], "exchange": dev.exchange}, result


def authenticator_encrypt(version, key, plaintext, label):
    """The authenticator's encryption of a reply (its own fixed IV for protocol 2)."""
    with mock.patch.object(fpin.os, "urandom", IVs(label)):
        return protocol_obj(version).encrypt(key, plaintext)


def key_agreement_reply():
    return ok({1: cose(AUTH_KEY)})


def protocol_vectors(version):
    protocols = [2, 1] if version == 2 else [1]
    inf = info(protocols)
    legacy_inf = info(protocols, token_perms=False)
    ss = shared_secret(version)
    p = protocol_obj(version)
    out = {
        "version": version,
        "info": h(inf),
        "legacyInfo": h(legacy_inf),
        "sharedSecret": h(ss),
        "setPin": [],
        "changePin": [],
        "pinToken": [],
        "uvToken": [],
    }

    for i, pin in enumerate(["1234", "p\u00e4ssw\u00f6rd \u20ac\U0001d11e", "9" * 63]):
        rec, _ = run(version, inf, "v%d setPin %d" % (version, i),
                     [key_agreement_reply(), ok()], lambda c: ClientPin(c).set_pin(pin))
        req = cbor.decode(bytes.fromhex(rec["exchange"][1]["request"])[1:])
        padded = pin.encode().ljust(64, b"\0")
        assert p.decrypt(ss, req[5]) == padded
        assert p.authenticate(ss, req[5]) == req[4]
        rec.update(pin=pin, paddedPin=h(padded), newPinEnc=h(req[5]), pinUvAuthParam=h(req[4]))
        out["setPin"].append(rec)

    rec, _ = run(version, inf, "v%d changePin" % version, [key_agreement_reply(), ok()],
                 lambda c: ClientPin(c).change_pin("1234", "87654321"))
    req = cbor.decode(bytes.fromhex(rec["exchange"][1]["request"])[1:])
    rec.update(currentPin="1234", newPin="87654321", pinHash=h(hashlib.sha256(b"1234").digest()[:16]),
               pinHashEnc=h(req[6]), newPinEnc=h(req[5]), pinUvAuthParam=h(req[4]))
    out["changePin"].append(rec)

    tokens = [TOKEN32] + ([TOKEN16] if version == 1 else [])
    cases = [(t, 0x03, "example.com", False) for t in tokens] + [(TOKEN32, 0x04, None, False),
                                                                 (TOKEN32, 0x03, None, True)]
    for i, (token, perms, rp, legacy) in enumerate(cases):
        token_enc = authenticator_encrypt(version, ss, token, "v%d token reply %d" % (version, i))
        rec, got = run(version, legacy_inf if legacy else inf, "v%d pinToken %d" % (version, i),
                       [key_agreement_reply(), ok({2: token_enc})],
                       lambda c: ClientPin(c).get_pin_token("1234", perms, rp))
        assert got == token
        req = cbor.decode(bytes.fromhex(rec["exchange"][1]["request"])[1:])
        rec.update(pin="1234", permissions=perms, rpId=rp or "", legacy=legacy, pinHashEnc=h(req[6]),
                   tokenEnc=h(token_enc), token=h(got),
                   clientDataHash=h(CLIENT_DATA_HASH), param=h(p.authenticate(got, CLIENT_DATA_HASH)))
        out["pinToken"].append(rec)

    token_enc = authenticator_encrypt(version, ss, TOKEN32, "v%d uv token reply" % version)
    rec, got = run(version, inf, "v%d uvToken" % version, [key_agreement_reply(), ok({2: token_enc})],
                   lambda c: ClientPin(c).get_uv_token(0x02, "example.com"))
    assert got == TOKEN32
    rec.update(permissions=0x02, rpId="example.com", tokenEnc=h(token_enc), token=h(got))
    out["uvToken"].append(rec)

    rec, got = run(version, inf, "v%d retries" % version, [ok({3: 5, 4: False})],
                   lambda c: ClientPin(c).get_pin_retries())
    rec.update(retries=got[0], powerCycle=bool(got[1]))
    out["pinRetries"] = rec
    rec, got = run(version, inf, "v%d uv retries" % version, [ok({5: 2})],
                   lambda c: ClientPin(c).get_uv_retries())
    rec.update(retries=got[0])
    out["uvRetries"] = rec

    out["hmacSecret"] = []
    for i, salts in enumerate([[SALT1], [SALT1, SALT2]]):
        state = {}

        def hmac_get(ctap):
            ext = HmacSecretExtension(ctap)
            inputs = {"salt1": salts[0]}
            if len(salts) > 1:
                inputs["salt2"] = salts[1]
            state["input"] = ext.process_get_input({"hmacGetSecret": inputs})
            state["ext"] = ext

        rec, _ = run(version, inf, "v%d hmac-secret %d" % (version, i), [key_agreement_reply()], hmac_get)
        inp = state["input"]
        assert p.authenticate(ss, inp[2]) == inp[3]
        outputs = [fido2.utils.hmac_sha256(CRED_RANDOM, s) for s in salts]
        out_enc = authenticator_encrypt(version, ss, b"".join(outputs), "v%d hmac-secret reply %d" % (version, i))
        got = state["ext"].process_get_output(SimpleNamespace(extensions={"hmac-secret": out_enc}))["hmacGetSecret"]
        assert got["output1"] == outputs[0] and got.get("output2") == (outputs[1] if len(salts) > 1 else None)
        rec.update(salts=[h(s) for s in salts], input=h(cbor.encode(inp)), saltEnc=h(inp[2]), saltAuth=h(inp[3]),
                   credRandom=h(CRED_RANDOM), outputEnc=h(out_enc), outputs=[h(o) for o in outputs])
        out["hmacSecret"].append(rec)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "pin_vectors.json"),
                    help="output file, - for stdout")
    args = ap.parse_args()
    vectors = {
        "comment": "generated by gen_pin_vectors.py with python-fido2; do not edit",
        "pythonFido2": fido2.__version__,
        "authenticatorPrivateKey": h(AUTH_PRIV),
        "authenticatorKey": h(cbor.encode(cose(AUTH_KEY))),
        "platformPrivateKey": h(PLATFORM_PRIV),
        "platformKey": h(cbor.encode(cose(PLATFORM_KEY))),
        "protocols": [protocol_vectors(1), protocol_vectors(2)],
        "prf": [{"input": h(x), "salt": h(hashlib.sha256(b"WebAuthn PRF\x00" + x).digest())}
                for x in [b"", b"hello", bytes(range(64))]],
    }
    text = json.dumps(vectors, indent=1, ensure_ascii=True) + "\n"
    if args.o == "-":
        sys.stdout.write(text)
    else:
        with open(args.o, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
