"""Every Python runtime found on this machine runs a function through the same bootstrap."""

from __future__ import annotations

import httpx
import pytest

from funclet.runtimes import discover
from tests.helpers import deploy, invoke

RUNTIMES = sorted(n for n, r in discover().items() if r.language == "python")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_python_runtime_runs_its_own_interpreter(client: httpx.Client, runtime: str) -> None:
    name = deploy(client, {"index.py": """
        import sys

        def handler(event, context):
            return "%d.%d" % sys.version_info[:2]

        def failing(event, context):
            raise LookupError("nothing here")
    """}, runtime=runtime)
    r = invoke(client, name)
    assert r.text == runtime.removeprefix("python"), r.content
    assert r.headers["x-funclet-start-kind"] == "cold"
    assert invoke(client, name).headers["x-funclet-start-kind"] == "warm"
    failing = deploy(client, {"index.py": """
        def handler(event, context):
            raise LookupError("nothing here")
    """}, runtime=runtime)
    body = invoke(client, failing).json()
    assert (body["errorType"], body["errorMessage"]) == ("LookupError", "nothing here")


def test_this_machine_has_the_default_runtime() -> None:
    assert "python3.11" in RUNTIMES
