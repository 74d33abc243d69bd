"""``funclet layer publish|ls|rm``: layers, shared files functions mount at /opt."""

from __future__ import annotations

import base64
from pathlib import Path
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

app = group("Publish, list and remove layers (files functions see at /opt).")


@app.command("publish")
def publish(
    name: Annotated[str, typer.Argument(help="The layer.")],
    source: Annotated[Path, typer.Argument(
        help="A folder (zipped as it is: python/, nodejs/node_modules/, bin/, lib/) or a "
             ".zip file.")],
    runtime: Annotated[list[str] | None, typer.Option(
        help="A runtime it is for (repeatable); none: any.")] = None,
    description: Annotated[str, typer.Option()] = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Publish a new version of a layer; prints its ARN (for deploy --layer)."""
    from funclet.packaging import zip_dir

    if source.is_dir():
        data = zip_dir(source, None)
    elif source.is_file():
        data = source.read_bytes()
    else:
        raise CliError(f"{source} is neither a folder nor a file")
    body: dict[str, Any] = {"code": {"zipFile": base64.b64encode(data).decode()},
                            "description": description, "compatibleRuntime": runtime or []}
    layer = client_for(endpoint).json("POST", f"/layers/{name}/versions", json=body)
    out.print(f"Layer {name} version {layer['version']}: {layer['layerVersionArn']}",
              soft_wrap=True)


@app.command("ls")
def list_layers(
    name: Annotated[str | None, typer.Argument(help="A layer: list its versions.")] = None,
    output: Output = "table",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List layers (their newest versions), or one layer's versions."""
    client = client_for(endpoint)
    if name is None:
        rows = list(client.pages("/layers", "layers"))
    else:
        rows, start = [], 1
        while True:
            page = client.json("GET", f"/layers/{name}/versions",
                               params={"limit": 100, "startVersion": start})
            rows += page["layers"]
            if not page.get("nextVersion"):
                break
            start = page["nextVersion"]
    show(["layer", "version", "runtimes", "size", "arn"],
         [[r["layerName"], str(r["version"]), ", ".join(r["compatibleRuntime"]),
           str(r["codeSize"]), r["layerVersionArn"]] for r in rows], rows, output)


@app.command("rm")
def remove(name: str, version: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Remove a layer version (functions that use it keep it)."""
    client_for(endpoint).request("DELETE", f"/layers/{name}/versions/{version}")
    out.print(f"Removed version {version} of layer {name}.")
