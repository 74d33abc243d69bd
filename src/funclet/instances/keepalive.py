"""Which idle instances to reclaim: a pure function of instances and time."""

from __future__ import annotations

from collections.abc import Iterable

from funclet.instances.instance import Instance
from funclet.instances.state import InstanceState


def expired(instances: Iterable[Instance], now: float, keep_alive: float) -> list[Instance]:
    """Idle instances whose last use is more than ``keep_alive`` seconds before ``now``."""
    return [
        inst
        for inst in instances
        if inst.state is InstanceState.IDLE and now - inst.last_used > keep_alive
    ]
