"""What an instance said just before it went away is read, even when the platform's
write to it fails first (asyncio's transport drops unread data on a write error)."""

from __future__ import annotations

import asyncio
import socket

from funclet.runtimes import protocol
from funclet.sandbox.channel import INIT, Channel, ChannelClosed


def test_a_frame_sent_before_the_instance_went_is_read_after_a_failed_write() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _, channel = await loop.connect_accepted_socket(lambda: Channel(sock=ours), ours)
        reply = channel.expect("1-abc")
        init = channel.expect(INIT)
        # The instance: reads nothing, says its init failed, and exits (the unread
        # frame resets the connection).
        channel.send({"type": protocol.INVOKE, "id": "1-abc"}, b"{}")
        theirs.sendall(protocol.encode({"type": protocol.INIT_ERROR, "log": "", "error": {
            "errorMessage": "boom", "errorType": "Runtime.ImportModuleError",
            "stackTrace": []}}))
        theirs.close()
        # The platform writes again before its read callback runs: broken pipe.
        channel.send({"type": protocol.INVOKE, "id": "1-def"}, b"{}")
        header, _ = await asyncio.wait_for(init, 5)
        assert header["type"] == protocol.INIT_ERROR
        assert header["error"]["errorMessage"] == "boom"
        try:
            await asyncio.wait_for(reply, 5)
        except ChannelClosed:
            pass
        else:
            raise AssertionError("the invocation got a reply from an instance that died")
        assert channel.is_closed

    asyncio.run(run())


def test_an_instance_that_floods_unasked_frames_is_ended() -> None:
    """``ready`` (or ``pre_stop_done``) frames nobody waits for are kept for a later
    ``expect``, but only a few: an instance sending them endlessly, each with a body,
    would grow the platform's memory without a bound."""
    async def run() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _, channel = await loop.connect_accepted_socket(lambda: Channel(sock=ours), ours)
        theirs.setblocking(False)
        frame = protocol.encode({"type": protocol.READY, "initMs": 1, "log": ""},
                                b"x" * 65536)
        sent = 0
        while not channel.is_closed and sent < 1000:
            try:
                theirs.sendall(frame)
                sent += 1
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            await asyncio.sleep(0)
        assert channel.is_closed, f"{sent} unasked frames were kept"
        assert sent < 50
        theirs.close()

    asyncio.run(run())
