"""Custom domains (FC's CreateCustomDomain, ...): a host name whose HTTP requests go to
functions by path, as their ``routeConfig`` says. FC 3.0 routes to a function directly
(it needs no HTTP trigger) with a qualifier; a route may name methods and rewrite the
path.

Routes match as FC matches them: an exact path (``/login``) first, then the longest
wildcard prefix (``/api/*``, ``/*``). A rewrite rule of the route (equal, then
wildcard, then regex rules) may change the path the function sees. Domains are kept in
memory (read at start, changed at once by this node's calls, and read again every
second on a cluster), so routing a request costs no database read.

TLS is not terminated here: ``certConfig`` and ``tlsConfig`` are stored and returned,
for the load balancer in front (see docs/api.md); so are ``wafConfig`` and
``corsConfig``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from funclet.errors import DomainAlreadyExists, DomainNotFound, InvalidArgument
from funclet.models import FUNCTION_NAME_RE
from funclet.store.metadata import Store
from funclet.versions import parse_qualifier

log = logging.getLogger(__name__)
# A host name with a dot whose last label is not a number: never an IP address (the API's
# own address must not become a domain that captures its requests), never "localhost".
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+"
                       r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_METHODS = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"}
_KEPT = ("certConfig", "tlsConfig", "wafConfig", "corsConfig")
_REFRESH_S = 1.0


@dataclass(frozen=True)
class Route:
    path: str  # exact, or a prefix ending in "*"
    function_name: str
    qualifier: str
    methods: frozenset[str] | None  # None: every method
    rewrite: dict[str, list[dict[str, str]]]


@dataclass(frozen=True)
class Match:
    """Where a request goes: the function, its qualifier, the path it sees."""

    function_name: str
    qualifier: str
    path: str
    methods: frozenset[str] | None
    auth_type: str


@dataclass(frozen=True)
class Domain:
    name: str
    config: dict[str, Any]  # as stored (FC's fields)
    routes: tuple[Route, ...]
    auth_type: str
    created_ms: int
    modified_ms: int

    def match(self, path: str) -> Match | None:
        best: Route | None = None
        for route in self.routes:
            if route.path == path:
                best = route
                break
            if route.path.endswith("*") and path.startswith(route.path[:-1]) and (
                    best is None or len(route.path) > len(best.path)):
                best = route
        if best is None:
            return None
        path = _rewrite(best.rewrite, path)
        return Match(best.function_name, best.qualifier,
                     path if path.startswith("/") else "/" + path, best.methods, self.auth_type)


class Domains:
    def __init__(self, store: Store, http_domain: str | None = None) -> None:
        self._store = store
        # The base domain of funclet's own HTTP trigger hosts: not a custom domain's.
        self._http_domain = (http_domain or "").lower()
        self._domains: dict[str, Domain] = {}
        self._task: asyncio.Task[None] | None = None
        self._changes = 0  # this node's own changes: a read begun before one is stale

    async def load(self) -> None:
        seen = self._changes
        domains = {}
        for row in await self._store.domains():
            try:
                domains[row["domain_name"]] = _domain(row["domain_name"], row["config"],
                                                      row["created_ms"], row["modified_ms"])
            except InvalidArgument as exc:  # (stored by a funclet that checked less)
                log.warning("Custom domain %s is not served: %s", row["domain_name"], exc)
        if seen == self._changes:  # (else this node changed one meanwhile: read again later)
            self._domains = domains

    def refresh_forever(self) -> None:
        """On a shared database: read the domains again every second (other nodes')."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(_REFRESH_S)
                try:
                    await self.load()
                except Exception as exc:  # the next one tries again
                    log.warning("Reading the custom domains failed: %s", exc)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def lookup(self, host: str) -> Domain | None:
        """The domain a request's Host header names (its port left out)."""
        if not self._domains:
            return None
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return self._domains.get(name.lower().rstrip("."))

    # -- the API --------------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> Domain:
        name = body.get("domainName")
        if not isinstance(name, str) or not DOMAIN_RE.fullmatch(name.lower()):
            raise InvalidArgument("domainName is required: a host name with a dot, e.g. "
                                  "api.example.com (not an IP address)")
        name = name.lower()
        if self._http_domain and (name == self._http_domain
                                  or name.endswith("." + self._http_domain)):
            raise InvalidArgument(f"domainName '{name}' is under funclet's own HTTP trigger "
                                  f"domain ({self._http_domain})")
        config = _config(body, None)
        now = int(time.time() * 1000)
        if await self._store.put_domain(name, config, now, create=True) is None:
            raise DomainAlreadyExists(name)
        domain = _domain(name, config, now, now)
        self._changes += 1
        self._domains[name] = domain
        return domain

    async def update(self, name: str, body: dict[str, Any]) -> Domain:
        current = self.get(name)
        config = _config(body, current.config)
        now = int(time.time() * 1000)
        created = await self._store.put_domain(current.name, config, now, create=False)
        if created is None:
            raise DomainNotFound(name)
        domain = _domain(current.name, config, created, now)
        self._changes += 1
        self._domains[current.name] = domain
        return domain

    def get(self, name: str) -> Domain:
        domain = self._domains.get(name.lower())
        if domain is None:
            raise DomainNotFound(name)
        return domain

    def page(self, prefix: str, after: str, limit: int) -> list[Domain]:
        names = sorted(n for n in self._domains if n.startswith(prefix.lower()) and n > after)
        return [self._domains[n] for n in names[:limit]]

    async def delete(self, name: str) -> None:
        if not await self._store.delete_domain(name.lower()):
            raise DomainNotFound(name)
        self._changes += 1
        self._domains.pop(name.lower(), None)


def _config(body: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """A create's (or, with ``base``, an update's) body as stored; what an update leaves
    out stays."""
    config = dict(base or {"protocol": "HTTP", "routeConfig": {"routes": []},
                           "authConfig": {"authType": "anonymous"}})
    protocol = body.get("protocol")
    if protocol is not None:
        if protocol not in ("HTTP", "HTTPS", "HTTP,HTTPS"):
            raise InvalidArgument("protocol must be HTTP, HTTPS or HTTP,HTTPS")
        config["protocol"] = protocol
    if body.get("routeConfig") is not None:
        config["routeConfig"] = body["routeConfig"]
    if body.get("authConfig") is not None:
        config["authConfig"] = body["authConfig"]
    for key in _KEPT:
        if body.get(key) is not None:
            if not isinstance(body[key], dict):
                raise InvalidArgument(f"{key} must be a JSON object")
            config[key] = body[key]
    _domain("check.invalid", config, 0, 0)  # raises for bad routes or auth
    return config


def _domain(name: str, config: dict[str, Any], created: int, modified: int) -> Domain:
    auth = config.get("authConfig") or {}
    auth_type = auth.get("authType", "anonymous") if isinstance(auth, dict) else None
    if auth_type not in ("anonymous", "function"):
        raise InvalidArgument("authConfig.authType must be anonymous or function (funclet's "
                              "API credentials); jwt is not supported")
    raw = config.get("routeConfig") or {}
    routes_raw = raw.get("routes", []) if isinstance(raw, dict) else None
    if not isinstance(routes_raw, list) or len(routes_raw) > 100:
        raise InvalidArgument("routeConfig.routes must be a list of at most 100 routes")
    routes = []
    for i, r in enumerate(routes_raw):
        where = f"routeConfig.routes[{i}]"
        if not isinstance(r, dict):
            raise InvalidArgument(f"{where} must be an object")
        path, function = r.get("path"), r.get("functionName")
        if not isinstance(path, str) or not path.startswith("/") or "*" in path[:-1]:
            raise InvalidArgument(f"{where}.path must start with / (a * only at its end)")
        if not isinstance(function, str) or not FUNCTION_NAME_RE.fullmatch(function):
            raise InvalidArgument(f"{where}.functionName must be a function's name")
        methods = r.get("methods")
        if methods is not None and (not isinstance(methods, list) or not methods or not all(
                isinstance(m, str) and m in _METHODS for m in methods)):
            raise InvalidArgument(f"{where}.methods must be a list of "
                                  f"{', '.join(sorted(_METHODS))}")
        rewrite = r.get("rewriteConfig") or {}
        if not isinstance(rewrite, dict) or not all(
                isinstance(rewrite.get(k, []), list) and all(
                    isinstance(x, dict) and isinstance(x.get("match"), str)
                    and isinstance(x.get("replacement"), str) for x in rewrite.get(k, []))
                for k in ("equalRules", "wildcardRules", "regexRules")):
            raise InvalidArgument(f"{where}.rewriteConfig's rules must be lists of "
                                  "{match, replacement}")
        if any(rule["match"].count("*") > 2 for rule in rewrite.get("wildcardRules", [])):
            raise InvalidArgument(f"{where}.rewriteConfig: a wildcard rule has at most two *")
        for rule in rewrite.get("regexRules", []):
            try:
                re.compile(rule["match"])
            except re.error as exc:
                raise InvalidArgument(f"{where}.rewriteConfig: regex '{rule['match']}': "
                                      f"{exc}") from None
        qualifier = r.get("qualifier")
        if qualifier is not None and not isinstance(qualifier, str):
            raise InvalidArgument(f"{where}.qualifier must be LATEST, a version or an alias")
        routes.append(Route(path, function, parse_qualifier(qualifier),
                            frozenset(methods) if methods else None, rewrite))
    return Domain(name, config, tuple(routes), str(auth_type), created, modified)


def _rewrite(rules: dict[str, list[dict[str, str]]], path: str) -> str:
    """FC's rewriteConfig: the first rule that matches, equal rules first, then wildcard
    (``*`` matches anything, ``$1`` … in the replacement), then regex (``$1`` …)."""
    for rule in rules.get("equalRules", []):
        if rule["match"] == path:
            return rule["replacement"]
    for rule in rules.get("wildcardRules", []):
        pattern = "^" + "(.*)".join(re.escape(p) for p in rule["match"].split("*")) + "$"
        if m := re.match(pattern, path):
            return _groups(rule["replacement"], m)
    for rule in rules.get("regexRules", []):
        if m := re.match(rule["match"], path):
            return _groups(rule["replacement"], m)
    return path


def _groups(replacement: str, match: re.Match[str]) -> str:
    return re.sub(r"\$(\d)", lambda g: match.group(int(g.group(1)))
                  if int(g.group(1)) <= (match.re.groups or 0) else "", replacement)
