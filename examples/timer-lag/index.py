"""The timer trap: a job that runs longer than its timer's period.

The timer fires every second; the job takes 3 seconds and runs one at a time
(reservedConcurrency 1). Fires queue up and start later and later. A job that asked
the clock (``datetime.now()``) which window to process would skip and repeat windows;
this one reads the *scheduled* time from the event, so every window is processed once.
Its log prints the lag between the scheduled time and the actual start.
"""

import datetime
import json
import time

PERIOD = datetime.timedelta(seconds=1)


def handler(event, context):
    started = datetime.datetime.now(datetime.timezone.utc)
    fire = json.loads(event)
    scheduled = datetime.datetime.fromisoformat(fire["triggerTime"].replace("Z", "+00:00"))
    lag = (started - scheduled).total_seconds()
    # The window this fire stands for ends at its scheduled time, not at "now".
    window = (scheduled - PERIOD, scheduled)
    print(f"fire {fire['triggerTime']} started {started:%H:%M:%S.%f}Z, lag {lag:.1f} s, "
          f"processing {window[0]:%H:%M:%S}-{window[1]:%H:%M:%S}")
    time.sleep(3)  # the work
    return {"triggerTime": fire["triggerTime"], "lagSeconds": round(lag, 3),
            "window": [window[0].isoformat(), window[1].isoformat()]}
