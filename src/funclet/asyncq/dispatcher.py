"""The dispatcher: runs accepted async tasks through the invoker, with retries.

Accepted tasks wait in ``async_tasks`` (SQLite, WAL). A task accepted while an async
slot is free is stored already claimed and starts at once. Otherwise the dispatcher
wakes when one is accepted (or the next delayed one falls due) and claims due tasks
oldest first. Each runs through the same invoker as sync calls — so the same limits
apply. It keeps at
most ``max_running`` tasks in flight (half the account's instances by default), so
async work never takes every slot from sync callers. For each attempt:

- older than ``maxAsyncEventAgeInSeconds`` → ``Expired``, not run;
- waited for capacity past the bound (429) → back to the queue, the attempt not
  counted;
- succeeded → ``Succeeded`` with its (size-limited) return payload;
- failed (error, timeout, crash, out of memory) → ``Retrying`` after an exponential,
  jittered backoff while attempts remain, else ``Failed``.

A stop request turns a waiting task ``Stopped`` at once and a running one ``Stopping``,
then ``Stopped`` when its attempt ends. After a crash, ``recover`` re-queues the tasks
that were running: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from funclet.asyncq import destinations
from funclet.asyncq.policy import AsyncConfig, TaskStatus, after_failure, backoff_seconds
from funclet.errors import ApiError, FunctionDisabled, Throttled
from funclet.invoker import Invoker
from funclet.store.tasks import Task, TaskStore, now_ms

log = logging.getLogger(__name__)
_IDLE_POLL = 1.0
_CAPACITY_RETRY_MS = 500
_DISABLED_RETRY_MS = 5000
_SWEEP_SECONDS = 5.0
_BUSY_POLL = 0.1


class Dispatcher:
    """Claims due async tasks and runs them (see the module docstring)."""

    def __init__(
        self,
        tasks: TaskStore,
        invoker: Invoker,
        config_of: Callable[[str, str], AsyncConfig],  # (function, qualifier)
        max_running: int,
        arn: Callable[[str], str],
        outbox_wake: Callable[[], None],
    ) -> None:
        self._arn = arn
        self._outbox_wake = outbox_wake
        self._tasks = tasks
        self._invoker = invoker
        self._config_of = config_of
        self._max_running = max(1, max_running)
        self._direct_limit = 1  # only while no async attempt runs
        self._running: set[asyncio.Task[None]] = set()
        self._by_task: dict[str, asyncio.Task[None]] = {}
        self._stop_asked: set[str] = set()
        self._handing: set[str] = set()  # accepted as Running, their attempt not yet begun
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def limit(self, max_running: int) -> None:
        """At most ``max_running`` attempts in flight from now on."""
        self._max_running = max(1, max_running)
        self.wake()

    def wake(self) -> None:
        """A task was accepted (or capacity freed): look for due work now."""
        self._wake.set()

    async def accept(self, task: Task, delay_s: int) -> bool:
        """Store a new task durably (``False``: its id was there already). When async
        work is light and the task is due now, it is stored as claimed and its attempt
        begins at once, without a round through the queue (the latency at idle); under
        load, tasks go through the queue, where claims come in batches (the throughput)."""
        direct = (delay_s == 0 and self._loop_task is not None
                  and len(self._running) + len(self._handing) < self._direct_limit
                  and task.task_id not in self._handing and task.task_id not in self._by_task)
        if not direct:
            fresh = await self._tasks.accept(task, delay_s)
            if fresh:
                self.wake()
            return fresh
        running = replace(task, status=TaskStatus.RUNNING, attempts=1)
        # An id the caller did not choose (the request's own) cannot be a repeat: its
        # attempt starts while the row commits (the 202 still waits for the commit).
        early = task.task_id == task.request_id
        self._handing.add(task.task_id)
        try:
            stored = asyncio.ensure_future(self._tasks.accept(task, delay_s, running=True))
            if early:
                self._start(running)
            try:
                fresh = await stored
            except BaseException:
                if early:  # not stored: it must not run (the caller was told it failed)
                    self.stop_running(task.task_id)
                raise
        finally:
            self._handing.discard(task.task_id)
        if fresh and not early and self._loop_task is not None:  # (else recover re-queues)
            self._start(running)
        return fresh

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop claiming; running attempts are cancelled and their tasks re-queued."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._tasks.recover()

    async def _loop(self) -> None:
        swept = time.monotonic()
        while True:
            try:
                if time.monotonic() - swept > _SWEEP_SECONDS:
                    swept = time.monotonic()
                    if n := await self._tasks.requeue_orphans({*self._by_task, *self._handing}):
                        log.warning("Re-queued %d async tasks that were left running.", n)
                free = self._max_running - len(self._running)
                claimed = await self._tasks.claim(free) if free > 0 else []
                for task in claimed:
                    self._start(task)
                if len(claimed) == free and free > 0:
                    continue  # there may be more due right now
                if claimed or free <= 0:  # busy: the next finished attempt wakes us
                    await self._sleep(_BUSY_POLL)
                else:
                    await self._sleep_until_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The async dispatcher failed; it goes on in %.1f s.", _IDLE_POLL)
                await asyncio.sleep(_IDLE_POLL)

    def _start(self, task: Task) -> None:
        runner = asyncio.get_running_loop().create_task(self._attempt(task))
        self._running.add(runner)
        self._by_task[task.task_id] = runner
        runner.add_done_callback(functools.partial(self._done, task.task_id))

    def _done(self, task_id: str, runner: asyncio.Task[None]) -> None:
        self._running.discard(runner)
        self._by_task.pop(task_id, None)
        # Claim when half the slots are free (or none is busy): claims come in batches,
        # fewer transactions for the same work. The busy poll covers the rest.
        if len(self._running) <= self._max_running // 2:
            self._wake.set()
        # A runner stopped before its attempt began wrote nothing: the sweep makes it
        # Stopped (it is Stopping and nobody runs it).
        self._stop_asked.discard(task_id)

    def stop_running(self, task_id: str) -> None:
        """StopAsyncTask on a running task: end its attempt now (its instance goes)."""
        runner = self._by_task.get(task_id)
        if runner is not None:
            self._stop_asked.add(task_id)
            runner.cancel()

    async def _sleep_until_due(self) -> None:
        due = await self._tasks.next_due_ms()
        timeout = _IDLE_POLL if due is None else max(0.0, (due - now_ms()) / 1000)
        await self._sleep(min(timeout, _IDLE_POLL))

    async def _sleep(self, timeout: float) -> None:
        """Until woken (an accept, a finished attempt) or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    async def _attempt(self, task: Task) -> None:
        try:
            await self._run_attempt(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Nothing may leave a task Running: put it back (the sweep does, if this fails).
            log.exception("Async task %s failed inside funclet; it is queued again.",
                          task.task_id)
            with contextlib.suppress(Exception):
                await self._tasks.record(task, TaskStatus.ENQUEUED, uncount=True,
                                         detail="queued again after an internal error",
                                         run_after_ms=now_ms() + 1000)

    async def _run_attempt(self, task: Task) -> None:
        config = self._config_of(task.function_name, task.qualifier)
        age_s = (now_ms() - task.created_ms) / 1000
        if age_s > config.max_age_seconds:
            message = (f"Event age {age_s:.0f} s exceeded the maximum of "
                       f"{config.max_age_seconds} s")
            delivery = self._delivery(task, config.on_failure, "EventAgeExceeded", None,
                                      None, attempts=task.attempts - 1)
            await self._tasks.record(
                task, TaskStatus.EXPIRED, uncount=True,
                detail=f"older than maxAsyncEventAgeInSeconds ({config.max_age_seconds} s)",
                error_message=message, delivery=delivery)
            self._delivering(delivery)
            log.info("Async task %s expired after %.0f s.", task.task_id, age_s)
            return
        try:
            # Every attempt runs (and logs) under the request id the caller was given
            # at accept: its invocation record gathers the attempts' logs.
            out = await self._invoker.invoke(
                task.function_name, task.payload, task.request_id, mode="async",
                qualifier=task.qualifier)
        except asyncio.CancelledError:
            if task.task_id not in self._stop_asked:
                raise  # shutdown: the task is re-queued
            await self._tasks.record(task, TaskStatus.STOPPED, detail="its attempt was ended")
            return
        except FunctionDisabled as exc:
            # Disabled (DisableFunctionInvocation): the task waits until it is enabled.
            await self._tasks.record(task, TaskStatus.ENQUEUED, uncount=True,
                                     detail=exc.message,
                                     run_after_ms=now_ms() + _DISABLED_RETRY_MS)
            return
        except Throttled as exc:
            # Waiting for capacity is not a failed attempt: back in the queue.
            await self._tasks.record(task, TaskStatus.ENQUEUED, uncount=True,
                                     detail=f"no capacity: {exc.message}",
                                     run_after_ms=now_ms() + _CAPACITY_RETRY_MS)
            return
        except ApiError as exc:  # the function is gone
            await self._tasks.record(task, TaskStatus.FAILED, detail=exc.message,
                                     error_message=exc.message)
            return
        fields: dict[str, Any] = {"duration_ms": out.duration_ms, "instance_id": out.instance_id}
        if out.error is None:
            response = out.body.decode("utf-8", "replace")
            delivery = self._delivery(task, config.on_success, "Success", response, None)
            await self._tasks.record(
                task, TaskStatus.SUCCEEDED, detail=f"attempt {task.attempts} succeeded",
                return_payload=response, error_message=None, delivery=delivery, **fields)
            self._delivering(delivery)
            return
        message = f"{out.error.error_type}: {out.error.message}"
        status = after_failure(task.attempts, config.max_retries)
        if status is TaskStatus.RETRYING:
            delay = backoff_seconds(task.attempts)
            await self._tasks.record(
                task, status, detail=f"attempt {task.attempts} failed: {message}",
                run_after_ms=now_ms() + int(delay * 1000), error_message=message, **fields)
            log.info("Retrying async task %s in %d ms (attempt %d of %d failed).",
                     task.task_id, delay * 1000, task.attempts, config.max_retries + 1)
        else:
            body = orjson.dumps(out.error.body()).decode()
            delivery = self._delivery(task, config.on_failure, "RetriesExhausted", body,
                                      "Unhandled")
            await self._tasks.record(
                task, status, detail=f"attempt {task.attempts} failed: {message}",
                error_message=message, delivery=delivery, **fields)
            self._delivering(delivery)
            log.info("Async task %s failed after %d attempts.", task.task_id, task.attempts)

    def _delivering(self, delivery: tuple[str, bytes] | None) -> None:
        """A destination record went to the outbox: it is due now."""
        if delivery is not None:
            self._outbox_wake()

    def _delivery(
        self, task: Task, uri: str | None, condition: str, response: str | None,
        function_error: str | None, attempts: int | None = None,
    ) -> tuple[str, bytes] | None:
        """The destination record for a final outcome, if the config names a destination."""
        if uri is None:
            return None
        return uri, orjson.dumps(destinations.record(
            request_id=task.request_id,
            function_arn=self._arn(task.function_name),
            condition=condition,
            invoke_count=task.attempts if attempts is None else attempts,
            payload=task.payload,
            response=response,
            function_error=function_error,
        ))
