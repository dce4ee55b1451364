"""The link every python-fido2 interop script here shares with the Go tests: HID
reports as fixed 64-byte records on stdin/stdout, with the softkey's ctaphid.Server on
the other ends (runPython in pyfido2_test.go), and the scripts' log and check helpers.
The scripts run as testdata/NAME.py, so this directory is first on sys.path and
`from pipehid import ...` finds this module.
"""
import os
import sys
import time

from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

PACKET = 64


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


def open_device():
    """python-fido2's own CTAPHID device over the pipe (it sends CTAPHID_INIT), or
    its PC/SC device on the reader named in $CTAPKIT_PY_PCSC_READER, or its
    CTAPHID device over UDP datagrams to $CTAPKIT_PY_UDP_ADDR (udphid.py)."""
    udp_addr = os.environ.get("CTAPKIT_PY_UDP_ADDR")
    if udp_addr:
        from udphid import open_udp_device

        log("UDP:", udp_addr)
        return open_udp_device(udp_addr)
    reader = os.environ.get("CTAPKIT_PY_PCSC_READER")
    if reader:
        from fido2.pcsc import CtapPcscDevice

        # pcscd sees a new card on its next poll of the reader (~400 ms), as a
        # phone sees a tapped key: wait for it, up to 5 s.
        for _ in range(50):
            devs = list(CtapPcscDevice.list_devices(name=reader))
            if devs:
                break
            time.sleep(0.1)
        else:
            raise OSError("no FIDO card in reader %r" % reader)
        log("PC/SC:", devs[0])
        return devs[0]
    return CtapHidDevice(HidDescriptor("pipe", 0, 0, PACKET, PACKET), PipeConnection())


def is_pcsc(dev):
    return type(dev).__name__ == "CtapPcscDevice"


def open_ctap():
    """The device and python-fido2's CTAP2 client on it."""
    dev = open_device()
    return dev, Ctap2(dev)  # strict_cbor: non-canonical replies raise


def log(*args):
    """Progress to stderr, which the Go test logs (and shows on failure)."""
    print(*args, file=sys.stderr, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
