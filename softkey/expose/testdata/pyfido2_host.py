"""python-fido2 as an independent host: its own CTAPHID and CTAP2 code drives the
softkey through 64-byte packets on stdin/stdout (pipehid.py; the Go test serves the
softkey's ctaphid.Server on the other ends). Usage: pyfido2_host.py SCENARIO.
Progress and failures go to stderr; the exit status says whether the scenario held.
"""
import hashlib
import os
import sys

from fido2.attestation import PackedAttestation
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
import struct

from fido2 import cbor
from fido2.attestation import AttestationType
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2.base import AttestationObject, args
from fido2.ctap2.blob import LargeBlobs
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.utils import sha256

from pipehid import check, is_pcsc, log, open_ctap

RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


def register(ctap, name, rk, **kw):
    cdh = os.urandom(32)
    user = {"id": hashlib.sha256(name.encode()).digest()[:16], "name": name}
    att = ctap.make_credential(cdh, RP, user, ES256, options={"rk": rk} if rk else None, **kw)
    result = PackedAttestation().verify(att.att_statement, att.auth_data, cdh)
    log("registered", name, "rk" if rk else "non-rk", result.attestation_type.name)
    return att


def scenario_basic():
    dev, ctap = open_ctap()
    check(dev.capabilities & 0x04, "CBOR capability")
    info = ctap.get_info()
    check("FIDO_2_0" in info.versions, "versions %r" % info.versions)
    check(info.options.get("rk"), "rk option")
    log("getInfo", info.versions, info.aaguid.hex())

    a1 = register(ctap, "alice", True)
    a2 = register(ctap, "bob", True)
    nr = register(ctap, "carol", False)

    # discoverable: both accounts, newest first, via getNextAssertion
    cdh = os.urandom(32)
    assertions = ctap.get_assertions(RP["id"], cdh)
    check(len(assertions) == 2, "%d assertions" % len(assertions))
    keys = {a.auth_data.credential_data.credential_id: a.auth_data.credential_data.public_key for a in (a1, a2)}
    last = 0
    for a in assertions:
        a.verify(cdh, keys[a.credential["id"]])
        check(a.auth_data.counter > last, "counter increases")
        last = a.auth_data.counter
    check(assertions[0].credential["id"] == a2.auth_data.credential_data.credential_id, "newest first")

    # non-resident with allowList
    cred = nr.auth_data.credential_data
    a = ctap.get_assertion(RP["id"], cdh, allow_list=[{"type": "public-key", "id": cred.credential_id}])
    a.verify(cdh, cred.public_key)
    check(a.auth_data.counter > last, "counter increases")

    # another RP sees nothing
    try:
        ctap.get_assertion("evil.example", cdh, allow_list=[{"type": "public-key", "id": cred.credential_id}])
        raise AssertionError("credential usable for another RP")
    except Exception as e:  # CtapError
        check(getattr(e, "code", None) == 0x2E, "want NO_CREDENTIALS, got %r" % e)

    # large PING through CTAPHID fragmentation (PC/SC has no PING)
    if not is_pcsc(dev):
        payload = os.urandom(7609)
        check(dev.call(0x01, payload) == payload, "PING echo")
    log("basic: ok")


def scenario_pin(version):
    _, ctap = open_ctap()
    info = ctap.get_info()
    check("clientPin" in info.options, "softkey has no clientPin option")
    protocol = {1: PinProtocolV1, 2: PinProtocolV2}[version]()
    check(protocol.VERSION in info.pin_uv_protocols, "protocol %d not offered" % version)
    pin = ClientPin(ctap, protocol)
    check(pin.get_pin_retries()[0] == 8, "8 retries")
    pin.set_pin("1234")
    check(ctap.get_info().options["clientPin"], "clientPin true after setPIN")
    perms = ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
    try:
        # With permissions: python-fido2 0.9 sends getPinUvAuthTokenUsingPinWithPermissions
        # without its mandatory permissions otherwise (MISSING_PARAMETER on a 2.1 key).
        pin.get_pin_token("9999", perms, RP["id"])
        raise AssertionError("wrong PIN accepted")
    except Exception as e:
        check(getattr(e, "code", None) == 0x31, "want PIN_INVALID, got %r" % e)
    check(pin.get_pin_retries()[0] == 7, "retries decremented")
    pin.change_pin("1234", "56789")
    check(pin.get_pin_retries()[0] == 8, "retries back to 8")

    token = pin.get_pin_token("56789", perms, RP["id"])
    cdh = os.urandom(32)
    att = ctap.make_credential(
        cdh, RP, {"id": b"dave", "name": "dave"}, ES256,
        pin_uv_param=protocol.authenticate(token, cdh), pin_uv_protocol=protocol.VERSION)
    check(att.auth_data.flags & 0x04, "UV flag after PIN")
    PackedAttestation().verify(att.att_statement, att.auth_data, cdh)
    log("pin protocol %d: ok" % version)


