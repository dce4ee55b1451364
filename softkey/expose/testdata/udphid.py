"""python-fido2's own CTAPHID device over the UDP convention of authenticator
simulators: one 64-byte report per datagram, no report ID, to the simulator's
address (the Go tests: expose.ServeUDP). python-fido2 0.9 has no UDP device class,
so this is the CtapHidConnection it lacks; everything above it (INIT, framing,
keepalives, CTAP2) is python-fido2's.
"""
import socket

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

PACKET = 64


class UdpConnection(CtapHidConnection):
    """Reports as datagrams on a socket connected to the simulator, so that only
    its datagrams are read."""

    def __init__(self, host, port, local=("127.0.0.1", 0)):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(local)
        self.sock.connect((host, port))
        self.sock.settimeout(5.0)

    def read_packet(self):
        while True:
            data = self.sock.recv(PACKET + 1)
            if len(data) == PACKET:
                return data
            # not one report: dropped, as the convention says

    def write_packet(self, data):
        self.sock.send(bytes(data).ljust(PACKET, b"\0"))

    def close(self):
        self.sock.close()


def open_udp_device(addr):
    """The CTAPHID device at HOST:PORT."""
    host, port = addr.rsplit(":", 1)
    return CtapHidDevice(HidDescriptor("udp:" + addr, 0, 0, PACKET, PACKET), UdpConnection(host, int(port)))
