"""One write per response: a head held until its body, never past the loop's step."""

from __future__ import annotations

import asyncio
from typing import Any

from funclet.api.connections import _Coalescing


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def run(steps: Any) -> Recording:
    async def main() -> Recording:
        raw = Recording()
        await steps(_Coalescing(raw, asyncio.get_running_loop()), raw)  # type: ignore[arg-type]
        return raw
    return asyncio.run(main())


def test_a_head_and_its_body_go_out_in_one_write() -> None:
    async def steps(t: _Coalescing, raw: Recording) -> None:
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert raw.writes == [] and t.get_write_buffer_size() > 0
        t.write(b"hi")
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]
        await asyncio.sleep(0)
        assert len(raw.writes) == 1

    run(steps)


def test_a_streamed_head_goes_out_at_the_end_of_the_step_and_each_chunk_after_it() -> None:
    async def steps(t: _Coalescing, raw: Recording) -> None:
        t.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
        t.write(b"5\r\nhello\r\n")
        await asyncio.sleep(0.01)  # (a chunk later: not held past its step either)
        assert raw.writes[1:] == [b"5\r\nhello\r\n"]

    run(steps)


def test_close_sends_what_is_held_first_and_the_rest_is_the_transports() -> None:
    async def steps(t: _Coalescing, raw: Recording) -> None:
        t.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        t.close()
        assert raw.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and raw.closed
        assert t.get_extra_info("peername") == "info:peername"
        await asyncio.sleep(0)
        assert len(raw.writes) == 1

    run(steps)
