"""Background loops stop by cancellation, so nothing in funclet may swallow a cancel.

Python 3.11's ``asyncio.wait_for`` does when the awaited thing completes in the same
step as the cancel (CPython gh-86296): the loop then runs on and shutdown waits for it
forever. funclet uses ``asyncio.timeout`` instead.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import funclet
from funclet.asyncq.dispatcher import Dispatcher


async def test_the_dispatcher_stops_even_when_woken_in_the_same_step() -> None:
    dispatcher = Dispatcher(None, None, None, 1, None, None)  # type: ignore[arg-type]
    sleeper = asyncio.create_task(dispatcher._sleep(10))
    await asyncio.sleep(0)  # asleep on its wake event
    dispatcher.wake()  # an attempt finished ...
    assert sleeper.cancel()  # ... just as shutdown stops the loop
    with pytest.raises(asyncio.CancelledError):
        await sleeper


def test_no_wait_for_in_funclet() -> None:
    root = Path(funclet.__file__).parent
    found = [f"{path.relative_to(root)}:{n}"
             for path in root.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\bwait_for\(", line)]
    assert not found, f"use asyncio.timeout, not wait_for (it can swallow a cancel): {found}"
