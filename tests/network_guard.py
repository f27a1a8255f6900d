"""Network guard used by ``conftest.py``: any non-loopback connection fails the test.

Loopback (127.0.0.0/8, ::1, ``localhost``) and Unix sockets stay allowed so tests can run local
servers and ``torch.distributed`` gloo groups.
"""

from __future__ import annotations

import ipaddress
import socket

_ALLOWED_HOSTNAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkAccessError(RuntimeError):
    """Raised when test code tries to reach a non-loopback address."""


def is_allowed_address(family: int, address) -> bool:
    """Whether a ``connect`` to ``address`` (socket family ``family``) stays on this machine."""
    if family == getattr(socket, "AF_UNIX", object()):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).split("%", 1)[0]
    if host.lower() in _ALLOWED_HOSTNAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a hostname other than localhost would need DNS: not allowed
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


class Guard:
    """Patches ``socket.socket.connect``/``connect_ex``/``sendto``; records blocked attempts."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self._saved: dict[str, object] = {}

    def _check(self, sock: socket.socket, address) -> None:
        if not is_allowed_address(sock.family, address):
            self.blocked.append(repr(address))
            raise NetworkAccessError(
                f"tests must not open network connections (attempted {address!r}); "
                "build artefacts locally and keep HF_HUB_OFFLINE=1"
            )

    def install(self) -> None:
        guard = self
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_sendto = socket.socket.sendto
        self._saved = {"connect": real_connect, "connect_ex": real_connect_ex, "sendto": real_sendto}

        def connect(sock, address):
            guard._check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            guard._check(sock, address)
            return real_connect_ex(sock, address)

        def sendto(sock, data, *args):
            guard._check(sock, args[-1])
            return real_sendto(sock, data, *args)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.socket.sendto = sendto  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for name, fn in self._saved.items():
            setattr(socket.socket, name, fn)
        self._saved = {}
