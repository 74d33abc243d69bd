"""Routes found by the first segment of their path, not tried one by one.

Starlette's router tries every route in turn until one matches: the API's ~160 routes
made an HTTP trigger request (late in the list) run some 150 regular expressions
before its own, and a Lambda Invoke some 60. ``BySegment`` holds routes whose first
path segment is literal (``/2015-03-31/…``, ``/http/…``) in one list per segment and
tries only that list, in the order given; what it cannot place stays with the router.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

_CHOSEN = "funclet.route"  # the route that matched, in the child scope


class BySegment(BaseRoute):
    """One route to the router, standing for many (see the module docstring)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.groups: dict[str, list[Route]] = {}
        for route in routes:
            self.groups.setdefault(_segment(route.path), []).append(route)

    @property
    def routes(self) -> list[Route]:
        """Every route it holds."""
        return [route for group in self.groups.values() for route in group]

    @staticmethod
    def groupable(route: BaseRoute) -> bool:
        return isinstance(route, Route) and "{" not in _segment(route.path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        partial: tuple[Match, Scope] | None = None
        for route in self.groups.get(_segment(scope["path"]), ()):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = match, {**child, _CHOSEN: route}
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Route = scope[_CHOSEN]
        scope["route"] = route
        await route.handle(scope, receive, send)


def _segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


def by_segment(routes: list[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with those ``BySegment`` can hold in one of it, where the first was."""
    held = [r for r in routes if BySegment.groupable(r)]
    if not held:
        return routes
    out: list[BaseRoute] = []
    for route in routes:
        if route is held[0]:
            out.append(BySegment(r for r in held if isinstance(r, Route)))
        elif route not in held:
            out.append(route)
    return out
