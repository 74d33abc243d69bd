"""funclet's errors, one tree, catchable at any level::

    FuncletError
    ├── ApiError                    an API call is refused: FC's {"Code", "Message", "RequestId"}
    │   ├── InvalidArgument         400, bad input; nothing was stored
    │   │   └── InvalidCodePackage  400, the zip is unusable (not a zip, traversal, bomb, …)
    │   ├── FunctionNotFound        404
    │   ├── InvocationNotFound      404
    │   ├── AsyncTaskNotFound       404
    │   ├── AsyncConfigNotFound     404
    │   ├── TriggerNotFound         404
    │   ├── Unauthenticated         401, no credentials
    │   ├── AccessDenied            403, wrong credentials (or a function calling the API)
    │   ├── RouteNotFound           404, no such API
    │   ├── MethodNotAllowed        405
    │   ├── FunctionAlreadyExists   409
    │   ├── TriggerAlreadyExists    409
    │   ├── TaskIdTaken             409, an async task id another function uses
    │   ├── PayloadTooLarge         413
    │   ├── UriTooLong              414, the request line is over the limit
    │   ├── HeaderFieldsTooLarge    431, too many or too large request headers
    │   ├── Throttled               429, a limit was reached and the wait ran out
    │   ├── Overloaded              503, the platform's connection limit is reached
    │   ├── DiskFull                507, no space on the disk holding funclet's data;
    │   │                           nothing of the call was stored
    │   ├── CodeStoreUnavailable    503, the code store (an S3 bucket) cannot be reached
    │   └── ShuttingDown            503, the platform stopped while the call ran
    ├── DataFolderInUse             another funclet serves from the same data folder
    ├── DatabaseUnusable            the database is unreachable, or newer than funclet
    └── InvocationError             the function ran (or tried to) and failed: FC's
        │                           {"errorMessage", "errorType", "stackTrace"} body
        ├── HandlerError            the handler raised; the user's own error type
        │   └── HandledError        …or reported it (callback(err)): HandledInvocationError
        ├── InitializationError     imports, module code or the initializer failed
        ├── FunctionTimeout         the handler ran past the function's timeout
        ├── InstanceCrashed         the instance died while running the invocation
        └── ResponseTooLarge        the instance sent a frame over the limit and was stopped

An ``InvocationError`` that killed or poisoned its instance says so with
``instance_lost``; the pool then replaces the instance.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class FuncletError(Exception):
    """Root of every error funclet raises on purpose."""


class ApiError(FuncletError):
    """An API call that is refused, with FC's error code and HTTP status."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ApiError):
    code = "InvalidArgument"
    status = 400


class InvalidCodePackage(InvalidArgument):
    """The code package cannot be deployed; the message says why."""


class FunctionNotFound(ApiError):
    code = "FunctionNotFound"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' does not exist")


class VersionNotFound(ApiError):
    code = "VersionNotFound"
    status = 404

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"function '{name}' has no version '{version}'")


class AliasNotFound(ApiError):
    code = "AliasNotFound"
    status = 404

    def __init__(self, name: str, alias: str) -> None:
        super().__init__(f"function '{name}' has no alias '{alias}'")


class AliasAlreadyExists(ApiError):
    code = "AliasAlreadyExists"
    status = 409

    def __init__(self, name: str, alias: str) -> None:
        super().__init__(f"function '{name}' already has an alias '{alias}'")


class FunctionDisabled(ApiError):
    """DisableFunctionInvocation: every invocation is refused until it is enabled."""

    code = "FunctionDisabled"
    status = 403

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invocations of function '{name}' are disabled"
                         + (f": {reason}" if reason else ""))


class NotSupported(ApiError):
    """An FC feature funclet does not offer on its own machines (snapshots, VPCs)."""

    code = "NotSupported"
    status = 400


class ScalingConfigNotFound(ApiError):
    code = "ScalingConfigNotFound"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' has no scaling config")


class DomainNotFound(ApiError):
    code = "DomainNameNotFound"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"no custom domain '{name[:256]}'")


class DomainAlreadyExists(ApiError):
    code = "DomainNameAlreadyExists"
    status = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"custom domain '{name}' already exists")


class LayerNotFound(ApiError):
    code = "LayerNotFound"
    status = 404


class VersionInUse(ApiError):
    code = "VersionInUse"
    status = 409


class InvocationNotFound(ApiError):
    code = "InvocationNotFound"
    status = 404

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no invocation with request id '{request_id}'")


class AsyncTaskNotFound(ApiError):
    code = "AsyncTaskNotFound"
    status = 404

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no async task '{task_id}'")


class TaskIdTaken(ApiError):
    code = "AsyncTaskAlreadyExists"
    status = 409

    def __init__(self, task_id: str) -> None:
        super().__init__(f"async task id '{task_id}' is taken by another function")


class AsyncConfigNotFound(ApiError):
    code = "AsyncConfigNotFound"
    status = 404

    def __init__(self, name: str, qualifier: str = "LATEST") -> None:
        super().__init__(f"function '{name}' has no async invoke config"
                         + (f" for qualifier '{qualifier}'" if qualifier != "LATEST" else ""))