PIN = "1234"
PERM = ClientPin.PERMISSION
OTHER_RP = {"id": "other.example", "name": "Other"}


def expect_error(code, what, fn, *a, **kw):
    """Runs fn and checks that it fails with CTAP status code."""
    try:
        fn(*a, **kw)
    except CtapError as e:
        check(e.code == code, "%s: want status 0x%02x, got %r" % (what, code, e))
        return
    raise AssertionError("%s: succeeded, want status 0x%02x" % (what, code))


def with_pin(ctap, pin=PIN):
    """Sets the PIN with protocol 2 and returns (protocol, ClientPin)."""
    protocol = PinProtocolV2()
    client_pin = ClientPin(ctap, protocol)
    client_pin.set_pin(pin)
    return protocol, client_pin


def register_protected(ctap, protocol, client_pin, rp, name, **kw):
    """A discoverable credential on a protected authenticator (mc token, UV)."""
    token = client_pin.get_pin_token(PIN, PERM.MAKE_CREDENTIAL, rp["id"])
    cdh = os.urandom(32)
    user = {"id": name.encode(), "name": name, "displayName": name.title()}
    att = ctap.make_credential(
        cdh, rp, user, ES256, options={"rk": True},
        pin_uv_param=protocol.authenticate(token, cdh), pin_uv_protocol=protocol.VERSION, **kw)
    PackedAttestation().verify(att.att_statement, att.auth_data, cdh)
    return att


def descriptor(att):
    return {"type": "public-key", "id": att.auth_data.credential_data.credential_id}


