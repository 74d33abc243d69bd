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
