"""``funclet trigger add|ls|info|rm``: a function's triggers."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import typer

from funclet.cli.client import (
    DEFAULT_ENDPOINT,
    CliError,
    Endpoint,
    Output,
    client_for,
    group,
    out,
    show,
)

app = group("Add, list, show and remove a function's triggers.")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The function.")],
    trigger: Annotated[str, typer.Argument(help="The trigger's name.")],
    kind: Annotated[str, typer.Option(
        "--type", help="timer, http, redis, rabbitmq, nats or mqtt.")],
    config: Annotated[str | None, typer.Option(
        help="triggerConfig as JSON, e.g. '{\"cronExpression\": \"@every 1m\"}'.")] = None,
    cron: Annotated[str | None, typer.Option(
        help="timer: '@every 5m' or six cron fields, seconds first.")] = None,
    payload: Annotated[str | None, typer.Option(help="timer: the event's payload.")] = None,
    enable: Annotated[bool | None, typer.Option(
        "--enable/--disable", help="timer: fire, or not [default: as it is; new: fire].")]
    = None,
    auth: Annotated[str | None, typer.Option(help="http: anonymous or function.")] = None,
    methods: Annotated[str | None, typer.Option(help="http: e.g. GET,POST.")] = None,
    url: Annotated[str | None, typer.Option(help="message queue: the broker's URL.")] = None,
    source: Annotated[str | None, typer.Option(
        help="message queue: the stream, queue, subject or topic.")] = None,
    description: Annotated[str, typer.Option()] = "",
    update: Annotated[bool, typer.Option(
        "--update", help="Change the trigger if it exists.")] = False,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Add a trigger (or, with --update, change one)."""
    body: dict[str, Any] = {"triggerName": trigger, "triggerType": kind,
                            "description": description}
    try:
        settings: Any = orjson.loads(config) if config else {}
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--config is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise CliError("--config must be a JSON object, e.g. '{\"cronExpression\": "
                       "\"@every 1m\"}'")
    for key, value in (("cronExpression", cron), ("payload", payload), ("authType", auth),
                       ("url", url)):
        if value is not None:
            settings[key] = value
    if enable is not None:
        settings["enable"] = enable
    if methods is not None:
        settings["methods"] = [m.strip().upper() for m in methods.split(",") if m.strip()]
    if source is not None:
        field = {"redis": "stream", "rabbitmq": "queue", "nats": "subject", "mqtt": "topic"}
        if kind not in field:
            raise CliError("--source is for message-queue triggers")
        settings[field[kind]] = source
    client = client_for(endpoint)
    path = f"/functions/{name}/triggers"
    if update:  # the flags change those fields; the rest of the config stays
        current = client.json("GET", f"{path}/{trigger}")
        body["triggerConfig"] = {**orjson.loads(current["triggerConfig"]), **settings}
        body.pop("triggerName")
        if not description:
            body.pop("description")
        out.print_json(data=client.json("PUT", f"{path}/{trigger}", json=body))
    else:
        body["triggerConfig"] = settings
        out.print_json(data=client.json("POST", path, json=body))


@app.command("ls")
def list_triggers(name: str, output: Output = "table",
                  endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """List a function's triggers (passwords in broker URLs shown as ***)."""
    items = [_masked(t) for t in client_for(endpoint).pages(f"/functions/{name}/triggers",
                                                            "triggers")]
    show(["trigger", "type", "status", "config"],
         [[t["triggerName"], t["triggerType"], t.get("status", ""), t["triggerConfig"]]
          for t in items], items, output)


def _masked(trigger: dict[str, Any]) -> dict[str, Any]:
    """A trigger whose broker URL's password is replaced by ***."""
    try:
        config = orjson.loads(trigger["triggerConfig"])
    except (orjson.JSONDecodeError, TypeError):
        return trigger
    if isinstance(config, dict) and isinstance(config.get("url"), str):
        parts = urlsplit(config["url"])
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (
                f":{parts.port}" if parts.port else "")
            config["url"] = urlunsplit(parts._replace(netloc=netloc))
            return {**trigger, "triggerConfig": orjson.dumps(config).decode()}
    return trigger


@app.command("info")
def info(name: str, trigger: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Show one trigger (an HTTP trigger's URL, a message trigger's connection state)."""
    out.print_json(data=client_for(endpoint).json("GET", f"/functions/{name}/triggers/{trigger}"))


@app.command("rm")
def remove(name: str, trigger: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Remove a trigger."""
    client_for(endpoint).request("DELETE", f"/functions/{name}/triggers/{trigger}")
    out.print(f"Removed trigger {trigger} of {name}.")
