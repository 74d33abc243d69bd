"""Metadata: functions, invocation records and instance records (SQLite by default)."""

from funclet.store.metadata import FunctionRow, Store
from funclet.store.recorder import InvocationRecord, Recorder

__all__ = ["FunctionRow", "InvocationRecord", "Recorder", "Store"]
