"""Malformed code packages sent to CreateFunction: refused with a 4xx, never a 5xx.

hypothesis builds zips (odd names: ``..``, absolute paths, NUL, backslashes; symlinks
anywhere; every compression method) and then corrupts them: flipped bytes, truncation,
a header field (sizes, CRC, method, flags, offsets, name length, mode) set to an
interesting value. Derandomized: the same archives on every run. Every answer with a
5xx is collected, and the test fails listing all of them (not only the first, and not
shrunk), so that one run tells which inputs still break deploy.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import API, b64, unique

_NAMES = st.one_of(
    st.sampled_from(["index.py", "lib/util.py", "a/b/c.txt", "../evil.py", "../../etc/x",
                     "/abs/path.py", "C:\\win.py", "a\\..\\..\\b", "dir/", "./index.py",
                     "a/../../b", "index.py\x00.txt", "nul\x00", "", "a" * 300, "é/ü.py",
                     "a//b", "lib", "lib/x"]),
    st.text(st.characters(codec="utf-8"), max_size=20),
)
_METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
_TARGETS = st.one_of(
    st.sampled_from(["index.py", "../outside", "/etc/passwd", "lib", "missing", ".", "..",
                     "a/../../x", "x" * 5000, "\x00", "lib/../index.py"]),
    st.binary(max_size=16).map(lambda b: b.decode("latin-1")),
)


@dataclass(frozen=True)
class _Entry:
    name: str
    data: bytes
    method: int
    symlink: bool
    mode: int


_ENTRIES = st.builds(
    _Entry,
    name=_NAMES,
    data=st.one_of(st.binary(max_size=64), st.sampled_from([b"def handler(e, c):\n  return e\n",
                                                            b"\x00" * 4096])),
    method=st.sampled_from(_METHODS),
    symlink=st.booleans(),
    mode=st.sampled_from([0o644, 0o755, 0o4755, 0o777, stat.S_IFDIR | 0o755,
                          stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644]),
)

# (header signature, field offset in the header, struct format) of the fields to corrupt
_LOCAL, _CENTRAL, _END = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_FIELDS = [
    (_LOCAL, 6, "<H"), (_LOCAL, 8, "<H"), (_LOCAL, 14, "<I"), (_LOCAL, 18, "<I"),
    (_LOCAL, 22, "<I"), (_LOCAL, 26, "<H"), (_LOCAL, 28, "<H"),
    (_CENTRAL, 8, "<H"), (_CENTRAL, 10, "<H"), (_CENTRAL, 16, "<I"), (_CENTRAL, 20, "<I"),
    (_CENTRAL, 24, "<I"), (_CENTRAL, 28, "<H"), (_CENTRAL, 30, "<H"), (_CENTRAL, 38, "<I"),
    (_CENTRAL, 42, "<I"),
    (_END, 8, "<H"), (_END, 10, "<H"), (_END, 12, "<I"), (_END, 16, "<I"),
]
_VALUES = st.one_of(st.sampled_from([0, 1, 2, 8, 12, 14, 99, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                                     0x0041, 0xA1ED0000]),
                    st.integers(0, 0xFFFFFFFF))


def _build(entries: list[_Entry]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", b"def handler(event, context):\n    return event\n")
        for entry in entries:
            info = zipfile.ZipInfo(entry.name or "x")
            info.compress_type = entry.method
            if entry.symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            else:
                info.external_attr = entry.mode << 16
            try:
                zf.writestr(info, entry.data)
            except (ValueError, UnicodeError):
                continue  # a name zipfile itself refuses to write
    return buf.getvalue()


@st.composite
def _archives(draw: st.DrawFn) -> tuple[str, bytes]:
    """(a description of what was done, the archive's bytes)."""
    entries = draw(st.lists(_ENTRIES, max_size=4))
    links = draw(st.lists(st.tuples(_NAMES, _TARGETS), max_size=2))
    entries += [_Entry(n, t.encode("utf-8", "surrogatepass"), zipfile.ZIP_STORED, True, 0)
                for n, t in links]
    data = bytearray(_build(entries))
    steps = [f"entries={[(e.name, e.method, oct(e.mode)) for e in entries if not e.symlink]}",
             f"symlinks={[(e.name, e.data[:24]) for e in entries if e.symlink]}"]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "field", "insert"]))
        if kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
            steps.append(f"flip byte {at}")
        elif kind == "truncate" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at:]
            steps.append(f"truncate at {at}")
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
            steps.append(f"insert at {at}")
        elif kind == "field":
            signature, offset, fmt = draw(st.sampled_from(_FIELDS))
            starts = [i for i in range(len(data)) if data.startswith(signature, i)]
            if not starts:
                continue
            start = draw(st.sampled_from(starts))
            value = draw(_VALUES) & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
            if start + offset + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, start + offset, value)
                steps.append(f"{signature!r}@{start}+{offset} = {value:#x}")
    return "; ".join(steps), bytes(data)


def test_malformed_code_packages_are_refused_never_a_server_error(
        client: httpx.Client) -> None:
    failures: dict[str, list[str]] = {}  # what went wrong (ids and names left out) -> inputs
    deployed: list[str] = []

    @settings(max_examples=2500, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_archives())
    def deploy(archive: tuple[str, bytes]) -> None:
        what, data = archive
        name = unique("zipfuzz")
        body = {"functionName": name, "runtime": "python3.11", "handler": "index.handler",
                "code": {"zipFile": b64(data)}}
        try:
            r = client.post(f"{API}/functions", json=body)
        except httpx.TransportError:
            # The server closes a connection after a 500; the pool may reuse it once.
            try:
                r = client.post(f"{API}/functions", json=body)
            except httpx.TransportError as exc:  # no answer at all is worse than a 500
                failures.setdefault(f"{type(exc).__name__}: {exc}", []).append(what)
                return
        if r.status_code >= 500:
            message = re.sub(r"'[^']*'|b'[^']*'", "'…'", r.json().get("Message", r.text))
            message = re.sub(r"0x[0-9a-f]+|-?[0-9]+", "N", message)[:120]
            failures.setdefault(f"{r.status_code} {message}", []).append(what)
        elif r.status_code == 200:
            deployed.append(name)  # the corruption left a valid package
        else:
            assert r.status_code in (400, 413), r.text
            assert set(r.json()) == {"Code", "Message", "RequestId"}

    deploy()
    for name in deployed:
        client.delete(f"{API}/functions/{name}")
    assert client.get("/healthz").status_code == 200
    report = [f"{len(inputs)} x {error}\n" + "".join(f"    e.g. {w[:400]}\n" for w in inputs[:2])
              for error, inputs in sorted(failures.items(), key=lambda kv: -len(kv[1]))]
    total = sum(len(inputs) for inputs in failures.values())
    assert not failures, f"{total} archives got a server error:\n" + "".join(report)
