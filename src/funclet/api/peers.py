"""Who is on the other end of a loopback TCP connection: its owner's uid, from the
kernel's socket table (sock_diag over netlink), asked once per connection.

Instances run as their own uids; this is how the API tells their requests apart from
the operator's when it listens on loopback without authentication. An answer is only
given for a live socket that some process owns: a connection that was reset (no entry)
or closed right after its request (an orphan, or ``TIME_WAIT``: the kernel reports
inode 0 and uid 0 for those) has no owner, and ``uid`` says ``None``. An answer is kept
with the connection it is about (``of``: the server's protocol gives each connection a
dict of its own, at ``scope[CONNECTION]``), since a socket's owner is set when it is
made and never changes, and every request of a keep-alive connection comes from that
socket; never by address, which would hand a closed connection's answer to the next
socket that binds the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Mapping
from typing import Any

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_UID_OFFSET = 16 + 4 + 48 + 12  # nlmsghdr, inet_diag_msg's head, its sockid, 3 counters
_INODE_OFFSET = _UID_OFFSET + 4
CONNECTION = "funclet.peer"  # the scope's key for its connection's own dict


class PeerUids:
    """``uid(client, server)``: the uid owning the client end of a TCP connection, or
    ``None`` when no live socket owned by a process has that address."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def of(self, scope: Mapping[str, Any]) -> int | None:
        """The uid owning the client end of a request's connection (see the module
        docstring): asked on its first request, kept for the rest."""
        kept = scope.get(CONNECTION)
        if kept is not None and "uid" in kept:
            return int(kept["uid"])
        client, server = scope.get("client"), scope.get("server")
        uid = self.uid((client[0], client[1]), (server[0], server[1])) if (
            client and server) else None
        if kept is not None and uid is not None:
            kept["uid"] = uid
        return uid

    def uid(self, client: tuple[str, int], server: tuple[str, int]) -> int | None:
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
                self._sock.settimeout(1.0)  # the kernel answers at once; never hang the loop
            self._sock.sendto(header + request, (0, 0))
            reply = self._sock.recv(8192)
        except OSError:
            with contextlib.suppress(OSError):
                if self._sock is not None:
                    self._sock.close()
            self._sock = None
            return None
        if len(reply) < _INODE_OFFSET + 4 or struct.unpack_from("=H", reply, 4)[0] != (
            _SOCK_DIAG_BY_FAMILY
        ):
            return None
        uid, inode = struct.unpack_from("=II", reply, _UID_OFFSET)
        return int(uid) if inode else None
