"""An instance's lifecycle: state, in-flight count, timestamps. No OS work here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from funclet.instances.state import (
    TRANSITIONS,
    IllegalTransition,
    InstanceState,
    StopReason,
)

_OPEN = (InstanceState.STARTING, InstanceState.IDLE, InstanceState.BUSY)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Instance:
    """One running copy of one function version, as the pool tracks it.

    The state changes only through the methods below, each checked against
    ``TRANSITIONS``; ``in_flight`` counts invocations running on it (more than one
    only with instance concurrency). ``last_used`` is monotonic seconds.
    """

    instance_id: str
    function_name: str
    revision: int
    concurrency: int = 1
    provisioned: bool = False  # started ahead of time; never reclaimed or evicted
    state: InstanceState = InstanceState.STARTING
    stop_reason: StopReason | None = None
    in_flight: int = 0
    created_ms: int = field(default_factory=_now_ms)
    destroyed_ms: int | None = None
    last_used: float = field(default_factory=time.monotonic)
    version_id: str = "LATEST"  # the function's version it runs
    used: bool = False  # it has been given an invocation (instance isolation: only one)
    sessions: set[str] = field(default_factory=set)  # the session ids bound to it
    paused: bool = False  # PauseSession: its processes are stopped (SIGSTOP)

    def _move(self, to: InstanceState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"instance {self.instance_id}: {self.state} -> {to}")
        self.state = to

    @property
    def has_room(self) -> bool:
        """May take one more invocation (a starting one takes it once it is ready)."""
        return self.state in _OPEN and self.in_flight < self.concurrency and not self.paused

    def begin(self) -> None:
        """An invocation is placed on this instance (if starting, it runs once ready)."""
        if self.state is InstanceState.IDLE:
            self._move(InstanceState.BUSY)
        elif self.state not in _OPEN:
            raise IllegalTransition(f"instance {self.instance_id}: begin() while {self.state}")
        self.in_flight += 1
        self.used = True

    def end(self) -> None:
        """An invocation finished; the keep-alive clock restarts when none is left."""
        self.in_flight -= 1
        self.last_used = time.monotonic()
        if self.in_flight == 0 and self.state is InstanceState.BUSY:
            self._move(InstanceState.IDLE)

    def started(self) -> None:
        """The cold start finished: busy with the invocations placed on it, else idle."""
        self.last_used = time.monotonic()
        self._move(InstanceState.BUSY if self.in_flight else InstanceState.IDLE)

    def drain(self) -> None:
        """Take no new invocations; stop once the running ones finish."""
        if self.state is not InstanceState.DRAINING:
            self._move(InstanceState.DRAINING)

    def stop(self, reason: StopReason) -> None:
        if self.state is InstanceState.STOPPED:
            return
        self._move(InstanceState.STOPPED)
        self.stop_reason = reason
        self.destroyed_ms = _now_ms()