def scenario_credman():
    """python-fido2's CredentialManagement: metadata, RPs, credentials (their keys
    verify assertions), the GetNext state, update, delete, and the permission and
    RP-binding rules."""
    _, ctap = open_ctap()
    opts = ctap.info.options
    check(opts.get("credMgmt") and opts.get("credentialMgmtPreview"), "credMgmt options %r" % opts)
    protocol, client_pin = with_pin(ctap)
    atts = {n: register_protected(ctap, protocol, client_pin, RP, n) for n in ("alice", "bob")}
    atts["carol"] = register_protected(ctap, protocol, client_pin, OTHER_RP, "carol")
    R = CredentialManagement.RESULT

    # Tokens without cm, or bound to an RP, cannot do what needs an unbound cm token.
    ga = CredentialManagement(ctap, protocol, client_pin.get_pin_token(PIN, PERM.GET_ASSERTION, RP["id"]))
    expect_error(0x33, "getCredsMetadata with a ga token", ga.get_metadata)
    bound = CredentialManagement(ctap, protocol, client_pin.get_pin_token(PIN, PERM.CREDENTIAL_MGMT, RP["id"]))
    expect_error(0x33, "getCredsMetadata with an RP-bound token", bound.get_metadata)
    expect_error(0x33, "enumerateRPs with an RP-bound token", bound.enumerate_rps)
    expect_error(0x33, "deleting another RP's credential", bound.delete_cred, descriptor(atts["carol"]))
    check(len(bound.enumerate_creds(sha256(RP["id"].encode()))) == 2, "RP-bound token lists its RP")

    cm = CredentialManagement(ctap, protocol, client_pin.get_pin_token(PIN, PERM.CREDENTIAL_MGMT))
    md = cm.get_metadata()
    check(md[R.EXISTING_CRED_COUNT] == 3 and md[R.MAX_REMAINING_COUNT] > 0, "metadata %r" % md)
    rps = cm.enumerate_rps()
    check([r[R.RP]["id"] for r in rps] == [RP["id"], OTHER_RP["id"]], "RPs %r" % rps)
    for r in rps:
        check(r[R.RP_ID_HASH] == sha256(r[R.RP]["id"].encode()), "rpIDHash of %r" % r)
    creds = cm.enumerate_creds(sha256(RP["id"].encode()))
    check(len(creds) == 2, "%d credentials" % len(creds))
    keys = {}
    for c in creds:
        name = c[R.USER]["name"]
        cd = atts[name].auth_data.credential_data
        check(c[R.CREDENTIAL_ID]["id"] == cd.credential_id, "credential ID of " + name)
        check(c[R.USER]["id"] == name.encode() and c[R.USER]["displayName"] == name.title(), "user %r" % c[R.USER])
        check(CoseKey.parse(c[R.PUBLIC_KEY]) == cd.public_key, "public key of " + name)
        check(c.get(R.CRED_PROTECT, 1) == 1, "credProtect of " + name)
        keys[name] = CoseKey.parse(c[R.PUBLIC_KEY])

    # GetNext must directly follow its Begin: not even getInfo in between.
    cm.enumerate_rps_begin()
    ctap.get_info()
    expect_error(0x30, "GetNextRP after getInfo", cm.enumerate_rps_next)

    alice = descriptor(atts["alice"])
    cm.update_user_info(alice, {"id": b"alice", "name": "alice@new", "displayName": "Alice New"})
    expect_error(0x02, "updateUserInformation with another user ID", cm.update_user_info, alice, {"id": b"mallory", "name": "m"})
    users = {c[R.USER]["id"]: c[R.USER] for c in cm.enumerate_creds(sha256(RP["id"].encode()))}
    check(users[b"alice"] == {"id": b"alice", "name": "alice@new", "displayName": "Alice New"}, "updated user %r" % users)

    cm.delete_cred(alice)
    creds = cm.enumerate_creds(sha256(RP["id"].encode()))
    check([c[R.USER]["id"] for c in creds] == [b"bob"], "after delete %r" % creds)
    check(cm.get_metadata()[R.EXISTING_CRED_COUNT] == 2, "count after delete")
    cdh = os.urandom(32)
    expect_error(0x2E, "assertion with the deleted credential", ctap.get_assertion, RP["id"], cdh, allow_list=[alice])
    a = ctap.get_assertion(RP["id"], cdh, allow_list=[descriptor(atts["bob"])])
    a.verify(cdh, keys["bob"])  # with the key credential management reported
    log("credman: ok")


def enterprise_mc(ctap, value):
    """makeCredential with enterpriseAttestation (0x0A), which python-fido2 0.9 has
    no parameter for."""
    cdh = os.urandom(32)
    att = ctap.send_cbor(
        Ctap2.CMD.MAKE_CREDENTIAL,
        args(cdh, RP, {"id": b"ent", "name": "ent"}, ES256, None, None, None, None, None, value),
        parse=AttestationObject)
    return cdh, att


