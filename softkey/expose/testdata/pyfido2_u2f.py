"""python-fido2's CTAP1/U2F code against the softkey: its own APDU framing
(00 INS P1 P2 00 Lc1 Lc2 data 00 00, VERSION with a zero Lc), RegistrationData and
SignatureData verification, fido-u2f attestation, and credentials crossing between
U2F and CTAP2 in both directions. The device is 64-byte HID reports on stdin/stdout
(pipehid.py), as in pyfido2_host.py. Progress and failures go to stderr; the exit
status is the verdict.
"""
import hashlib
import os

from fido2.attestation import FidoU2FAttestation
from fido2.cose import ES256
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.ctap2 import AttestationObject, Ctap2

from pipehid import check, log, open_device

RP_ID = "example.com"
APP = hashlib.sha256(RP_ID.encode()).digest()


def expect_apdu_error(code, fn, *args):
    try:
        fn(*args)
    except ApduError as e:
        check(e.code == code, "want 0x%04X, got 0x%04X" % (code, e.code))
        return
    raise AssertionError("want 0x%04X, got success" % code)


def main():
    dev = open_device()
    ctap1 = Ctap1(dev)
    ctap2 = Ctap2(dev)

    version = ctap1.get_version()
    check(version == "U2F_V2", "version %r" % version)
    log("version", version)

    # U2F registration: python-fido2 verifies the signature and the fido-u2f statement.
    cp = os.urandom(32)
    reg = ctap1.register(cp, APP)
    reg.verify(APP, cp)
    att = AttestationObject.from_ctap1(APP, reg)
    result = FidoU2FAttestation().verify(att.att_statement, att.auth_data, cp)
    log("registered over U2F,", len(reg.key_handle), "byte key handle,", result.attestation_type.name)

    expect_apdu_error(APDU.USE_NOT_SATISFIED, ctap1.authenticate, cp, APP, reg.key_handle, True)
    expect_apdu_error(APDU.WRONG_DATA, ctap1.authenticate, cp, hashlib.sha256(b"other").digest(), reg.key_handle, True)
    tampered = bytes([reg.key_handle[0]]) + bytes([reg.key_handle[1] ^ 1]) + reg.key_handle[2:]
    expect_apdu_error(APDU.WRONG_DATA, ctap1.authenticate, cp, APP, tampered)

    cp2 = os.urandom(32)
    sig = ctap1.authenticate(cp2, APP, reg.key_handle)
    sig.verify(APP, cp2, reg.public_key)
    check(sig.user_presence == 1, "user presence %d" % sig.user_presence)
    log("authenticated over U2F, counter", sig.counter)

    # The U2F key handle in a CTAP2 allowList.
    cdh = os.urandom(32)
    ga = ctap2.get_assertion(RP_ID, cdh, allow_list=[{"type": "public-key", "id": reg.key_handle}])
    ga.verify(cdh, ES256.from_ctap1(reg.public_key))
    check(ga.auth_data.counter > sig.counter, "CTAP2 counter %d after U2F %d" % (ga.auth_data.counter, sig.counter))
    log("U2F credential asserted over CTAP2, counter", ga.auth_data.counter)

    # A non-resident CTAP2 credential over U2F.
    user = {"id": b"u2f-user", "name": "u2f"}
    mc = ctap2.make_credential(os.urandom(32), {"id": RP_ID}, user, [{"type": "public-key", "alg": -7}])
    cred = mc.auth_data.credential_data
    cp3 = os.urandom(32)
    sig = ctap1.authenticate(cp3, APP, cred.credential_id)
    cred.public_key.verify(APP + sig[:5] + cp3, sig.signature)
    log("CTAP2 credential authenticated over U2F, counter", sig.counter)


if __name__ == "__main__":
    main()
