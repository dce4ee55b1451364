"""python-fido2's extension code (HmacSecretExtension and its own PIN protocols) drives
the softkey's extensions over CTAPHID, as pyfido2_host.py does for the basics.
Usage: pyfido2_extensions.py 1|2 (the PIN/UV auth protocol). Progress and failures
go to stderr; the exit status says whether the scenario held.
"""
import os
import sys

from fido2.ctap import CtapError
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2

from pipehid import check, log, open_ctap
from pyfido2_host import ES256, RP

PIN = "1234"
PERMS = ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
NO_CREDENTIALS = 0x2E


def main(version):
    _, ctap = open_ctap()
    info = ctap.get_info()
    for name in ("credProtect", "hmac-secret", "credBlob", "largeBlobKey", "minPinLength"):
        check(name in info.extensions, "getInfo lacks %s: %r" % (name, info.extensions))
    check(info.max_cred_blob_length == 32, "maxCredBlobLength %r" % info.max_cred_blob_length)
    protocol = {1: PinProtocolV1, 2: PinProtocolV2}[version]()
    pin = ClientPin(ctap, protocol)
    pin.set_pin(PIN)

    def uv(cdh):
        # A fresh token each time: a token serves one user-present mc/ga.
        token = pin.get_pin_token(PIN, PERMS, RP["id"])
        return {"pin_uv_param": protocol.authenticate(token, cdh), "pin_uv_protocol": protocol.VERSION}

    def make(name, extensions, rk):
        cdh = os.urandom(32)
        att = ctap.make_credential(
            cdh, RP, {"id": name.encode(), "name": name}, ES256, extensions=extensions,
            options={"rk": True} if rk else None, **uv(cdh))
        return att

    def assert_(cred, extensions, with_uv, allow=True):
        cdh = os.urandom(32)
        kw = uv(cdh) if with_uv else {}
        allow_list = [{"type": "public-key", "id": cred.credential_id}] if allow else None
        a = ctap.get_assertion(RP["id"], cdh, allow_list=allow_list, extensions=extensions, **kw)
        a.verify(cdh, cred.public_key)
        check(bool(a.auth_data.flags & 0x04) == with_uv, "UV flag %r" % a.auth_data.flags)
        return a

    def secret(cred, with_uv, salt1, salt2=None):
        hs = HmacSecretExtension(ctap, protocol)
        salts = {"salt1": salt1}
        if salt2:
            salts["salt2"] = salt2
        a = assert_(cred, {"hmac-secret": hs.process_get_input({"hmacGetSecret": salts})}, with_uv)
        return hs.process_get_output(a.auth_data)["hmacGetSecret"]

    # hmac-secret on a non-resident credential.
    att = make("hmac", {"hmac-secret": True}, False)
    check(att.auth_data.extensions == {"hmac-secret": True}, "outputs %r" % att.auth_data.extensions)
    cred = att.auth_data.credential_data
    s1, s2 = os.urandom(32), os.urandom(32)
    plain = secret(cred, False, s1)["output1"]
    verified = secret(cred, True, s1)["output1"]
    check(len(plain) == 32 and len(verified) == 32, "32-byte outputs")
    check(plain != verified, "same output with and without UV")
    check(secret(cred, False, s1)["output1"] == plain, "output without UV not stable")
    both = secret(cred, True, s1, s2)
    check(both["output1"] == verified and both["output2"] not in (plain, verified), "two salts")
    log("hmac-secret: ok")

    # credProtect 3, credBlob and largeBlobKey on a discoverable credential.
    att = make("protected", {"credProtect": 3, "credBlob": b"python blob", "largeBlobKey": True}, True)
    check(att.auth_data.extensions == {"credProtect": 3, "credBlob": True}, "outputs %r" % att.auth_data.extensions)
    check(att.large_blob_key and len(att.large_blob_key) == 32, "largeBlobKey %r" % att.large_blob_key)
    cred = att.auth_data.credential_data
    for allow in (True, False):
        try:
            assert_(cred, None, False, allow)
            raise AssertionError("credProtect 3 credential returned without UV")
        except CtapError as e:
            check(e.code == NO_CREDENTIALS, "want NO_CREDENTIALS, got %r" % e)
    a = assert_(cred, {"credBlob": True, "largeBlobKey": True}, True)
    check(a.auth_data.extensions == {"credBlob": b"python blob"}, "outputs %r" % a.auth_data.extensions)
    check(a.large_blob_key == att.large_blob_key, "largeBlobKey differs")
    log("credProtect, credBlob, largeBlobKey: ok")

    # An oversized credBlob is refused, not stored.
    att = make("big", {"credBlob": os.urandom(33)}, False)
    check(att.auth_data.extensions == {"credBlob": False}, "outputs %r" % att.auth_data.extensions)
    a = assert_(att.auth_data.credential_data, {"credBlob": True}, False)
    check(a.auth_data.extensions == {"credBlob": b""}, "outputs %r" % a.auth_data.extensions)
    log("extensions protocol %d: ok" % version)


if __name__ == "__main__":
    main(int(sys.argv[1]))
