"""``funclet version publish|ls|rm`` and ``funclet alias set|ls|rm``."""

from __future__ import annotations

from typing import Annotated, Any

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

versions = group("Publish, list and remove a function's versions.")
aliases = group("Point aliases at versions (with a canary weight), list, remove.")


@versions.command("publish")
def publish(
    name: Annotated[str, typer.Argument(help="The function.")],
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Publish the function as it is now (LATEST) as a new, immutable version; the
    last version again if nothing changed since it."""
    version = client_for(endpoint).json("POST", f"/functions/{name}/versions",
                                        json={"description": description})
    out.print(f"Version {version['versionId']} of {name}.")


@versions.command("ls")
def list_versions(name: str, output: Output = "table",
                  endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """List a function's versions, newest first."""
    items = list(client_for(endpoint).pages(f"/functions/{name}/versions", "versions"))
    show(["version", "published", "description"],
         [[v["versionId"], v["createdTime"], v["description"]] for v in items], items, output)


@versions.command("rm")
def remove_version(name: str, version: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Remove a version (refused while an alias points at it)."""
    client_for(endpoint).request("DELETE", f"/functions/{name}/versions/{version}")
    out.print(f"Removed version {version} of {name}.")


def _weights(values: list[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for value in values:
        version, sep, share = value.partition("=")
        try:
            weights[version] = float(share)
        except ValueError:
            sep = ""
        if not sep:
            raise CliError(f"--weight takes VERSION=SHARE with a share from 0 to 1, got "
                           f"'{value}'") from None
    return weights


@aliases.command("set")
def set_alias(
    name: Annotated[str, typer.Argument(help="The function.")],
    alias: Annotated[str, typer.Argument(help="The alias, e.g. prod.")],
    version: Annotated[str, typer.Argument(help="The version it runs.")],
    weight: Annotated[list[str] | None, typer.Option(
        help="VERSION=SHARE: a second version that gets that share (0 to 1) of the calls, "
             "e.g. --weight 3=0.1 for a 10 % canary.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Create an alias, or point it elsewhere (with no --weight: no canary)."""
    client = client_for(endpoint)
    body: dict[str, Any] = {"versionId": version,
                            "additionalVersionWeight": _weights(weight or [])}
    if description is not None:
        body["description"] = description
    path = f"/functions/{name}/aliases"
    exists = any(a["aliasName"] == alias for a in client.pages(path, "aliases", prefix=alias))
    if exists:
        row = client.json("PUT", f"{path}/{alias}", json=body)
    else:
        row = client.json("POST", path, json={"aliasName": alias, **body})
    extra = ", ".join(f"version {v} {w:.0%}" for v, w in row["additionalVersionWeight"].items())
    out.print(f"Alias {alias} of {name} runs version {row['versionId']}"
              + (f" ({extra})." if extra else "."))


@aliases.command("ls")
def list_aliases(name: str, output: Output = "table",
                 endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """List a function's aliases."""
    items = list(client_for(endpoint).pages(f"/functions/{name}/aliases", "aliases"))
    show(["alias", "version", "additional", "description"],
         [[a["aliasName"], a["versionId"], ", ".join(
             f"{v}={w:g}" for v, w in a["additionalVersionWeight"].items()), a["description"]]
          for a in items], items, output)


@aliases.command("rm")
def remove_alias(name: str, alias: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Remove an alias."""
    client_for(endpoint).request("DELETE", f"/functions/{name}/aliases/{alias}")
    out.print(f"Removed alias {alias} of {name}.")
