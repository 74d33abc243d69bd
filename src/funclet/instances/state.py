"""An instance's states, its stop reasons and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum


class InstanceState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    STOPPED = "stopped"


class StopReason(StrEnum):
    RECLAIMED = "reclaimed"
    EVICTED = "evicted"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    CRASHED = "crashed"
    START_FAILED = "start_failed"
    UNDEPLOYED = "undeployed"
    SHUTDOWN = "shutdown"
    DISABLED = "disabled"  # DisableFunctionInvocation
    FRAME_TOO_LARGE = "frame_too_large"  # it sent the platform a frame over the limit
    ISOLATED = "isolated"  # its one request or session ended (instanceIsolationMode)


class StartKind(StrEnum):
    """How an invocation got its instance; recorded on every invocation."""

    COLD = "cold"
    WARM = "warm"
    PROVISIONED = "provisioned"


S = InstanceState
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.STARTING: frozenset({S.IDLE, S.BUSY, S.STOPPED}),
    S.IDLE: frozenset({S.BUSY, S.DRAINING, S.STOPPED}),
    S.BUSY: frozenset({S.IDLE, S.DRAINING, S.STOPPED}),
    S.DRAINING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset(),
}

# FC's ListInstances status for each state.
FC_STATUS = {
    S.STARTING: "Starting",
    S.IDLE: "Running",
    S.BUSY: "Running",
    S.DRAINING: "Stopping",
    S.STOPPED: "Stopped",
}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the caller."""
