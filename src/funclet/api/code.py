"""Code packages for download: GetFunctionCode's (and a layer's) ``url``, signed like an
object store's presigned URL: ``/2023-03-30/code-packages/{sha256}.zip?expires=&signature=``
(HMAC-SHA256 of the checksum and the expiry, with a random key the platform keeps in
its database, made by the first node, so that every node of a cluster signs alike). The
signature is the credential: the URL works without a token, for 10 minutes, from
anywhere but an instance (``RefuseInstances`` still applies)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.errors import AccessDenied, RouteNotFound
from funclet.platform import Platform

CODE_PATH = "/2023-03-30/code-packages/"
VALID_S = 600
_CHECKSUM = re.compile(r"[0-9a-f]{64}")


def _key(platform: Platform) -> bytes:
    """The signing key (the platform's secret, read at start: ``Platform.url_key``)."""
    return platform.url_key


def _signature(key: bytes, checksum: str, expires: int) -> str:
    return hmac.new(key, f"{checksum}\n{expires}".encode(), hashlib.sha256).hexdigest()


def code_url(request: Request, checksum: str) -> str:
    """A URL from which the package with ``checksum`` downloads for VALID_S seconds."""
    platform: Platform = request.app.state.platform
    expires = int(time.time()) + VALID_S
    base = str(request.base_url).rstrip("/")
    return (f"{base}{CODE_PATH}{checksum}.zip?expires={expires}"
            f"&signature={_signature(_key(platform), checksum, expires)}")


async def download(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    checksum = request.path_params["checksum"]
    expires = request.query_params.get("expires", "")
    signature = request.query_params.get("signature", "")
    if not _CHECKSUM.fullmatch(checksum):
        raise RouteNotFound("no such code package")
    if not re.fullmatch(r"[0-9]{1,12}", expires) or not hmac.compare_digest(
            signature.encode("utf-8", "surrogateescape"),
            _signature(_key(platform), checksum, int(expires)).encode()):
        raise AccessDenied("the code package URL's signature is not valid")
    if int(expires) < time.time():
        raise AccessDenied("the code package URL has expired: ask GetFunctionCode again")
    data = await platform.code.package(checksum)
    if data is None:
        raise RouteNotFound("no such code package")
    return Response(data, media_type="application/zip",
                    headers={"content-disposition": f'attachment; filename="{checksum}.zip"'})


routes = [Route(f"{CODE_PATH}{{checksum}}.zip", download, methods=["GET"])]
