"""python-fido2's WebAuthn client against the softkey served as a U2F-only key
(CTAPHID INIT without the CBOR capability): python-fido2 must see no CTAP2, fall back
to its CTAP1 backend, and register (fido-u2f attestation) and sign in through U2F,
as it does with old keys. The device is 64-byte HID reports on stdin/stdout
(pipehid.py), as in pyfido2_host.py. Progress and failures go to stderr; the exit
status is the verdict.
"""
import os

from fido2.attestation import FidoU2FAttestation
from fido2.client import ClientError, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY

from pipehid import check, log, open_device

RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-1", "name": "alice"}


def main():
    dev = open_device()
    check(not dev.capabilities & CAPABILITY.CBOR, "capabilities 0x%02x include CBOR" % dev.capabilities)
    check(not dev.capabilities & CAPABILITY.NMSG, "capabilities 0x%02x exclude MSG" % dev.capabilities)
    try:
        Ctap2(dev)
        raise AssertionError("Ctap2 accepted a U2F-only device")
    except ValueError:
        pass
    log("capabilities 0x%02x: no CBOR" % dev.capabilities)

    client = Fido2Client(dev, "https://example.com")
    client.ctap1_poll_delay = 0.01
    check(client.info.versions == ["U2F_V2"], "client info %r" % client.info.versions)

    reg = client.make_credential({
        "rp": RP, "user": USER, "challenge": os.urandom(32),
        "pubKeyCredParams": [{"type": "public-key", "alg": -8}, {"type": "public-key", "alg": -7}],
    })
    att = reg.attestation_object
    check(att.fmt == "fido-u2f", "fmt %r" % att.fmt)
    result = FidoU2FAttestation().verify(att.att_statement, att.auth_data, reg.client_data.hash)
    cred = att.auth_data.credential_data
    log("registered over U2F:", att.fmt, result.attestation_type.name, len(cred.credential_id), "byte credential ID")

    counters = []
    for _ in range(2):
        sel = client.get_assertion({
            "rpId": RP["id"], "challenge": os.urandom(32),
            "allowCredentials": [{"type": "public-key", "id": b"\x01" * 16},
                                 {"type": "public-key", "id": cred.credential_id}],
        })
        a = sel.get_assertions()[0]
        a.verify(sel.get_response(0).client_data.hash, cred.public_key)
        check(a.auth_data.is_user_present(), "no UP")
        counters.append(a.auth_data.counter)
    check(counters[1] > counters[0], "counters %r" % counters)
    log("signed in over U2F, counters", counters)

    # What U2F cannot do is refused: a resident key.
    try:
        client.make_credential({
            "rp": RP, "user": USER, "challenge": os.urandom(32),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"requireResidentKey": True},
        })
        raise AssertionError("resident key made over U2F")
    except (ClientError, CtapError) as e:
        log("resident key refused:", e)


if __name__ == "__main__":
    main()
