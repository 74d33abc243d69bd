"""URLs that users give funclet (destinations, broker triggers), checked the same way."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def split_url(url: str) -> SplitResult:
    """``url`` split; ``ValueError`` saying why when it is not a URL: whitespace or a
    control character, a malformed host (``[::1``), a port that is not 0 to 65535."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("it holds whitespace or a control character")
    parts = urlsplit(url)
    parts.port  # noqa: B018 (it checks the port)
    return parts
