"""Instance lifecycle hooks: the initializer runs once per instance, preStop before it stops."""

import json
import time

state = {"initialized_at": None, "invocations": 0}


def initialize(context):
    # Runs once per instance, before its first invocation: open connections, load data.
    state["initialized_at"] = time.time()
    context.logger.info("instance initialised")


def handler(event, context):
    state["invocations"] += 1
    return json.dumps({"instance": state, "request": context.request_id})


def pre_stop(context):
    # Runs before the instance is reclaimed, replaced or shut down: flush, close.
    context.logger.info("instance stopping after %d invocations", state["invocations"])
