"""Authentication of API requests: a bearer token, FC's ``ACS3-HMAC-SHA256`` signature,
FC 2.0's ``FC ak:signature`` (``_fc2_signature_ok``), or AWS's ``AWS4-HMAC-SHA256``
(SigV4: ``_sigv4_ok``, for the Lambda API's clients), each with the same access keys.

An ASGI middleware in front of every route but ``/healthz`` and the OpenAPI document
(read-only, no secrets). A request passes with ``Authorization: Bearer <token>``, or
signed the way FC's SDKs sign (access keys from the configuration): the canonical
request (method, path, sorted query, the signed headers, the body's sha256) hashed,
HMAC-SHA256'ed with the secret, compared in constant time; ``x-acs-date`` must be
within 15 minutes. Refusals say as little as possible: 401 without credentials, 403
with wrong ones.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funclet.api.peers import PeerUids
from funclet.api.responses import error_response
from funclet.errors import AccessDenied, ApiError, Unauthenticated

ALGORITHM = "ACS3-HMAC-SHA256"
SIGV4 = "AWS4-HMAC-SHA256"  # AWS's Signature Version 4: boto3's and the AWS CLI's
MAX_SKEW_SECONDS = 15 * 60
_OPEN_PATHS = frozenset({"/healthz", "/2023-03-30/openapi.json", "/console/login"})
CONSOLE_COOKIE = "funclet_console"
SIGNED_PATHS = ("/2023-03-30/code-packages/",)  # api/code.py: presigned downloads
_INSTANCES_REFUSED = (
    "functions may not call the management API of a funclet without authentication"
)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_SITE = ("the API does not serve requests that another site's page makes from a "
               "browser (its Origin is not this API's)")
_PEER_UNKNOWN = (
    "the request's connection has no owner the API can establish (it was closed or "
    "reset), and without authentication the API serves only known callers"
)


def is_http_trigger(scope: Scope, http_domain: str | None) -> bool:
    """A request for a function's HTTP trigger (``/http/…``, or ``{function}.{domain}``)."""
    path: str = scope["path"]
    if path.startswith(("/http/", "/lambda-url/")):  # (FC's triggers, Lambda's URLs)
        return True
    if not http_domain:
        return False
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1").rsplit(":", 1)[0].lower()
            return host.endswith("." + http_domain.lower())
    return False


def _mark(scope: Scope, authenticated: bool) -> None:
    """On HTTP trigger requests the middlewares mark, the trigger decides: an
    ``anonymous`` trigger serves everyone (its own ``Authorization`` headers included)."""
    scope.setdefault("state", {})["authenticated"] = authenticated


