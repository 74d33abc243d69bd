"""The console in a real browser: Playwright driving Debian's Chromium opens the console,
finds a function, invokes it through the form, sees the result and the new invocation in
the list, and follows a live log. A function's log holds markup that would run if the
console wrote it as HTML: any dialog fails the test. Screenshots of each page are kept
in ``build/test-artifacts/console/`` (``FUNCLET_TEST_ARTIFACTS`` elsewhere)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Server
from tests.helpers import API, deploy, unique

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FUNCLET_TEST_ARTIFACTS", "build/test-artifacts")) / "console"
CODE = {"index.py": """
import json

def handler(event, context):
    print("<img src=x onerror=alert('log')> got", event.decode())
    return json.dumps({"hello": event.decode()})
"""}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM) and os.environ.get("CI") != "true":
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # (--no-sandbox: Chromium's own sandbox refuses to run as root, as CI does)
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()
    assert not dialogs, f"markup from a function ran in the console: {dialogs}"


def test_find_invoke_and_follow_a_function(page: Page, server: Server,
                                           client: httpx.Client) -> None:
    name = deploy(client, CODE, name=unique("browser"))
    page.goto(f"{server.url}/console/")
    page.get_by_label("search").fill(name)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#functions")).to_contain_text("none yet")
    page.screenshot(path=ARTIFACTS / "functions.png", full_page=True)
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)

    page.get_by_label("payload").fill("<b>world</b>")
    page.locator("#invoke").click()
    expect(page.locator("#result")).to_contain_text("succeeded")
    expect(page.locator("#result")).to_contain_text("cold start")
    expect(page.locator("#body")).to_have_text('{"hello": "<b>world</b>"}')
    expect(page.locator("#log")).to_contain_text("<img src=x onerror=alert('log')> got")
    request_id = page.locator("#result a").first.inner_text()
    expect(page.locator("#invocations")).to_contain_text(request_id)
    page.screenshot(path=ARTIFACTS / "function.png", full_page=True)

    page.locator("#invocations").get_by_role("link", name=request_id).click()
    expect(page.locator("#log")).to_contain_text("got <b>world</b>")

    live = page.context.new_page()
    live.goto(f"{server.url}/console/logs?function={name}")
    expect(live.locator("#state")).to_contain_text("Following")
    client.post(f"{API}/functions/{name}/invocations", content=b"from the API")
    entry = live.locator("#live .entry").first
    expect(entry).to_contain_text("from the API")
    expect(entry).to_contain_text("warm")
    expect(entry.locator("pre")).to_contain_text("<img src=x onerror=alert('log')>")
    live.screenshot(path=ARTIFACTS / "live-logs.png", full_page=True)

    page.goto(f"{server.url}/console/invocations?function={name}")
    expect(page.locator("#invocations tr")).to_have_count(3)  # the header and two
    page.screenshot(path=ARTIFACTS / "invocations.png", full_page=True)
    page.goto(f"{server.url}/console/charts?function={name}&window=15m")
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("main")).to_contain_text("2 invocations, 0 failed.")
    page.screenshot(path=ARTIFACTS / "charts.png", full_page=True)