class TriggerNotFound(ApiError):
    code = "TriggerNotFound"
    status = 404

    def __init__(self, function_name: str, trigger_name: str) -> None:
        super().__init__(f"function '{function_name}' has no trigger '{trigger_name}'")


class Unauthenticated(ApiError):
    code = "Unauthorized"
    status = 401

    def __init__(self) -> None:
        super().__init__(
            "the request carries no credentials: send 'Authorization: Bearer <token>' "
            "or sign it with an access key"
        )


class AccessDenied(ApiError):
    code = "AccessDenied"
    status = 403

    def __init__(self, message: str = "the request's credentials are not valid") -> None:
        super().__init__(message)


class RouteNotFound(ApiError):
    code = "NotFound"
    status = 404


class MethodNotAllowed(ApiError):
    code = "MethodNotAllowed"
    status = 405


class FunctionAlreadyExists(ApiError):
    code = "FunctionAlreadyExists"
    status = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' already exists")


class TriggerAlreadyExists(ApiError):
    code = "TriggerAlreadyExists"
    status = 409


class PayloadTooLarge(ApiError):
    code = "EntityTooLarge"
    status = 413


class UriTooLong(ApiError):
    code = "URITooLong"
    status = 414


class HeaderFieldsTooLarge(ApiError):
    code = "RequestHeaderFieldsTooLarge"
    status = 431


class Overloaded(ApiError):
    code = "ServiceUnavailable"
    status = 503


class Throttled(ApiError):
    """No instance could be had within the wait bound; the message names the limit."""

    code = "ResourceExhausted"
    status = 429


class CodeStoreUnavailable(ApiError, OSError):
    """The code store (an S3-compatible bucket) failed or could not be reached: the call
    stored nothing. An ``OSError`` too, so that a cold start that cannot fetch its code
    fails as any other start that cannot get what it needs."""

    code = "ServiceUnavailable"
    status = 503

    def __init__(self, where: str, cause: BaseException) -> None:
        why = str(cause).strip().splitlines()
        super().__init__(f"the code store {where} cannot be used right now: "
                         f"{why[0] if why else type(cause).__name__}")


class DiskFull(ApiError):
    """A write found no space (ENOSPC, a quota, SQLite's "database or disk is full").

    The call stored nothing (each write is whole or not at all); what was stored
    before is kept, and the same call works again once there is room.
    """

    code = "DiskFull"
    status = 507  # Insufficient Storage

    def __init__(self, folder: str) -> None:
        super().__init__(
            f"no space left on the disk holding {folder}: nothing of this request was "
            "stored; try again once space is freed")


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` that says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class ShuttingDown(ApiError):
    code = "ServiceUnavailable"
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "funclet is shutting down: the invocation was stopped after the grace period"
        )


class DataFolderInUse(FuncletError):
    """``funclet serve`` found the data folder locked by a running funclet."""

    def __init__(self, folder: Path, pid: str) -> None:
        super().__init__(
            f"the data folder {folder} is in use by another funclet (pid {pid or 'unknown'}); "
            "stop it, or give this one another --data-dir")
        self.folder = folder
        self.pid = pid


class DatabaseUnusable(FuncletError):
    """The metadata database cannot be reached, or its schema is newer than this funclet."""


class InvocationError(FuncletError):
    """A failed invocation, shaped as FC's function error body.

    ``fc_error_type`` goes in the ``x-fc-error-type`` header; ``error_type`` is the
    body's ``errorType`` (the user's exception name for a handler error).
    """

    fc_error_type = "UnhandledInvocationError"
    instance_lost = False

    def __init__(
        self, message: str, error_type: str, stack_trace: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.stack_trace = stack_trace or []
        self.log = ""
        self.instance_id = ""  # the instance it happened on, when there was one

    def body(self) -> dict[str, Any]:
        return {
            "errorMessage": self.message,
            "errorType": self.error_type,
            "stackTrace": self.stack_trace,
        }


class HandlerError(InvocationError):
    """The handler raised; the instance is fine and stays warm."""


class HandledError(HandlerError):
    """The handler reported an error itself (Node.js: ``callback(err)``)."""

    fc_error_type = "HandledInvocationError"


class InitializationError(InvocationError):
    """The instance could not be initialised; it is stopped."""

    instance_lost = True


class FunctionTimeout(InvocationError):
    instance_lost = True

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"Task timed out after {timeout:g} seconds", "FunctionTimeoutError"
        )


class InstanceCrashed(InvocationError):
    instance_lost = True


class ResponseTooLarge(InvocationError):
    """The instance sent the platform a frame over the limit (``Runtime.ResponseTooLarge``);
    the channel was closed before the frame was buffered, and the instance stopped."""

    instance_lost = True

    def __init__(self, message: str) -> None:
        super().__init__(message, "Runtime.ResponseTooLarge")
