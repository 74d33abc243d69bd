"""A small client for funclet's API, raising one-line errors for the CLI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

API = "/2023-03-30"


class CliError(Exception):
    """A failure to report to the user in one line, with a non-zero exit code."""


class Client:
    def __init__(self, endpoint: str, token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.endpoint, timeout=httpx.Timeout(30.0, read=None), headers=headers
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, API + path, **kwargs)
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach funclet at {self.endpoint}; is 'funclet serve' running?"
            ) from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.endpoint} failed: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = f"{body['Code']}: {body['Message']}"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise CliError(message)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a listing (``key`` of each page), following ``nextToken``."""
        token = None
        while True:
            page = self.json("GET", path, params={
                "limit": 100, **params, **({"nextToken": token} if token else {})})
            yield from page[key]
            token = page.get("nextToken")
            if not token:
                return


options: dict[str, str | None] = {"token": None}  # the global options, set by the callback
# Never wrapped: off a terminal a line is one line (ids stay copyable), on one too.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
Endpoint = Annotated[
    str, typer.Option("--endpoint", envvar="FUNCLET_ENDPOINT", help="funclet's API address.")
]
DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
Output = Annotated[str, typer.Option(
    "--output", "-o", help="table (tab-separated off a terminal) or json.")]


def group(help: str) -> typer.Typer:
    """A command group; help texts are plain text (their [default: …] kept as written)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


def show(columns: list[str], rows: list[list[str]], items: list[Any], output: str) -> None:
    """A listing: ``items`` as the API gave them (``-o json``), a table on a terminal, or
    tab-separated lines off one (nothing wrapped or cut, for scripts)."""
    if output == "json":
        sys.stdout.write(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if output != "table":
        raise CliError(f"--output must be table or json, got '{output}'")
    if out.is_terminal:
        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return
    for line in (columns, *rows):
        sys.stdout.write("\t".join(cell.replace("\t", " ").replace("\n", " ")
                                   for cell in line) + "\n")


def client_for(endpoint: str) -> Client:
    return Client(endpoint, options["token"])