class Authenticate:
    """Refuses requests without a valid token or signature (see the module docstring).
    HTTP trigger requests are marked authenticated or not, and passed on."""

    def __init__(
        self, app: ASGIApp, token: str | None, access_keys: Mapping[str, str], max_body: int,
        http_domain: str | None = None,
    ) -> None:
        self.app = app
        self._domain = http_domain
        self._token = token.encode() if token else None
        self._keys = dict(access_keys)
        self._max_body = max_body
        self._nonces = _Nonces(MAX_SKEW_SECONDS * 2)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS or scope["path"].startswith(
                SIGNED_PATHS):  # (they carry their own signature)
            await self.app(scope, receive, send)
            return
        trigger = is_http_trigger(scope, self._domain)
        headers = _headers(scope)
        auth = headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme == "Bearer" and self._token is not None:
            if hmac.compare_digest(rest.strip().encode(), self._token):
                _mark(scope, True)
                await self.app(scope, receive, send)
                return
            error: ApiError = AccessDenied()
        elif scheme in (ALGORITHM, "FC", SIGV4) and self._keys:  # FC 3.0's, 2.0's, AWS's
            check = {ALGORITHM: self._signature_ok, "FC": self._fc2_signature_ok,
                     SIGV4: self._sigv4_ok}[scheme]
            body = await _read_body(receive, self._max_body)
            if body is not None and check(scope, headers, rest, body):
                _mark(scope, True)
                await self.app(scope, _replay(body, receive), send)
                return
            if body is not None:
                receive = _replay(body, receive)
            error = AccessDenied()
        elif scope["path"].startswith("/console"):  # the console: its sign-in cookie
            if self._console_cookie_ok(headers.get("cookie", "")):
                _mark(scope, True)
                await self.app(scope, receive, send)
                return
            where = quote(scope["path"] + ("?" + scope["query_string"].decode("latin-1")
                                            if scope.get("query_string") else ""), safe="")
            await RedirectResponse(f"/console/login?next={where}", 303)(scope, receive, send)
            return
        else:
            error = Unauthenticated()
        if trigger:
            _mark(scope, False)
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)

    def _console_cookie_ok(self, cookies: str) -> bool:
        """The cookie of a sign-in with the token or one of the access keys' secrets."""
        value = cookie_parser(cookies).get(CONSOLE_COOKIE, "")
        signed_with = ([self._token.decode()] if self._token else []) + list(self._keys.values())
        return bool(value) and any(hmac.compare_digest(value, console_cookie(secret))
                                   for secret in signed_with)

    def _signature_ok(
        self, scope: Scope, headers: dict[str, str], params: str, body: bytes
    ) -> bool:
        fields = dict(
            part.strip().split("=", 1) for part in params.split(",") if "=" in part
        )
        secret = self._keys.get(fields.get("Credential", ""))
        signed = fields.get("SignedHeaders", "")
        signature = fields.get("Signature", "")
        if secret is None or not signed or not signature:
            return False
        names = signed.split(";")
        # The date and the nonce must be signed, or a captured signature could be replayed.
        if not {"host", "x-acs-date", "x-acs-signature-nonce"} <= set(names):
            return False
        if any(name not in headers for name in names):
            return False
        if not _fresh(headers["x-acs-date"]) or not self._nonces.first_use(
            headers["x-acs-signature-nonce"]
        ):
            return False
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers.get("x-acs-content-sha256", payload_hash) != payload_hash:
            return False
        canonical = "\n".join([
            scope["method"],
            scope.get("raw_path", scope["path"].encode()).decode("latin-1") or "/",
            _canonical_query(scope.get("query_string", b"").decode("latin-1")),
            "".join(f"{name}:{headers[name].strip()}\n" for name in names),
            signed,
            payload_hash,
        ])
        string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


    def _sigv4_ok(self, scope: Scope, headers: dict[str, str], params: str,
                  body: bytes) -> bool:
        return sigv4_valid(scope, headers, params, body, self._keys)

    def _fc2_signature_ok(self, scope: Scope, headers: dict[str, str], credential: str,
                          body: bytes) -> bool:
        """``FC {accessKeyId}:{signature}``: base64 HMAC-SHA256 of the method, Content-MD5,
        Content-Type, Date, the sorted ``x-fc-`` headers and the unescaped path (and, for
        HTTP trigger calls under ``/proxy/``, the sorted query), as FC 2.0's SDKs sign.
        ``Date`` must be within 15 minutes; a Content-MD5 must be the body's."""
        key_id, _, signature = credential.strip().partition(":")
        secret = self._keys.get(key_id)
        if secret is None or not signature or not _fresh_http_date(headers.get("date", "")):
            return False
        md5 = headers.get("content-md5", "")
        if md5:
            digest = hashlib.md5(body, usedforsecurity=False)
            if md5 not in (base64.b64encode(digest.digest()).decode(),
                           base64.b64encode(digest.hexdigest().encode()).decode()):
                return False
        path, query = scope.get("funclet_signed", (scope["path"], None))
        resource = path
        if query is not None:  # an HTTP trigger call: its query is signed too
            params = sorted(f"{k}={v}" for k, v in parse_qsl(query, keep_blank_values=True))
            resource += "\n" + "\n".join(params)
        fc_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items())
                             if k.startswith("x-fc-"))
        string_to_sign = "\n".join([scope["method"], md5, headers.get("content-type", ""),
                                    headers.get("date", ""), fc_headers + resource])
        expected = base64.b64encode(hmac.new(secret.encode(), string_to_sign.encode(),
                                             hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, signature)


class RefuseInstances:
    """On loopback without authentication the API is open to the operator, not to the
    functions it runs. It fails closed: a request passes only when its TCP peer is a
    live socket whose owner (from the kernel's socket table) is not one of the
    instances' uids. No peer address, no live socket (a connection reset or closed
    right after its request), or an instance's uid: the control API answers 403, and
    HTTP trigger requests are marked unauthenticated (``authType: function`` refuses
    them, ``anonymous`` serves them). A request from the instances' network (the
    operator exposed the API port to functions) needs credentials instead: a token or
    access keys the operator gave the function, checked by ``Authenticate``."""

    def __init__(self, app: ASGIApp, instance_uids: range,
                 instance_network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
                 token: str | None = None, access_keys: Mapping[str, str] | None = None,
                 max_body: int = 0, http_domain: str | None = None) -> None:
        self.app = app
        self._instance_uids = instance_uids
        self._network = instance_network
        self._authenticate = Authenticate(app, token, access_keys or {}, max_body, http_domain)
        self._domain = http_domain
        self._peers = PeerUids()

    def _from_instance_network(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or self._network is None:
            return False
        try:
            return ipaddress.ip_address(client[0]) in self._network
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            if self._from_instance_network(scope):
                if is_http_trigger(scope, self._domain):
                    _mark(scope, False)
                    await self.app(scope, receive, send)
                else:
                    await self._authenticate(scope, receive, send)
                return
            refusal = self._refusal(scope)
            if is_http_trigger(scope, self._domain):
                _mark(scope, refusal is None)  # functions may call anonymous triggers
            elif refusal is not None:
                await error_response(AccessDenied(refusal))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request's peer is not trusted, or ``None`` when it is. A browser's
        POST (PUT, DELETE) made by another site's page is not the operator's (CSRF: the
        browser runs as the operator's uid, and says where the request came from)."""
        if scope["method"] not in _SAFE and cross_site(scope) and not is_http_trigger(
                scope, self._domain):
            return _CROSS_SITE  # (a GET changes nothing, and its answer is not theirs)
        uid = self._peers.of(scope)
        if uid is None:
            return _PEER_UNKNOWN
        if uid in self._instance_uids:
            return _INSTANCES_REFUSED
        return None


def sigv4_valid(scope: Scope, headers: Mapping[str, str], params: str, body: bytes,
                keys: Mapping[str, str]) -> bool:
    """AWS's Signature Version 4 (what boto3, the AWS CLI and the AWS SDKs send),
    with funclet's access keys: ``Credential=ID/DATE/REGION/SERVICE/aws4_request``,
    the canonical request (each path segment encoded again, as AWS does for every
    service but S3), ``x-amz-date`` within 15 minutes."""
    fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
    key_id, _, scope_text = fields.get("Credential", "").partition("/")
    secret = keys.get(key_id)
    signed, signature = fields.get("SignedHeaders", ""), fields.get("Signature", "")
    parts = scope_text.split("/")
    stamp = headers.get("x-amz-date", "")
    if secret is None or not signed or not signature or len(parts) != 4 or (
            parts[3] != "aws4_request") or not stamp.startswith(parts[0]):
        return False
    names = signed.split(";")
    if "host" not in names or any(name not in headers for name in names):
        return False
    try:
        when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return False
    if abs(time.time() - when) > MAX_SKEW_SECONDS:
        return False
    payload_hash = hashlib.sha256(body).hexdigest()
    if headers.get("x-amz-content-sha256", payload_hash) not in (
            payload_hash, "UNSIGNED-PAYLOAD"):
        return False
    raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1") or "/"
    canonical = "\n".join([
        scope["method"],
        quote(raw_path, safe="/~"),
        _canonical_query(scope.get("query_string", b"").decode("latin-1")),
        "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
        signed,
        headers.get("x-amz-content-sha256", payload_hash),
    ])
    string_to_sign = "\n".join([SIGV4, stamp, scope_text,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (*parts[:3], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def console_cookie(secret: str) -> str:
    """The console's sign-in cookie for a secret: derived from it (the browser never
    holds the token itself), the same on every node that has the secret."""
    return hmac.new(secret.encode(), b"funclet console sign-in", hashlib.sha256).hexdigest()


def console_sign_in(token: str, api_token: str | None, access_keys: Mapping[str, str]
                    ) -> str | None:
    """The cookie for what the sign-in form was given (the API token, or
    ``ACCESS_KEY_ID:SECRET``), or None if it is neither."""
    if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
        return console_cookie(api_token)
    key_id, _, secret = token.partition(":")
    known = access_keys.get(key_id)
    if known is not None and secret and hmac.compare_digest(secret.encode(), known.encode()):
        return console_cookie(known)
    return None


def cross_site(scope: Scope) -> bool:
    """A browser says the request comes from a page of another origin."""
    origin = host = fetch_site = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
        elif name == b"sec-fetch-site":
            fetch_site = value.decode("latin-1")
    if fetch_site == "cross-site":
        return True
    return origin is not None and origin.split("://", 1)[-1] != host  # ("null": a file:
    # page or a sandboxed frame: not this API's either)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for raw_name, raw_value in scope["headers"]:
        out.setdefault(raw_name.decode("latin-1").lower(), []).append(
            raw_value.decode("latin-1").strip()
        )
    return {name: ",".join(sorted(values)) for name, values in out.items()}


def _canonical_query(query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(key, safe='~')}={quote(value, safe='~')}" for key, value in pairs)


class _Nonces:
    """Signature nonces seen within the clock-skew window: each may be used once."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._seen: dict[str, float] = {}

    def first_use(self, nonce: str) -> bool:
        now = time.monotonic()
        if len(self._seen) > 100_000 or (self._seen and next(iter(self._seen.values())) < now):
            self._seen = {n: t for n, t in self._seen.items() if t >= now}
        if not nonce or nonce in self._seen:
            return False
        self._seen[nonce] = now + self._ttl
        return True


def _fresh(stamp: str) -> bool:
    try:
        when = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return False
    return abs(time.time() - when) <= MAX_SKEW_SECONDS


def _fresh_http_date(stamp: str) -> bool:
    try:
        when = email.utils.parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError):
        return False
    return abs(time.time() - when) <= MAX_SKEW_SECONDS


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
