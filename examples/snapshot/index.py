"""A function whose start-up is slow (module code and an initializer standing for heavy
imports), started from a snapshot: the first cold start pays it once, in the template;
every later new instance is forked from it, ready in milliseconds.

    .venv/bin/funclet deploy examples/snapshot
    .venv/bin/funclet invoke snapshot      # "ready since" stays the template's time
"""

import os
import random
import time

from snapshot_restore_py import register_after_restore, register_before_snapshot

time.sleep(0.3)  # stands for importing a large library
TABLE = {i: i * i for i in range(100_000)}  # module-level state, carried by the snapshot
READY_SINCE = time.strftime("%H:%M:%S")
restored_at = None


def initialize(context):
    context.logger.info("initializer: runs once, in the template")


@register_before_snapshot
def before_snapshot():
    print("before the snapshot: close what a copy must not share (sockets, files)")


@register_after_restore
def after_restore():
    global restored_at
    restored_at = time.strftime("%H:%M:%S")  # reopen connections here


def handler(event, context):
    return (f"ready since {READY_SINCE}, restored at {restored_at} as "
            f"{os.environ['FC_INSTANCE_ID']}, a random number of its own: "
            f"{random.random():.6f}\n")
