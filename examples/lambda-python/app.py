"""A plain AWS Lambda handler: nothing in it knows about funclet.

    .venv/bin/funclet invoke lambda-python --payload '{"name": "funclet"}'
"""


def handler(event, context):
    print(f"request {context.aws_request_id}, {context.get_remaining_time_in_millis()} ms left")
    return {"message": f"hello, {event.get('name', 'world')}!",
            "function": context.function_name, "memory": context.memory_limit_in_mb}
