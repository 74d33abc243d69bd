"""Creates that must not overwrite (a Function URL per function and qualifier, a custom
domain) say so on both backends: what the API's 409s rest on."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from funclet.store.metadata import Store
from tests import databases


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'funclet.db'}"
    else:
        yield databases.create(f"funclet_test_conflicts_{secrets.token_hex(4)}")


async def test_a_second_create_is_refused_and_changes_nothing(url: str) -> None:
    store = Store(url)
    await store.open()
    try:
        assert await store.put_function_url("a" * 32, "f", "LATEST", {"AuthType": "NONE"},
                                            1, True)
        assert not await store.put_function_url("b" * 32, "f", "LATEST", {}, 2, True)
        assert await store.put_function_url("a" * 32, "f", "prod", {}, 3, True) is False
        assert await store.put_function_url("c" * 32, "f", "prod", {}, 3, True)
        rows = await store.function_urls("f")
        assert [(r["url_id"], r["qualifier"], r["config"]) for r in rows] == [
            ("a" * 32, "LATEST", {"AuthType": "NONE"}), ("c" * 32, "prod", {})]
        assert await store.put_function_url("a" * 32, "f", "LATEST", {"AuthType": "AWS_IAM"},
                                            4, False)
        assert (await store.function_urls(url_id="a" * 32))[0]["config"] == {
            "AuthType": "AWS_IAM"}
        assert await store.delete_function_url("f", "LATEST")
        assert not await store.delete_function_url("f", "LATEST")
        assert await store.put_domain("x.example", {}, 1, True) == 1
        assert await store.put_domain("x.example", {}, 2, True) is None
    finally:
        await store.close()
