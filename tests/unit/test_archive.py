from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from funclet.codestore import CodeStore
from funclet.codestore.archive import Limits, inspect, unpack
from funclet.errors import DiskFull, InvalidCodePackage

LIMITS = Limits(max_unpacked=10 * 1024 * 1024, max_ratio=100)


def _zip(
    entries: dict[str, bytes], links: dict[str, str] | None = None, mode: int = 0o644
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = name
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


@pytest.mark.parametrize(("entries", "links", "message"), [
    ({"../x": b""}, None, "outside"),
    ({"a/../../x": b""}, None, "outside"),
    ({"..\\x": b""}, None, "outside"),
    ({"/abs": b""}, None, "absolute"),
    ({"C:/win": b""}, None, "absolute"),
    ({"ok.py": b""}, {"l": "../../x"}, "outside"),
    ({"ok.py": b""}, {"d/l": "../../x"}, "outside"),
    ({"ok.py": b""}, {"l": "/etc/passwd"}, "absolute"),
    ({"big": b"\0" * (11 * 1024 * 1024)}, None, "over the limit"),
    ({"ratio": b"\0" * (2 * 1024 * 1024)}, None, "compression ratio"),
    ({"ok.py": b""}, {"sub/l": "..", "sub/up": "l/.."}, "through another symlink"),
    ({"sub/up/x": b""}, {"sub/up": ".."}, "inside 'sub/up', which is a symlink"),
    ({"a": b"1", "a/b": b"2"}, None, "inside 'a', which is a file"),
])
def test_inspect_refuses_escapes_and_bombs(
    entries: dict[str, bytes], links: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(InvalidCodePackage, match=message):
        inspect(_zip(entries, links), LIMITS)


def test_inspect_refuses_non_zips() -> None:
    with pytest.raises(InvalidCodePackage, match="not a valid zip"):
        inspect(b"PK\x03\x04garbage", LIMITS)


def test_inspect_lists_files_and_allows_links_inside() -> None:
    got = inspect(_zip({"./a.py": b"1", "pkg/b.py": b"22"}, {"pkg/l": "../a.py"}), LIMITS)
    assert got.files == {"a.py", "pkg/b.py", "pkg/l"}


def test_unpack_keeps_executable_bits_and_links(tmp_path: Path) -> None:
    data = _zip({"bin/run": b"#!/bin/sh\n"}, {"link": "bin/run"}, mode=0o755)
    inspect(data, LIMITS)
    unpack(data, str(tmp_path))
    assert (tmp_path / "bin/run").stat().st_mode & 0o111
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "link").resolve() == (tmp_path / "bin/run").resolve()


def test_inspect_refuses_duplicate_entries() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("index.py", "a")
        zf.writestr("index.py", "b")
    with pytest.raises(InvalidCodePackage, match="more than once"):
        inspect(buf.getvalue(), LIMITS)


def test_link_chains_inside_the_package_are_fine(tmp_path: Path) -> None:
    data = _zip({"real/f.py": b"x"}, {"a": "real", "b": "a"})
    inspect(data, LIMITS)
    unpack(data, str(tmp_path))
    assert (tmp_path / "b").resolve() == (tmp_path / "real").resolve()


def _one(data: bytes, method: int = zipfile.ZIP_STORED, name: str = "index.py",
         link: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        info.external_attr = ((stat.S_IFLNK | 0o777) if link else (stat.S_IFREG | 0o644)) << 16
        zf.writestr(info, data)
    return buf.getvalue()


def _patch(data: bytes, local: int, central: int, value: int, mask: bool = False) -> bytes:
    """Set a 2-byte field of the (only) entry in both its headers; ``mask``: OR it in."""
    out = bytearray(data)
    for sig, off in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.index(sig) + off
        old = int.from_bytes(out[at:at + 2], "little")
        out[at:at + 2] = ((old | value) if mask else value).to_bytes(2, "little")
    return bytes(out)


def _flip_data(data: bytes, at: int = 0) -> bytes:
    """Change one byte of the (only) entry's data."""
    out = bytearray(data)
    start = out.index(b"PK\x03\x04")
    name_len = int.from_bytes(out[start + 26:start + 28], "little")
    extra_len = int.from_bytes(out[start + 28:start + 30], "little")
    out[start + 30 + name_len + extra_len + at] ^= 0xFF
    return bytes(out)


CODE = b"def handler(event, context):\n    return 'ok'\n" * 50

DAMAGED = {
    "method 99": (_patch(_one(CODE), 8, 10, 99), "compression method 99"),
    "deflate64": (_patch(_one(CODE), 8, 10, 9), "compression method 9 (deflate64)"),
    "encrypted": (_patch(_one(CODE), 6, 8, 0x1, mask=True), "is encrypted"),
    "bad crc": (_flip_data(_one(CODE)), "damaged: BadZipFile: Bad CRC-32"),
    "corrupt deflate": (_flip_data(_one(CODE, zipfile.ZIP_DEFLATED), 3), "damaged"),
    "corrupt bzip2": (_flip_data(_one(CODE, zipfile.ZIP_BZIP2), 12), "damaged"),
    "corrupt lzma": (_flip_data(_one(CODE, zipfile.ZIP_LZMA), 12), "damaged"),
    "truncated": (_one(CODE, zipfile.ZIP_DEFLATED)[:120], "not a valid zip"),
    "newer zip version": (_patch(_one(CODE), 4, 6, 70), "zip file version 7.0"),
    "link not utf-8": (_one(b"\xff\xfe", name="l", link=True), "not UTF-8"),
    "link with nul": (_one(b"a\0b", name="l", link=True), "NUL"),
    "empty link": (_one(b"", name="l", link=True), "empty target"),
}


def _store(root: Path) -> CodeStore:
    return CodeStore(root, 50 * 1024 * 1024, LIMITS)


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p not in (root / "packages", root / "unpacked"))


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_package_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    data, message = DAMAGED[case]
    store = _store(tmp_path)
    with pytest.raises(InvalidCodePackage, match=re.escape(message)):
        asyncio.run(store.put(data, store.check(data)))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                    zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_stored_deflate_bzip2_and_lzma_unpack(tmp_path: Path, method: int) -> None:
    data = _one(CODE, method)
    store = _store(tmp_path)
    package = store.check(data)
    assert asyncio.run(store.put(data, package)) is True
    assert (tmp_path / "unpacked" / package.checksum / "index.py").read_bytes() == CODE
    assert asyncio.run(store.put(data, package)) is False  # once per hash


def test_a_package_the_disk_cannot_hold_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _one(CODE, zipfile.ZIP_DEFLATED)
    store = _store(tmp_path)
    package = store.check(data)

    def full(src: Any, dst: Any) -> None:  # the zip's last step (a real disk: test_disk_full)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DiskFull, match=f"no space left on the disk holding {tmp_path}"):
        asyncio.run(store.put(data, package))
    assert _leftovers(tmp_path) == []
