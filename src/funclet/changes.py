"""Telling the other nodes that a function changed, and hearing that one did.

A change is anything stored about one function: its code and configuration, its
reserved concurrency, provision target, async invoke config or triggers. The node that
makes it publishes the function's name; every other node re-reads what the database
holds for that function and applies it (``apply``). On PostgreSQL this is
``NOTIFY funclet_changes`` (a payload ``{"node", "function"}``) and a ``LISTEN`` on a
connection of each node's own; a node that (re)connects re-reads everything
(``resync``), so that nothing published while it was not listening is missed. SQLite
is one node: nothing to tell, nothing to hear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url

from funclet.store.writer import Writer

log = logging.getLogger(__name__)
CHANNEL = "funclet_changes"
_RECONNECT_S = 1.0
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class Changes:
    """Publishes this node's changes; applies the others' (see the module docstring)."""

    def __init__(self, url: str, node_id: str, writer: Writer,
                 apply: Callable[[str], Awaitable[None]],
                 resync: Callable[[], Awaitable[None]],
                 others: dict[str, Callable[[str], object]] | None = None) -> None:
        """``others``: more channels heard on the same connection, each with its handler
        (told every notice's payload, this node's own included)."""
        parsed = make_url(url)
        self.enabled = parsed.get_backend_name() == "postgresql"
        self._libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._node = node_id
        self._writer = writer
        self._apply = apply
        self._resync = resync
        self._others = others or {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def publish(self, function_name: str) -> None:
        """Tell the other nodes (after the change is committed)."""
        if not self.enabled:
            return
        await self.notify(CHANNEL, orjson.dumps({"node": self._node,
                                                 "function": function_name}).decode())

    async def notify(self, channel: str, payload: str) -> None:
        """``NOTIFY channel, payload`` (PostgreSQL only)."""
        if self.enabled:
            await self._writer.run(
                lambda conn: conn.execute(_NOTIFY, {"channel": channel, "payload": payload}))

    async def start(self) -> None:
        """Listen (PostgreSQL); returns once the first LISTEN is in place."""
        if not self.enabled:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen_forever())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._listening.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        import psycopg

        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._libpq, autocommit=True, connect_timeout=5) as conn:
                    for channel in (CHANNEL, *self._others):
                        await conn.execute(f"LISTEN {channel}")
                    if not first:  # what was published while this node was not listening
                        log.info("Listening for other nodes' changes again; re-reading "
                                 "every function.")
                        await self._resync()
                    first = False
                    self._listening.set()
                    async for notice in conn.notifies():
                        if notice.channel == CHANNEL:
                            await self._heard(notice.payload)
                        elif handler := self._others.get(notice.channel):
                            try:
                                handler(notice.payload)
                            except Exception:
                                log.exception("A notice on %s (%s) could not be handled.",
                                              notice.channel, notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Lost the database connection that hears other nodes' changes "
                            "(%s); reconnecting in %.0f s.", exc, _RECONNECT_S)
                first = False
            self._listening.set()  # (start does not wait for a database that is down)
            await asyncio.sleep(_RECONNECT_S)

    async def _heard(self, payload: str) -> None:
        try:
            change = orjson.loads(payload)
            if change.get("node") == self._node:
                return
            await self._apply(str(change["function"]))
        except Exception:
            log.exception("Applying another node's change (%s) failed.", payload)
