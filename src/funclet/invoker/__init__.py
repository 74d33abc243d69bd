"""Running one invocation: admission, placement, the run, the record."""

from funclet.invoker.invoker import Invocation, Invoker

__all__ = ["Invocation", "Invoker"]
