import json


def handler(event, context):
    """Say hello to whoever the event names: {"name": "..."}."""
    name = json.loads(event or b"{}").get("name", "world")
    context.logger.info("saying hello to %s", name)
    return f"hello, {name}!"
