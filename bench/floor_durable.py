"""The async floor: a bare ASGI app that stores each request's body in SQLite (WAL,
``synchronous=NORMAL``, one commit per request, as funclet's store is set up) before it
answers 202, served by uvicorn exactly as funclet's API is."""

import os
import sqlite3
import uuid

_db = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None)
_db.execute("PRAGMA journal_mode=WAL")
_db.execute("PRAGMA synchronous=NORMAL")
_db.execute("CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, payload BLOB)")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    _db.execute("INSERT INTO tasks VALUES (?, ?)", (uuid.uuid4().hex, body))
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})
