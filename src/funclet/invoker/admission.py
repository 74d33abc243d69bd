"""Admission: may this invocation have a new instance now, or must it wait its turn?

Instance slots are the scarce thing. The account may run ``max_instances`` instances
(starting, idle, busy or draining); a function with ``reservedConcurrency`` R owns R
slots — no more, and nobody else's — and the rest form the pool the other functions
share. An invocation that finds no warm instance with room asks for a slot:

- granted at once when its pool has one and nobody eligible waits ahead of it;
- else it waits in its function's FIFO queue, bounded in time and length. A slot that
  frees goes to the *oldest* eligible waiter of any function (so one hot function
  cannot starve another's waiters), and room that frees on an instance goes to the
  oldest waiter of that function, handed over directly (nobody barges in between).

When the shared pool is full but holds idle instances, the least recently used one is
evicted to make room. Past the wait bound, the queue bound, or with
``reservedConcurrency`` 0, the invocation is throttled (429, which limit said).

When nodes share a database (``cluster``), the limits are the cluster's: a pool's
capacity on this node is the slots it holds (``held``), leased from the cluster as its
waiters need them and given back as soon as they are not used (``funclet.slots``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from funclet.errors import Throttled

if TYPE_CHECKING:
    from funclet.slots import ClusterSlots


@dataclass(eq=False)
class _Waiter:
    function: str
    seq: int
    future: asyncio.Future[Any] = field(repr=False)
    version: str = "LATEST"  # the function's version it runs: a hand-off must match
    new_session: bool = False  # for a session to bind: a hand-off must have room for it


SLOT = None  # what a waiter receives when it is granted a new-instance slot
_SPARE_S = 2.5  # a provisioner asks every reconcile tick (1 s) while it needs a slot


class Admission:
    """Slot accounting and the wait queue (see the module docstring)."""

    def __init__(
        self,
        max_instances: int,
        max_queue: int,
        evict: Callable[[Callable[[str], bool]], bool],
        cluster: ClusterSlots | None = None,
    ) -> None:
        self.max_instances = max_instances
        self.max_queue = max_queue
        self._evict = evict  # stop one idle instance whose function passes the filter
        self._cluster = cluster
        self.held: Counter[str] = Counter()  # with a cluster: slots leased, per pool
        # ...and one wanted for a provisioned instance, per pool: when it was last asked
        # for (the provisioner asks every reconcile tick while it needs one).
        self._spare_asked: dict[str, float] = {}
        self.live: Counter[str] = Counter()  # slots held, per function
        self.reserved: dict[str, int] = {}
        self._queues: dict[str, deque[_Waiter]] = {}
        self._waiting = 0
        self._evicting: Counter[str] = Counter()  # evictions under way, per pool
        self._seq = itertools.count()

    # -- limits ----------------------------------------------------------------

    @property
    def shared_capacity(self) -> int:
        return self.max_instances - sum(self.reserved.values())

    @property
    def shared_used(self) -> int:
        """Slots used from the shared pool: every instance of an unreserved function, and
        those of a reserved one beyond its reservation (it was just lowered)."""
        return sum(
            max(0, n - self.reserved[fn]) if fn in self.reserved else n
            for fn, n in self.live.items()
        )

    def set_reserved(self, function: str, reserved: int | None) -> None:
        """Set or clear a function's reservation; waiters may become eligible (or, with
        0, are throttled at once: the function is disabled)."""
        if reserved is None:
            self.reserved.pop(function, None)
        else:
            self.reserved[function] = reserved
        if reserved == 0:
            self.fail_waiters(function, Throttled(
                f"function '{function}' is disabled: its reservedConcurrency is 0"))
        self._grant()

    def fail_waiters(self, function: str, error: Exception) -> None:
        """End every wait of ``function`` with ``error`` (disabled, or deleted)."""
        while (waiter := self._head(function)) is not None:
            self._pop(waiter)
            waiter.future.set_exception(error)
        self._return_surplus(self._pool(function))

    def reservable(self, function: str) -> int:
        """The most ``function`` may reserve: what other reservations leave."""
        others = sum(n for fn, n in self.reserved.items() if fn != function)
        return self.max_instances - others

    def _pool(self, function: str) -> str:
        """Which slots ``function`` draws on: its own reservation, or the shared ones ("")."""
        return function if function in self.reserved else ""

    def _in_pool(self, function: str, pool: str) -> bool:
        return function == pool if pool else function not in self.reserved

    def _used_and_capacity(self, pool: str) -> tuple[int, int]:
        # (A pool whose reservation was just cleared still has what it held: capacity 0.)
        used, capacity = ((self.live[pool], self.reserved.get(pool, 0)) if pool
                          else (self.shared_used, self.shared_capacity))
        if self._cluster is not None:
            capacity = min(capacity, self.held[pool])
        return used, capacity

    def _has_slot(self, function: str) -> bool:
        used, capacity = self._used_and_capacity(self._pool(function))
        return used < capacity

    # -- slots -------------------------------------------------------------------

    def try_slot(self, function: str) -> bool:
        """Take a slot now, if one is free and no eligible waiter is ahead."""
        if self._has_slot(function) and not self._eligible_waiter_ahead(function):
            self.live[function] += 1
            return True
        return False

    def slot_for_provisioning(self, function: str) -> bool:
        """A slot for a provisioned instance. Provisioned capacity comes before idle
        on-demand instances: without a free slot, one idle instance of the same pool is
        evicted (``False`` now; its slot is free once it has stopped). With a cluster,
        one more slot is leased for it (``False`` now, the slot held for the next try)."""
        pool = self._pool(function)
        if self.try_slot(function):
            self._spare_asked.pop(pool, None)
            return True
        if self._cluster is not None:
            self._spare_asked[pool] = time.monotonic()
            self._cluster.want(pool)
            return False
        if not self._eligible_waiter_ahead(function):
            pool = self._pool(function)
            self._evict(lambda fn: self._in_pool(fn, pool))
        return False

    def release_slot(self, function: str) -> None:
        """An instance of ``function`` stopped (or a granted slot went unused)."""
        self.live[function] -= 1
        if self.live[function] <= 0:
            del self.live[function]
        pool = self._pool(function)
        if self._evicting[pool] > 0:
            self._evicting[pool] -= 1
        self._grant()
        self._return_surplus(pool)

    # -- the cluster's slots -------------------------------------------------------------

    def needed(self, pool: str) -> int:
        """How many more slots ``pool`` needs on this node: its waiters (and a provisioned
        instance that waits for one) beyond what it holds and does not use."""
        used, capacity = self._used_and_capacity(pool)
        waiters = sum(len(q) for fn, q in self._queues.items() if self._in_pool(fn, pool))
        return max(0, used + waiters + self._spare(pool) - capacity)

    def settle(self) -> None:
        """Give back what no waiter or instance uses any more (a provisioner that stopped
        asking, a reservation that changed): every tick of the reclaimer."""
        for pool in [p for p, n in self.held.items() if n]:
            self._return_surplus(pool)

    def _spare(self, pool: str) -> int:
        """1 while a provisioned instance of ``pool`` waits for a slot: asked for within
        the last ``_SPARE_S`` (a provisioner that stopped asking holds nothing)."""
        asked = self._spare_asked.get(pool)
        if asked is None:
            return 0
        if time.monotonic() - asked > _SPARE_S:
            del self._spare_asked[pool]
            return 0
        return 1

    def add_capacity(self, pool: str, count: int) -> None:
        """The cluster leased ``count`` more slots of ``pool`` to this node."""
        self.held[pool] += count
        self._grant()
        self._return_surplus(pool)

    def _return_surplus(self, pool: str) -> None:
        """Give back what this node holds of ``pool`` and does not use."""
        if self._cluster is None or not self.held[pool]:
            return
        used, _ = self._used_and_capacity(pool)
        waiters = sum(len(q) for fn, q in self._queues.items() if self._in_pool(fn, pool))
        surplus = self.held[pool] - max(used, 0) - waiters - self._spare(pool)
        if surplus > 0:
            self.held[pool] -= surplus
            self._cluster.give_back(pool, surplus)

    def make_room(self, pool: str) -> None:
        """Evict idle instances of ``pool`` here until, once they have stopped, every
        waiter of the pool has a slot (evictions under way count)."""
        for _ in range(self._eviction_needed(pool)):
            if not self._evict(lambda fn: self._in_pool(fn, pool)):
                return
            self._evicting[pool] += 1

    def evict_idle(self, pool: str, count: int) -> None:
        """Another node's waiters need slots of ``pool``: up to ``count`` idle instances of
        it here go (their slots, once stopped, go back to the cluster)."""
        for _ in range(count):
            if not self._evict(lambda fn: self._in_pool(fn, pool)):
                return
            self._evicting[pool] += 1

    def _eligible_waiter_ahead(self, function: str) -> bool:
        pool = self._pool(function)
        return any(queue and self._in_pool(fn, pool) for fn, queue in self._queues.items())

    def _grant(self) -> None:
        """Give free slots to the oldest eligible waiters, one at a time."""
        while True:
            best: _Waiter | None = None
            for fn in list(self._queues):
                head = self._head(fn)
                if head and self._has_slot(fn) and (best is None or head.seq < best.seq):
                    best = head
            if best is None:
                return
            self._pop(best)
            self.live[best.function] += 1
            best.future.set_result(SLOT)

    # -- room on an existing instance ----------------------------------------------

    def offer_room(
        self, function: str, lend: Callable[[], Any], evict: Callable[[], None] | None,
        version: str = "LATEST", accepts: Callable[[bool], bool] | None = None,
    ) -> bool:
        """An instance of ``function`` (running ``version``) has room again.

        If it is idle (``evict`` given) and an older invocation that it cannot serve (of
        another function, or another version of this one) waits for a slot of the same
        pool, the instance is evicted so that its slot goes there (fairness); else the
        room goes to the oldest waiter of this function and version (that the instance
        ``accepts``: sessions, isolation), handed over.
        """
        waiter = self._head(function, version, accepts)
        pool = self._pool(function)
        starved = self._oldest_starved(pool, exclude=(function, version))
        if evict is not None and starved is not None and (
            waiter is None or starved.seq < waiter.seq
        ) and self._eviction_needed(pool):
            evict()
            self._evicting[pool] += 1
            return True
        if waiter is not None:
            self._pop(waiter)
            waiter.future.set_result(lend())
            return True
        return False

    def _oldest_starved(self, pool: str, exclude: tuple[str, str]) -> _Waiter | None:
        """The oldest waiter drawing on ``pool`` that an instance of ``exclude``
        (function, version) cannot serve: another function's (shared pool), or another
        version's of the same function."""
        best: _Waiter | None = None
        for fn in list(self._queues):
            if not self._in_pool(fn, pool):
                continue
            self._head(fn)  # (cancelled waiters dropped)
            for waiter in self._queues.get(fn, ()):
                if (fn, waiter.version) != exclude and not waiter.future.done():
                    if best is None or waiter.seq < best.seq:
                        best = waiter
                    break  # the oldest of this function that qualifies
        return best

    def _eviction_needed(self, pool: str) -> int:
        """How many more instances must go for every waiter of ``pool`` to get a slot."""
        used, capacity = self._used_and_capacity(pool)
        waiters = sum(len(q) for fn, q in self._queues.items() if self._in_pool(fn, pool))
        return max(0, used - self._evicting[pool] + waiters + self._spare(pool) - capacity)

    def has_waiters(self, function: str) -> bool:
        return bool(self._queues.get(function))

    # -- waiting -------------------------------------------------------------------

    async def wait(self, function: str, timeout: float, version: str = "LATEST",
                   new_session: bool = False) -> Any:
        """Queue until a slot (``SLOT``) or a lease on a warm instance of ``version`` is
        handed over (``new_session``: one with room for another session)."""
        reserved = self.reserved.get(function)
        if reserved == 0:
            raise Throttled(
                f"function '{function}' is disabled: its reservedConcurrency is 0"
            )
        if self._waiting >= self.max_queue:
            raise Throttled(
                f"the wait queue is full: {self._waiting} invocations are waiting "
                f"(limit {self.max_queue})"
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(function, next(self._seq), loop.create_future(), version, new_session)
        self._queues.setdefault(function, deque()).append(waiter)
        self._waiting += 1
        if not self._has_slot(function):
            if self._cluster is not None:
                self._cluster.want(self._pool(function))
            else:
                self.make_room(self._pool(function))
        # The timer and the hand-offs all run on the loop: exactly one of them wins.
        timer = loop.call_later(timeout, self._expire, waiter, timeout)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._give_back(waiter)
            self._pop(waiter)
            self._return_surplus(self._pool(function))
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        if not waiter.future.done():
            self._pop(waiter)
            waiter.future.set_exception(
                Throttled(self._limit_message(waiter.function, timeout))
            )
            self._return_surplus(self._pool(waiter.function))

    def _give_back(self, waiter: _Waiter) -> None:
        """A waiter that was handed something but will not use it (it was cancelled)."""
        got = waiter.future.result()
        if got is SLOT:
            self.release_slot(waiter.function)
        else:
            got.pool.release(got)

    def _head(self, function: str, version: str | None = None,
              accepts: Callable[[bool], bool] | None = None) -> _Waiter | None:
        """The oldest live waiter of ``function`` (cancelled ones are dropped); with
        ``version``, the oldest of those waiting for that version (and that ``accepts``
        takes)."""
        queue = self._queues.get(function)
        while queue and queue[0].future.done():
            self._pop(queue[0])
            queue = self._queues.get(function)
        if not queue:
            return None
        if version is None:
            return queue[0]
        return next((w for w in queue if w.version == version and not w.future.done() and (
            accepts is None or accepts(w.new_session))), None)

    def _pop(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.function)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self._waiting -= 1
            if not queue:
                del self._queues[waiter.function]

    def _limit_message(self, function: str, waited: float) -> str:
        reserved = self.reserved.get(function)
        if reserved is not None:
            limit = f"function '{function}' reached its reservedConcurrency of {reserved} instances"
        else:
            limit = (
                f"the account reached its limit of {self.max_instances} running instances"
                + (f" ({self.shared_capacity} shared)" if self.reserved else "")
            )
        return f"{limit}; the invocation waited {waited:g} s for one (the wait limit)"

    @property
    def waiting(self) -> int:
        return self._waiting
