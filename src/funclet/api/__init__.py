"""The HTTP API (Starlette): FC 3.0's control and invoke endpoints."""

from funclet.api.app import build_app

__all__ = ["build_app"]
