"""python-fido2 as an independent host: its own CTAPHID and CTAP2 code drives the
softkey through 64-byte packets on stdin/stdout (the Go test serves the softkey's
ctaphid.Server on the other ends). Usage: pyfido2_host.py SCENARIO. Progress and
failures go to stderr; the exit status says whether the scenario held.
"""
import hashlib
import os
import sys

from fido2.attestation import PackedAttestation
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

PACKET = 64
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


class PipeConnection(CtapHidConnection):
    """HID reports as fixed 64-byte records on stdin/stdout."""

    def read_packet(self):
        data = sys.stdin.buffer.read(PACKET)
        if len(data) != PACKET:
            raise OSError("softkey closed the pipe")
        return data

    def write_packet(self, data):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def close(self):
        pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def open_ctap():
    dev = CtapHidDevice(HidDescriptor("pipe", 0, 0, PACKET, PACKET), PipeConnection())
    return dev, Ctap2(dev)  # strict_cbor: non-canonical replies raise


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

    # large PING through CTAPHID fragmentation
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


SCENARIOS = {
    "basic": scenario_basic,
    "pin1": lambda: scenario_pin(1),
    "pin2": lambda: scenario_pin(2),
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
