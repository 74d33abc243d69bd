"""Which idle instances to reclaim: a pure function of instances and time."""

from __future__ import annotations

from collections.abc import Iterable

from funclet.instances.instance import Instance
from funclet.instances.state import InstanceState


def expired(instances: Iterable[Instance], now: float, keep_alive: float) -> list[Instance]:
    """Idle, not provisioned instances last used more than ``keep_alive`` s before ``now``
    (an instance a session is bound to stays while the session lives)."""
    return [
        inst
        for inst in instances
        if inst.state is InstanceState.IDLE
        and not inst.provisioned
        and not inst.sessions
        and now - inst.last_used > keep_alive
    ]
