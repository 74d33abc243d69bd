from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from funclet.codestore.archive import Limits, inspect, unpack
from funclet.errors import InvalidCodePackage

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