def scenario_config():
    """python-fido2's Config: toggleAlwaysUv without auth while unprotected, then
    only with an acfg token; setMinPINLength grows only and forces a PIN change;
    enterprise attestation once enabled."""
    _, ctap = open_ctap()
    info = ctap.info
    check(info.options.get("authnrCfg") and info.options.get("setMinPINLength"), "options %r" % info.options)
    check(info.options.get("alwaysUv") is False and info.options.get("ep") is False, "options %r" % info.options)
    check(info.max_rpids_for_min_pin >= 1, "maxRPIDsForSetMinPINLength %r" % info.max_rpids_for_min_pin)

    Config(ctap).toggle_always_uv()  # unprotected: no token needed
    check(ctap.get_info().options["alwaysUv"], "alwaysUv on")
    expect_error(0x36, "toggleAlwaysUv under alwaysUv without a token", Config(ctap).toggle_always_uv)
    protocol, client_pin = with_pin(ctap, "123456")
    mcga = client_pin.get_pin_token("123456", PERM.MAKE_CREDENTIAL | PERM.GET_ASSERTION, RP["id"])
    expect_error(0x33, "config with an mc/ga token", Config(ctap, protocol, mcga).toggle_always_uv)
    cfg = Config(ctap, protocol, client_pin.get_pin_token("123456", PERM.AUTHENTICATOR_CFG))
    cfg.toggle_always_uv()
    check(not ctap.get_info().options["alwaysUv"], "alwaysUv off")

    cfg.set_min_pin_length(rp_ids=[RP["id"]])
    cfg.set_min_pin_length(min_pin_length=8)
    info = ctap.get_info()
    check(info.min_pin_length == 8 and info.force_pin_change, "minPINLength %d, forcePINChange %r" % (info.min_pin_length, info.force_pin_change))
    expect_error(0x37, "shrinking the minimum PIN length", cfg.set_min_pin_length, min_pin_length=6)
    expect_error(0x37, "a token before the forced PIN change", client_pin.get_pin_token, "123456", PERM.AUTHENTICATOR_CFG)

    expect_error(0x02, "enterprise attestation while ep is off", enterprise_mc, ctap, 2)
    cfg._call(Config.CMD.ENABLE_ENTERPRISE_ATT)  # python-fido2 0.9 has no method for it
    check(ctap.get_info().options["ep"], "ep on")
    cdh, att = enterprise_mc(ctap, 2)
    result = PackedAttestation().verify(att.att_statement, att.auth_data, cdh)
    check(att.ep_att is True and result.attestation_type == AttestationType.BASIC,
          "epAtt %r, attestation %r" % (att.ep_att, result.attestation_type))
    expect_error(0x2C, "enterpriseAttestation 3", enterprise_mc, ctap, 3)

    client_pin.change_pin("123456", "12345678")
    check(not ctap.get_info().force_pin_change, "forcePINChange after the change")
    log("config: ok")


def scenario_blobs():
    """python-fido2's LargeBlobs with a largeBlobKey from the softkey: unprotected
    writes without a token; with a PIN only an lbw token writes; a bad trailer is
    refused and changes nothing."""
    _, ctap = open_ctap()
    check(ctap.info.options.get("largeBlobs") and (ctap.info.max_large_blob or 0) >= 1024, "largeBlobs %r" % ctap.info.data)
    check("largeBlobKey" in ctap.info.extensions, "extensions %r" % ctap.info.extensions)
    att = ctap.make_credential(os.urandom(32), RP, {"id": b"blobby", "name": "blobby"}, ES256,
                               extensions={"largeBlobKey": True}, options={"rk": True})
    key = att.large_blob_key
    check(key is not None and len(key) == 32, "largeBlobKey %r" % key)

    lb = LargeBlobs(ctap)
    check(lb.read_blob_array() == [], "initial array")
    data = b"python-fido2 wrote this. " * 20
    lb.put_blob(key, data)
    check(lb.get_blob(key) == data, "blob read back")

    protocol, client_pin = with_pin(ctap)
    expect_error(0x36, "write without a token", LargeBlobs(ctap).put_blob, os.urandom(32), b"x")
    cm = client_pin.get_pin_token(PIN, PERM.CREDENTIAL_MGMT)
    expect_error(0x33, "write with a cm token", LargeBlobs(ctap, protocol, cm).put_blob, os.urandom(32), b"y")
    token = client_pin.get_pin_token(PIN, PERM.LARGE_BLOB_WRITE)
    lb = LargeBlobs(ctap, protocol, token)
    other = os.urandom(32)
    lb.put_blob(other, b"second blob")
    check(lb.get_blob(key) == data and lb.get_blob(other) == b"second blob", "two blobs")
    check(len(lb.read_blob_array()) == 2, "two entries")

    bad = cbor.encode([]) + b"\0" * 16
    msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", 0) + sha256(bad)
    expect_error(0x3D, "an array with a bad trailer", ctap.large_blobs, 0, set=bad, length=len(bad),
                 pin_uv_protocol=protocol.VERSION, pin_uv_param=protocol.authenticate(token, msg))
    check(len(lb.read_blob_array()) == 2, "entries after the refused write")
    lb.delete_blob(other)
    check(lb.get_blob(other) is None and lb.get_blob(key) == data, "after delete")
    log("blobs: ok")


SCENARIOS = {
    "basic": scenario_basic,
    "pin1": lambda: scenario_pin(1),
    "pin2": lambda: scenario_pin(2),
    "credman": scenario_credman,
    "config": scenario_config,
    "blobs": scenario_blobs,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
