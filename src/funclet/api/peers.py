"""Who is on the other end of a loopback TCP connection: its owner's uid, from the
kernel's socket table (sock_diag over netlink), cached for a second.

Instances run as their own uid; this is how the API tells their requests apart from
the operator's when it listens on loopback without authentication.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_UID_OFFSET = 16 + 4 + 48 + 12  # nlmsghdr, inet_diag_msg's head, its sockid, 3 counters
_TTL = 1.0


class PeerUids:
    """``uid(client, server)``: the uid owning the client end of a TCP connection."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._cache: dict[tuple[str, int], tuple[float, int | None]] = {}

    def uid(self, client: tuple[str, int], server: tuple[str, int]) -> int | None:
        now = time.monotonic()
        hit = self._cache.get(client)
        if hit is not None and hit[0] > now:
            return hit[1]
        uid = self._lookup(client, server)
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[client] = (now + _TTL, uid)
        return uid

    def _lookup(self, client: tuple[str, int], server: tuple[str, int]) -> int | None:
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        try:
            src = socket.inet_pton(family, client[0]).ljust(16, b"\0")
            dst = socket.inet_pton(family, server[0]).ljust(16, b"\0")
        except OSError:
            return None
        sockid = (struct.pack("!HH", client[1], server[1]) + src + dst
                  + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE))
        request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY,
                             _NLM_F_REQUEST, 0, 0)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                           _NETLINK_SOCK_DIAG)
            self._sock.sendto(header + request, (0, 0))
            reply = self._sock.recv(8192)
        except OSError:
            with contextlib.suppress(OSError):
                if self._sock is not None:
                    self._sock.close()
            self._sock = None
            return None
        if len(reply) < _UID_OFFSET + 4 or struct.unpack_from("=H", reply, 4)[0] != (
            _SOCK_DIAG_BY_FAMILY
        ):
            return None
        return int(struct.unpack_from("=I", reply, _UID_OFFSET)[0])
