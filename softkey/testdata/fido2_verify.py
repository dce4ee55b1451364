"""Checks softkey responses with python-fido2, an independent CTAP2 implementation.

Usage: fido2_verify.py MC_HEX CDH1_HEX GA_HEX CDH2_HEX
MC_HEX and GA_HEX are raw makeCredential and getAssertion responses (CBOR, no
status byte). Prints "ok <attestation type>" or exits non-zero with the reason.
"""
import sys

from fido2 import cbor
from fido2.attestation import NoneAttestation, PackedAttestation
from fido2.ctap2 import AssertionResponse, AttestationObject


def canonical(name, data):
    # python-fido2's Ctap2 refuses responses that do not re-encode to the same bytes.
    if cbor.encode(cbor.decode(data)) != data:
        sys.exit(name + ": not canonical CBOR")


mc, cdh1, ga, cdh2 = (bytes.fromhex(a) for a in sys.argv[1:5])
canonical("makeCredential", mc)
canonical("getAssertion", ga)

att = AttestationObject(mc)
verifier = {"packed": PackedAttestation, "none": NoneAttestation}[att.fmt]()
result = verifier.verify(att.att_statement, att.auth_data, cdh1)

cred = att.auth_data.credential_data
assertion = AssertionResponse(ga)
if assertion.credential["id"] != cred.credential_id:
    sys.exit("assertion names another credential")
if assertion.auth_data.rp_id_hash != att.auth_data.rp_id_hash:
    sys.exit("rpIdHash differs")
if not assertion.auth_data.counter > att.auth_data.counter:
    sys.exit("counter did not increase")
assertion.verify(cdh2, cred.public_key)  # raises on a bad signature
print("ok", result.attestation_type.name)
