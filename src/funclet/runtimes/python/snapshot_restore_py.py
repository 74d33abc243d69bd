"""Runtime hooks around a snapshot, by the names of AWS Lambda's ``snapshot_restore_py``.

A function whose version is marked for snapshots (FC's ``snapStart``, Lambda's
``SnapStart``) runs its imports and initializer once, in a template; every new instance
is forked from it. Code that holds what a copy must not share registers hooks::

    from snapshot_restore_py import register_after_restore, register_before_snapshot

    @register_before_snapshot
    def close_connections():
        pool.close()

    @register_after_restore
    def reconnect():
        pool.open()

Before-snapshot hooks run in the template once the initializer is done, the last
registered first; after-restore hooks run in each new instance before its first
invocation, in the order they were registered. Both also accept
``register_x(func, *args, **kwargs)``. Outside snapshots the hooks never run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any,
                             **kwargs: Any) -> Callable[..., Any]:
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any,
                           **kwargs: Any) -> Callable[..., Any]:
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[Hook]:
    return list(reversed(_before_snapshot))


def get_after_restore() -> list[Hook]:
    return list(_after_restore)
