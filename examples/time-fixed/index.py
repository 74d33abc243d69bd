"""The fix for time-trap: read the clock inside the handler, on every invocation.

Module level is the place for what *should* be shared across warm invocations
(clients, connections, loaded models), never for per-request values.
"""

import datetime


def handler(event, context):
    return {"now": datetime.datetime.now(datetime.timezone.utc).isoformat()}
