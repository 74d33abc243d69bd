"""The classic warm-instance trap: module-level code runs once per instance, not per call.

``LOADED_AT`` is computed when the instance starts. Every warm invocation reuses the
module, so this function answers the *same* time again and again. See time-fixed.
"""

import datetime

LOADED_AT = datetime.datetime.now(datetime.timezone.utc).isoformat()


def handler(event, context):
    return {"now": LOADED_AT}
